import numpy as np
import pytest
import torch

from fcn_deploy.metrics import BoundaryMetrics, ConfusionMatrix, boundary_band


def test_hand_computed_case():
    # Ground truth / prediction over 3 classes; 255 pixels ignored.
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pr = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm = ConfusionMatrix(3)
    cm.update(pr, gt)
    # hist[t, p]: t0: p0=1 p1=1; t1: p1=2 p0=1; t2: p2=1 p0=1
    assert cm.hist.tolist() == [[1, 1, 0], [1, 2, 0], [1, 0, 1]]
    r = cm.compute()
    assert r["pixel_acc"] == pytest.approx(4 / 7)
    assert r["mean_acc"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    iu = [1 / (2 + 3 - 1), 2 / (3 + 3 - 2), 1 / (2 + 1 - 1)]
    assert r["iu"] == pytest.approx(iu)
    assert r["mean_iu"] == pytest.approx(sum(iu) / 3)
    assert r["fwavacc"] == pytest.approx((2 * iu[0] + 3 * iu[1] + 2 * iu[2]) / 7)


def test_accumulates_over_updates_torch_and_numpy_alike():
    a, b = ConfusionMatrix(4), ConfusionMatrix(4)
    rng = np.random.default_rng(0)
    for _ in range(3):
        gt, pr = rng.integers(0, 4, (2, 5, 6)), rng.integers(0, 4, (2, 5, 6))
        a.update(pr, gt)
        b.update(torch.from_numpy(pr), torch.from_numpy(gt))
    assert a.hist.sum() == 180 and np.array_equal(a.hist, b.hist)
    merged = ConfusionMatrix(4).merge(a).merge(b)
    assert merged.hist.sum() == 360


def test_classes_absent_from_truth_and_prediction_do_not_count():
    cm = ConfusionMatrix(5)
    cm.update(np.array([0, 1, 1]), np.array([0, 1, 0]))
    r = cm.compute()
    assert np.isnan(r["iu"][2]) and np.isnan(r["iu"][4])
    assert r["mean_iu"] == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_perfect_prediction_scores_one():
    gt = np.array([0, 1, 2, 2, 255])
    cm = ConfusionMatrix(3)
    cm.update(np.where(gt == 255, 0, gt), gt)
    assert cm.compute()["mean_iu"] == 1.0 and cm.compute()["pixel_acc"] == 1.0


def test_bad_labels_and_shapes_are_refused():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="pixels"):
        cm.update(np.array([0, 1, 2]), np.array([0, 1]))


def _halves(split: int, size: int = 6) -> np.ndarray:
    """A size x size label map: class 0 left of column ``split``, class 1 from it on."""
    mask = np.zeros((size, size), np.uint8)
    mask[:, split:] = 1
    return mask


def test_boundary_band_is_both_sides_of_the_edge_then_dilated():
    target = _halves(3)
    cols = {w: sorted(set(np.nonzero(boundary_band(target, w))[1])) for w in (0, 1, 2, 5)}
    assert cols == {0: [2, 3], 1: [1, 2, 3, 4], 2: [0, 1, 2, 3, 4, 5], 5: list(range(6))}
    assert boundary_band(target, 1).sum() == 6 * 4  # every row, clipped at no border here
    flat = np.zeros((4, 4), np.uint8)
    assert not boundary_band(flat, 3).any()  # no boundary, no band
    void = flat.copy()
    void[:, 2:] = 255  # an edge to the void label is not a class boundary
    assert not boundary_band(void, 1).any()


def test_boundary_metrics_by_hand():
    bm = BoundaryMetrics(2, bands=(1, 2))
    bm.update(_halves(4), _halves(3))  # the predicted edge one column to the right
    band1, band2 = bm.compute()
    # band 1 = columns 1-4: truth 0,0,1,1 and prediction 0,0,0,1 in each of the 6 rows
    assert band1["pixels"] == 24 and band1["pixel_acc"] == pytest.approx(3 / 4)
    assert band1["mean_iu"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # band 2 = the whole 6 x 6 image: 5 of 6 columns right
    assert band2["pixels"] == 36 and band2["pixel_acc"] == pytest.approx(5 / 6)
    assert band2["mean_iu"] == pytest.approx((3 / 4 + 2 / 3) / 2)
