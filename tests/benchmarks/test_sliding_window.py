import pytest
import torch
from torch import nn

from fcn_deploy.benchmarks.sliding_window import (
    compare_maps,
    extract_patches,
    patch_grid,
    sliding_window,
)
from fcn_deploy.models import alexnet, convolutionalize


class PadFree(nn.Module):
    """A small classifier without zero padding, in torchvision layout."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 5, stride=2), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 8, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Linear(8 * 2 * 2, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def test_patch_grid_and_extraction_order():
    assert patch_grid(500, 500, 224, 32) == (9, 9)
    assert patch_grid(224, 300, 224, 32) == (1, 3)
    with pytest.raises(ValueError, match="smaller than"):
        patch_grid(100, 300, 224, 32)
    image = torch.arange(2 * 6 * 7, dtype=torch.float32).reshape(1, 2, 6, 7)
    patches = extract_patches(image, 3, 2)
    assert patches.shape == (2 * 3, 2, 3, 3)
    assert torch.equal(patches[4], image[0, :, 2:5, 2:5])  # row 1, col 1


@pytest.mark.parametrize("mode", ["sequential", "batched"])
def test_padding_free_classifier_matches_its_fcn_to_float_precision(mode):
    torch.manual_seed(0)
    clf = PadFree().double().eval()
    fcn = convolutionalize(clf, 32).eval()
    assert fcn.stride == 8
    image = torch.randn(1, 3, 32 + 8 * 6, 32 + 8 * 4, dtype=torch.float64)
    patch_map = sliding_window(clf, image, 32, fcn.stride, mode, batch_size=5)
    with torch.no_grad():
        fcn_map = fcn(image)[0]
    r = compare_maps(patch_map, fcn_map)
    assert patch_map.shape == (4, 7, 5)
    assert r["max_abs_diff"] < 1e-12 and r["argmax_agreement"] == 1.0


def test_padded_alexnet_differs_and_the_comparison_says_where():
    torch.manual_seed(0)
    clf = alexnet(num_classes=10, width=1 / 16).eval()
    fcn = convolutionalize(clf, 224).eval()
    image = torch.randn(1, 3, 224 + 32 * 3, 224 + 32 * 3)
    patch_map = sliding_window(clf, image, 224, fcn.stride, "batched", batch_size=16)
    with torch.no_grad():
        r = compare_maps(patch_map, fcn(image)[0])
    # Zero padding makes a patch's edge differ from the same pixels inside the image.
    assert r["max_abs_diff"] > 1e-6
    assert r["border_max_abs_diff"] > 0 and r["interior_max_abs_diff"] is not None


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown mode"):
        sliding_window(PadFree(), torch.zeros(1, 3, 32, 32), 32, 8, "parallel")


def test_amortization_row_reports_speedups_flops_and_agreement():
    from fcn_deploy.benchmarks.amortization import amortization_row

    torch.manual_seed(0)
    row = amortization_row("alexnet", alexnet(num_classes=10, width=1 / 16), 224 + 32 * 2,
                           batch_size=4, repeats=1)
    assert row["grid"] == [3, 3] and row["patches"] == 9 and row["stride"] == 32
    assert row["flop_ratio"] > 1 and row["fcn_flops"] > 0
    # The FCN shares the overlapping patches' work: one 288 px pass is far fewer FLOPs than
    # nine 224 px patches.
    assert row["patch_flops"] > 4 * row["fcn_flops"]
    assert 0 <= row["argmax_agreement"] <= 1 and row["max_abs_diff"] >= 0


def test_frozen_backend_computes_the_same_maps_and_eager_torch_has_a_layer_profile():
    from fcn_deploy.benchmarks.amortization import amortization_row

    rows = {}
    for backend in ("torch", "torch-frozen"):
        torch.manual_seed(0)
        rows[backend] = amortization_row("alexnet", alexnet(num_classes=10, width=1 / 16),
                                         224 + 32 * 2, backend, batch_size=4, repeats=1)
    assert rows["torch-frozen"]["argmax_agreement"] == rows["torch"]["argmax_agreement"]
    assert rows["torch-frozen"]["max_abs_diff"] == pytest.approx(rows["torch"]["max_abs_diff"],
                                                                abs=1e-4)
    assert rows["torch-frozen"]["layers"] is None
    layers = rows["torch"]["layers"]
    # Five convs and three linears, paired with the FCN's convs in order; the layers' FLOPs
    # add up to the counted totals (FLOPs of pools and ReLUs are not counted by torch either).
    assert [r["layer"] for r in layers][-3:] == ["classifier.1", "classifier.4", "classifier.6"]
    assert len(layers) == 8 and all(r["fcn_ms"] > 0 and r["patch_ms"] > 0 for r in layers)
    row = rows["torch"]
    assert sum(r["fcn_gflop"] for r in layers) * 1e9 == pytest.approx(row["fcn_flops"], rel=1e-6)
    assert sum(r["patch_gflop"] for r in layers) * 1e9 == pytest.approx(row["patch_flops"],
                                                                        rel=1e-6)
    # Convolutionalization does not share the classifier layers' work: the same FLOPs per
    # position in both paths.
    assert layers[-1]["fcn_gflop"] == pytest.approx(layers[-1]["patch_gflop"])
