"""FCN-ResNet50/101: torchvision's architecture and names (its weight files load strictly, its
forward is matched), the ResNet classifier it is pretrained as, and its convolutionalization."""
import sys

import pytest
import torch
from peers import randomize_batch_norm_, torchfcn_models, torchvision_models

from fcn_deploy.errors import CheckpointError
from fcn_deploy.models import build_model, random_init_
from fcn_deploy.models.catalog import ARCHS, family_of
from fcn_deploy.models.checkpoint import load_state_dict_file
from fcn_deploy.models.pretrained import check_fits

FAMILY = family_of("fcn-resnet50")
SIZES = [(97, 131), (160, 120)]


def _images(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 3, h, w, generator=gen) for h, w in SIZES]


def test_the_catalog_lists_both_depths_with_torchvision_names():
    assert {"fcn-resnet50", "fcn-resnet101"} <= set(ARCHS)
    assert family_of("fcn-resnet101") is FAMILY and FAMILY.foreign_convention == "imagenet"
    model = build_model("fcn-resnet50", 5, 0.125)
    state = model.state_dict()
    assert {"backbone.conv1.weight", "backbone.bn1.running_var", "backbone.layer1.0.conv1.weight",
            "backbone.layer1.0.downsample.0.weight", "backbone.layer4.2.bn3.bias",
            "classifier.0.weight", "classifier.1.running_mean", "classifier.4.weight",
            "classifier.4.bias"} <= set(state)
    assert not [k for k in state if k.startswith(("backbone.fc", "backbone.avgpool", "aux"))]
    assert FAMILY.width_of(state) == 0.125 and state[FAMILY.score].shape[:2] == (5, 64)
    assert len([k for k in build_model("fcn-resnet101", 5, 0.125).state_dict()
                if k.endswith("conv2.weight")]) == 3 + 4 + 23 + 3


def test_stride_8_from_dilation_no_crops_and_the_input_size_out():
    model = build_model("fcn-resnet50", 5, 0.125).eval()
    assert model.stride == 8 and model.crops == [] and model.trunk_names == ["backbone"]
    # layer3 and layer4 trade their stride for dilation: 2 then 4 after each first block
    assert [b.conv2.dilation[0] for b in model.backbone.layer4] == [2, 4, 4]
    assert model.backbone.layer3[0].conv2.dilation[0] == 1
    with torch.no_grad():
        for x in _images():
            h, w = x.shape[2:]
            assert model.backbone(x).shape[2:] == (-(-h // 8), -(-w // 8))
            out = model(x)
            assert out.shape == (1, 5, h, w)
            assert not out.any()  # the score layer starts at zero


@pytest.mark.parametrize("arch", ["fcn-resnet50", "fcn-resnet101"])
def test_random_init_gives_varied_finite_scores_despite_batch_norm(arch):
    model = random_init_(build_model(arch, 5, 0.125)).eval()
    with torch.no_grad():
        out = model(_images()[0])
    assert torch.isfinite(out).all() and out.std() > 0
    assert len(out.argmax(1).unique()) > 1


# full width (torchvision has no width): ~6 s for ResNet-50 on 2 cores, ~13 s for ResNet-101
@pytest.mark.parametrize("arch", ["fcn-resnet50",
                                  pytest.param("fcn-resnet101", marks=pytest.mark.slow)])
def test_a_torchvision_file_loads_strictly_and_gives_torchvisions_scores(arch, tmp_path):
    builder = getattr(torchvision_models().segmentation, arch.replace("-", "_"))
    torch.manual_seed(0)
    theirs = randomize_batch_norm_(builder(weights=None, weights_backbone=None,
                                            num_classes=21, aux_loss=True))
    path = tmp_path / f"{arch}.pth"
    torch.save(theirs.state_dict(), path)
    state = FAMILY.foreign_state(arch, load_state_dict_file(path), path.name)
    assert not [k for k in state if k.startswith("aux_classifier.")]
    assert FAMILY.width_of(state) == 1.0 and state[FAMILY.score].shape[0] == 21
    ours = build_model(arch, 21, 1.0)
    check_fits(ours, state, path.name)
    ours.load_state_dict(state, strict=True)
    ours.eval()
    with torch.no_grad():
        for x in _images():
            mine, ref = ours(x), theirs(x)["out"]
            torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
            assert (mine.argmax(1) == ref.argmax(1)).float().mean() >= 0.999


def test_a_wrong_file_names_its_first_missing_or_unexpected_tensor():
    state = build_model("fcn-resnet50", 5, 0.125).state_dict()
    state["aux_classifier.4.weight"] = torch.zeros(5, 16, 1, 1)  # dropped: training-only
    model = build_model("fcn-resnet50", 5, 0.125)
    good = FAMILY.foreign_state("fcn-resnet50", state, "f.pth")
    check_fits(model, good, "f.pth")
    missing = {k: v for k, v in good.items() if k != "backbone.layer2.1.bn2.weight"}
    with pytest.raises(CheckpointError, match=r"missing tensor backbone\.layer2\.1\.bn2\.weight"):
        check_fits(model, missing, "f.pth")
    extra = {**good, "backbone.fc.weight": torch.zeros(5, 256)}
    with pytest.raises(CheckpointError, match=r"unexpected tensor backbone\.fc\.weight"):
        check_fits(model, extra, "f.pth")
    with pytest.raises(CheckpointError, match=r"missing tensor backbone\.layer3\.6\.conv1\.weight"):
        check_fits(build_model("fcn-resnet101", 5, 0.125), good, "f.pth")


def test_a_torchvision_resnet50_loads_into_the_classifier_and_convolutionalizes():
    torch.manual_seed(0)
    theirs = randomize_batch_norm_(torchvision_models().resnet50(weights=None))
    state = theirs.state_dict()
    assert FAMILY.is_classifier(state)
    ours = FAMILY.classifier(1000, 1.0)
    assert list(ours.state_dict()) == list(state)
    ours.load_state_dict(state, strict=True)
    ours.eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = ours(x)
        torch.testing.assert_close(logits, theirs(x), rtol=1e-5, atol=1e-5)
        net = FAMILY.convolutionalize(ours).eval()
        assert net.stride == 32 and net.patch_size == (224, 224)
        cell = net(x)
        assert cell.shape == (1, 1000, 1, 1)
        torch.testing.assert_close(cell[:, :, 0, 0], logits, rtol=1e-4, atol=1e-4)


def test_the_classifier_initialises_the_fcn_trunk():
    torch.manual_seed(0)
    classifier = FAMILY.classifier(7, 0.125).eval()
    assert FAMILY.width_of(classifier.state_dict()) == 0.125
    assert not FAMILY.is_classifier(build_model("fcn-resnet50", 5, 0.125).state_dict())
    net = FAMILY.convolutionalize(classifier)
    # fully convolutional: a larger image gives a map, one cell per 32-px step
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 288, 256)).shape == (1, 7, 3, 2)
    model = build_model("fcn-resnet50", 5, 0.125)
    state = FAMILY.fcn_state(model, net, [])
    assert set(state) == {k for k in model.state_dict() if k.startswith("backbone.")}
    model.load_state_dict(state, strict=False)
    assert torch.equal(model.backbone.layer3[5].conv2.weight, classifier.layer3[5].conv2.weight)
    assert torch.equal(model.backbone.bn1.running_var, classifier.bn1.running_var)
    with pytest.raises(CheckpointError,
                       match=r"fcn-resnet101's trunk: missing tensor backbone\.layer3\.6\."):
        FAMILY.fcn_state(build_model("fcn-resnet101", 5, 0.125), net, [])


def test_the_peers_import_without_leaving_stubs_behind():
    tv, fcn = torchvision_models(), torchfcn_models()
    assert hasattr(tv.segmentation, "fcn_resnet101") and hasattr(fcn, "FCN8s")
    assert not [k for k in sys.modules if k.split(".")[0] in ("torchvision", "torchfcn", "fcn")]
    with pytest.raises(RuntimeError, match="download nothing"):
        fcn.FCN32s.download()
