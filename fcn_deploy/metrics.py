"""Segmentation metrics of the FCN paper (section 5) from an accumulated confusion matrix."""
from __future__ import annotations

import numpy as np


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
