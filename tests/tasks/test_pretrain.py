"""Pretraining a classifier on scene patches, then FCN-32s from it (the paper's pipeline)."""
from fcn_deploy.models import vgg16
from fcn_deploy.models.checkpoint import load_state_dict_file, read_metadata
from tests.helpers import assert_one_line_error, run


def test_pretrained_classifier_initialises_fcn32s(tmp_path):
    clf = tmp_path / "vgg16.safetensors"
    result = run("pretrain", "-o", clf, "--samples", 8, "--val-samples", 4, "--epochs", 1,
                 "--batch-size", 4)
    assert result.exit_code == 0, result.output
    assert "val accuracy" in result.output
    meta = read_metadata(clf)
    assert meta["arch"] == "vgg16" and meta["kind"] == "classifier"
    assert meta["pretrain_config"]["samples"] == 8
    # a plain VGG16 in torchvision's layout: the batch norms were folded away
    assert load_state_dict_file(clf).keys() == vgg16(7, 0.125).state_dict().keys()
    fcn = tmp_path / "fcn32s.safetensors"
    result = run("train", "--arch", "fcn32s-vgg16", "--init", clf, "--epochs", 1, "--samples", 2,
                 "--image-size", 32, "-o", fcn)
    assert result.exit_code == 0, result.output
    # the classifier was trained on the same 7 classes: its last layer becomes score_fr
    assert "initialised 32 tensors of fcn32s-vgg16" in result.output
    assert "score_fr too" in result.output


def test_out_that_is_a_folder_is_refused(tmp_path):
    assert_one_line_error(run("pretrain", "-o", tmp_path), "is a folder")
