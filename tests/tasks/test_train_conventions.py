"""Training feeds the input convention its starting weights learned: pytorch-fcn's Caffe
weights are fine-tuned on BGR 0-255 minus the Caffe mean, and the checkpoint records it."""
import torch
from helpers import assert_one_line_error, run

from fcn_deploy.contract.conventions import CAFFE_MEAN
from fcn_deploy.models import build_model, random_init_
from fcn_deploy.models.checkpoint import model_metadata

TINY = ["--width", "0.0625", "--image-size", "32", "--samples", "2", "--batch-size", "2",
        "--epochs", "1"]


def test_caffe_weights_train_in_their_convention_and_it_is_recorded(tmp_path):
    caffe = tmp_path / "fcn32s_from_caffe.pth"
    torch.save(random_init_(build_model("fcn32s-vgg16", 7, 0.0625)).state_dict(), caffe)
    out = tmp_path / "ft.safetensors"
    result = run("train", "--arch", "fcn32s-vgg16", *TINY, "--init", caffe, "-o", out)
    assert_one_line_error(result, "named like pytorch-fcn's conversion", code=2)
    assert not out.exists()
    result = run("train", "--arch", "fcn32s-vgg16", *TINY, "--init", caffe,
                 "--input-convention", "caffe", "-o", out)
    assert result.exit_code == 0, result.output
    meta = model_metadata(out)
    assert (meta.convention, meta.mean) == ("caffe", list(CAFFE_MEAN))
    # staged training from it keeps it; asking for another is refused
    more = tmp_path / "fcn16s.safetensors"
    assert run("train", "--arch", "fcn16s-vgg16", *TINY, "--init", out, "-o", more).exit_code == 0
    assert model_metadata(more).convention == "caffe"
    result = run("train", "--arch", "fcn16s-vgg16", *TINY, "--init", out, "--input-convention",
                 "imagenet", "-o", tmp_path / "x.safetensors")
    assert_one_line_error(result, "learned input convention caffe", code=2)
