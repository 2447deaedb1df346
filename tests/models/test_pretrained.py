import pytest
import torch

from fcn_deploy.errors import CheckpointError
from fcn_deploy.models import alexnet, build_model, vgg16
from fcn_deploy.models.backbones import fold_batch_norm
from fcn_deploy.models.checkpoint import load_state_dict_file
from fcn_deploy.models.pretrained import init_from_state


def _save(tmp_path, module, name="clf.pth"):
    path = tmp_path / name
    torch.save(module.state_dict(), path)
    return path


def test_vgg16_classifier_checkpoint_initialises_fcn8s(tmp_path):
    torch.manual_seed(0)
    clf = vgg16(num_classes=1000, width=0.125)
    fcn = build_model("fcn8s-vgg16", 7, width=0.125)
    init_from_state(fcn, load_state_dict_file(_save(tmp_path, clf)), "clf.pth")
    assert torch.equal(fcn.conv1_1.weight, clf.features[0].weight)
    assert torch.equal(fcn.conv5_3.bias, clf.features[28].bias)
    assert torch.equal(fcn.fc6.weight, clf.classifier[0].weight.reshape(fcn.fc6.weight.shape))
    assert torch.equal(fcn.fc7.weight.flatten(1), clf.classifier[3].weight)
    assert fcn.score_fr.weight.abs().sum() == 0  # the 1000-way layer is not carried over


def test_alexnet_classifier_checkpoint_initialises_fcn32s_alexnet(tmp_path):
    torch.manual_seed(0)
    clf = alexnet(num_classes=1000, width=0.125)
    fcn = build_model("fcn32s-alexnet", 5, width=0.125)
    init_from_state(fcn, load_state_dict_file(_save(tmp_path, clf)), "clf.pth")
    assert torch.equal(fcn.features[3].weight, clf.features[3].weight)
    assert torch.equal(fcn.classifier[1].weight.flatten(1), clf.classifier[1].weight)
    assert torch.equal(fcn.classifier[4].weight.flatten(1), clf.classifier[4].weight)


def test_mismatching_checkpoint_names_tensor_and_both_shapes(tmp_path):
    clf = vgg16(width=0.25)
    fcn = build_model("fcn32s-vgg16", 7, width=0.125)
    with pytest.raises(CheckpointError,
                       match=r"features\.0\.weight.*\(16, 3, 3, 3\).*\(8, 3, 3, 3\)"):
        init_from_state(fcn, load_state_dict_file(_save(tmp_path, clf)), "clf.pth")


def test_alexnet_checkpoint_does_not_fit_vgg16(tmp_path):
    fcn = build_model("fcn32s-vgg16", 7, width=0.125)
    with pytest.raises(CheckpointError, match="does not fit"):
        init_from_state(fcn, load_state_dict_file(_save(tmp_path, alexnet(width=0.125))), "a.pth")


def test_staged_init_from_a_coarser_fcn():
    torch.manual_seed(0)
    fcn32 = build_model("fcn32s-vgg16", 7, width=0.125)
    torch.nn.init.normal_(fcn32.score_fr.weight)
    fcn8 = build_model("fcn8s-vgg16", 7, width=0.125)
    loaded = init_from_state(fcn8, fcn32.state_dict(), "fcn32s")
    assert "upscore.weight" not in loaded and "score_fr.weight" in loaded
    assert torch.equal(fcn8.score_fr.weight, fcn32.score_fr.weight)
    assert torch.equal(fcn8.conv3_2.weight, fcn32.conv3_2.weight)
    assert fcn8.score_pool3.weight.abs().sum() == 0


def test_corrupt_checkpoint_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_state_dict_file(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict_file(tmp_path / "missing.safetensors")


def test_folded_batch_norm_classifier_is_a_plain_vgg16_computing_the_same():
    torch.manual_seed(0)
    bn = vgg16(num_classes=7, width=0.125, batch_norm=True)
    for layer in bn.features:
        if isinstance(layer, torch.nn.BatchNorm2d):  # statistics as after training
            layer.running_mean.uniform_(-1, 1)
            layer.running_var.uniform_(0.5, 2)
            torch.nn.init.uniform_(layer.weight, 0.5, 1.5)
            torch.nn.init.uniform_(layer.bias, -0.5, 0.5)
    folded = fold_batch_norm(bn.eval()).eval()
    assert folded.state_dict().keys() == vgg16(num_classes=7, width=0.125).state_dict().keys()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(folded(x), bn(x), atol=1e-4)
    fcn = build_model("fcn32s-vgg16", 7, width=0.125)
    init_from_state(fcn, folded.state_dict(), "folded")  # convolutionalized into FCN-32s
    assert torch.equal(fcn.conv5_3.weight, folded.features[28].weight)


def test_a_classifier_of_the_same_classes_gives_score_fr_too():
    torch.manual_seed(0)
    clf = vgg16(num_classes=7, width=0.125)
    fcn = build_model("fcn32s-vgg16", 7, width=0.125)
    loaded = init_from_state(fcn, clf.state_dict(), "clf", same_classes=True)
    assert "score_fr.weight" in loaded
    assert torch.equal(fcn.score_fr.weight.flatten(1), clf.classifier[6].weight)
    other = build_model("fcn32s-vgg16", 7, width=0.125)
    assert "score_fr.weight" not in init_from_state(other, clf.state_dict(), "clf")
