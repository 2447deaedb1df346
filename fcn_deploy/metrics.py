"""Segmentation metrics of the FCN paper (section 5) from an accumulated confusion matrix."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


class ConfusionMatrix:
    """Accumulates ``hist[true, pred]`` pixel counts over a data set; 255 (or ``ignore_index``)
    pixels of the ground truth are left out."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.hist = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred, target) -> None:
        """Add one prediction/ground-truth pair (numpy or torch integer arrays, same shape)."""
        pred, target = _numpy(pred).ravel(), _numpy(target).ravel()
        if pred.shape != target.shape:
            raise ValueError(f"prediction has {pred.size} pixels, target has {target.size}")
        keep = target != self.ignore_index
        pred, target = pred[keep].astype(np.int64), target[keep].astype(np.int64)
        k = self.num_classes
        for name, a in (("target", target), ("prediction", pred)):
            if a.size and (a.min() < 0 or a.max() >= k):
                raise ValueError(f"{name} label outside 0..{k - 1}: "
                                 f"{a.min() if a.min() < 0 else a.max()}")
        self.hist += np.bincount(k * target + pred, minlength=k * k).reshape(k, k)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix's counts (e.g. from another worker) into this one."""
        self.hist += other.hist
        return self

    def compute(self) -> dict:
        """pixel_acc, mean_acc, mean_iu, fwavacc and per-class iu (NaN where a class is absent)."""
        hist = self.hist.astype(np.float64)
        tp, gt, pred = np.diag(hist), hist.sum(1), hist.sum(0)
        total = hist.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = tp / gt
            iu = tp / (gt + pred - tp)
        freq = gt / total if total else gt
        valid = ~np.isnan(iu)
        return {
            "pixel_acc": float(tp.sum() / total) if total else float("nan"),
            "mean_acc": float(np.nanmean(acc)) if (~np.isnan(acc)).any() else float("nan"),
            "mean_iu": float(iu[valid].mean()) if valid.any() else float("nan"),
            "fwavacc": float((freq[valid] * iu[valid]).sum()),
            "iu": [float(x) for x in iu],
        }


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def boundary_band(target, width: int, ignore_index: int = 255) -> np.ndarray:
    """Pixels within ``width`` px (chessboard distance) of a ground-truth boundary: a pixel
    whose right or lower neighbour has another label, both sides of the edge counting, as the
    trimap evaluations of segmentation boundaries do. Edges to ``ignore_index`` do not count."""
    t = _numpy(target)
    edge = np.zeros(t.shape, bool)
    for axis in (0, 1):
        a, b = np.swapaxes(t, 0, axis), np.swapaxes(edge, 0, axis)
        differ = (a[1:] != a[:-1]) & (a[1:] != ignore_index) & (a[:-1] != ignore_index)
        b[1:] |= differ
        b[:-1] |= differ
    return _dilate(edge, width) if width else edge


def _dilate(mask: np.ndarray, width: int) -> np.ndarray:
    """Square dilation by ``width`` px, separable: a sliding max along rows, then columns."""
    out = mask
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (width, width)
        out = sliding_window_view(np.pad(out, pad), 2 * width + 1, axis=axis).any(-1)
    return out


class BoundaryMetrics:
    """Mean IU and pixel accuracy inside trimap bands of several widths around ground-truth
    boundaries: where skip connections (FCN-16s, FCN-8s) are expected to help."""

    def __init__(self, num_classes: int, bands=(1, 2, 4, 8), ignore_index: int = 255):
        self.bands, self.ignore_index = tuple(bands), ignore_index
        self.matrices = {b: ConfusionMatrix(num_classes, ignore_index) for b in self.bands}

    def update(self, pred, target) -> None:
        """Add one H x W prediction / ground-truth pair."""
        pred, target = _numpy(pred), _numpy(target)
        for band, cm in self.matrices.items():
            inside = boundary_band(target, band, self.ignore_index)
            cm.update(pred[inside], target[inside])

    def compute(self) -> list[dict]:
        """One row per band: ``band_px``, ``mean_iu``, ``pixel_acc``, ``pixels``."""
        rows = []
        for band, cm in self.matrices.items():
            scores = cm.compute()
            rows.append({"band_px": band, "mean_iu": scores["mean_iu"],
                         "pixel_acc": scores["pixel_acc"], "pixels": int(cm.hist.sum())})
        return rows
