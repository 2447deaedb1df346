"""Input conventions are artifact metadata: a Caffe-convention VGG16 FCN (the paper's weights as
pytorch-fcn converted them: BGR, 0-255, minus the Caffe mean) exports with the convention
recorded, and host preprocessing and the rgb8 graph apply it, never the ImageNet default."""
import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run

from fcn_deploy.contract.conventions import CAFFE_MEAN
from fcn_deploy.contract.metadata import onnx_metadata
from fcn_deploy.contract.preprocess import normalize
from fcn_deploy.models import build_model, random_init_
from fcn_deploy.runtime import open_segmenter


def test_caffe_normalization_is_bgr_0_255_minus_the_caffe_mean():
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    x = normalize(images, CAFFE_MEAN, (1, 1, 1), "caffe")
    want = images[..., ::-1].astype(np.float32).transpose(0, 3, 1, 2)
    want = want - np.float32(CAFFE_MEAN).reshape(1, 3, 1, 1)
    np.testing.assert_array_equal(x, want)


@pytest.fixture(scope="module")
def caffe_file(tmp_path_factory):
    """A width-1/16 FCN-8s state dict named as pytorch-fcn names its Caffe conversions."""
    model = random_init_(build_model("fcn8s-vgg16", 21, 0.0625), seed=3).eval()
    path = tmp_path_factory.mktemp("caffe") / "fcn8s_from_caffe.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_a_caffe_named_file_without_a_convention_is_asked_for_one(caffe_file, tmp_path):
    _, path = caffe_file
    result = run("export", path, "--arch", "fcn8s-vgg16", "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "named like pytorch-fcn's conversion",
                          "--input-convention caffe", code=2)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("input_format", ["float", "rgb8"])
def test_every_runtime_path_applies_the_recorded_convention(caffe_file, tmp_path, input_format):
    model, path = caffe_file
    out = tmp_path / f"{input_format}.onnx"
    result = run("export", path, "--arch", "fcn8s-vgg16", "--input-convention", "caffe",
                 "--input", input_format, "-o", out)
    assert result.exit_code == 0, result.output
    assert "input convention caffe: BGR 0-255 minus the Caffe VGG mean" in result.output
    meta = onnx_metadata(out)
    assert (meta.convention, meta.mean, meta.std) == ("caffe", list(CAFFE_MEAN), [1, 1, 1])
    images = np.random.default_rng(1).integers(0, 256, (2, 61, 45, 3), dtype=np.uint8)
    with torch.no_grad():
        want = model(torch.from_numpy(normalize(images, CAFFE_MEAN, (1, 1, 1), "caffe")))
    imagenet = model(torch.from_numpy(normalize(images))).argmax(1).numpy()
    with open_segmenter(out) as seg:
        labels = seg.predict(images)
    assert (labels == want.argmax(1).numpy()).mean() >= 0.999
    assert (labels != imagenet).mean() > 0.05  # the convention matters for these weights


def test_a_checkpoint_or_onnx_file_keeps_its_own_convention(tmp_path):
    onnx = tmp_path / "m.onnx"
    assert run("export", "--random-init", "--arch", "fcn8s-vgg16", "--width", "0.0625",
               "-o", onnx).exit_code == 0
    assert onnx_metadata(onnx).convention == "imagenet"
    result = run("export", onnx, "--precision", "fp16", "--input-convention", "caffe",
                 "-o", tmp_path / "h.onnx")
    assert_one_line_error(result, "--input-convention apply to checkpoints only", code=2)
