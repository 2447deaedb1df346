import numpy as np
import pytest
import torch

from fcn_deploy.metrics import ConfusionMatrix


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
