import pytest
import torch
from torch import nn

from fcn_deploy.benchmarks.sliding_window import (
    compare_maps,
    extract_patches,
    patch_grid,
    sliding_window,
)
from fcn_deploy.models import alexnet
from fcn_deploy.models.convolutionalize import convolutionalize


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


def test_frozen_runner_computes_what_eager_torch_computes_at_any_batch_and_size():
    from fcn_deploy.benchmarks.amortization import frozen_runner

    torch.manual_seed(0)
    classifier = alexnet(num_classes=10, width=1 / 16).eval()
    fcn = convolutionalize(classifier, 224).eval()
    frozen = frozen_runner(fcn, torch.zeros(1, 3, 224, 224))
    frozen_classifier = frozen_runner(classifier, torch.zeros(2, 3, 224, 224))
    with torch.inference_mode():
        x = torch.randn(1, 3, 288, 320)
        torch.testing.assert_close(frozen(x), fcn(x), atol=1e-4, rtol=1e-4)
        patches = torch.randn(5, 3, 224, 224)
        torch.testing.assert_close(frozen_classifier(patches), classifier(patches),
                                   atol=1e-4, rtol=1e-4)


def test_layer_profile_pairs_the_fcn_and_patch_layers_and_adds_up():
    from fcn_deploy.benchmarks.amortization import amortization_row

    torch.manual_seed(0)
    row = amortization_row("alexnet", alexnet(num_classes=10, width=1 / 16), 224 + 32 * 2,
                           batch_size=4, repeats=1, profile=True)
    layers = row["layers"]
    # Five convs and three linears, paired with the FCN's convs in order; the layers' FLOPs
    # add up to the counted totals (FLOPs of pools and ReLUs are not counted by torch either).
    assert [r["layer"] for r in layers][-3:] == ["classifier.1", "classifier.4", "classifier.6"]
    assert len(layers) == 8 and all(r["fcn_ms"] > 0 and r["patch_ms"] > 0 for r in layers)
    assert sum(r["fcn_gflop"] for r in layers) * 1e9 == pytest.approx(row["fcn_flops"], rel=1e-6)
    assert sum(r["patch_gflop"] for r in layers) * 1e9 == pytest.approx(row["patch_flops"],
                                                                        rel=1e-6)
    # Convolutionalization does not share the classifier layers' work: the same FLOPs per
    # position in both paths.
    assert layers[-1]["fcn_gflop"] == pytest.approx(layers[-1]["patch_gflop"])
    assert amortization_row("alexnet", alexnet(num_classes=10, width=1 / 16), 224,
                            repeats=1)["layers"] is None  # only when asked
