import pytest
from helpers import run

TINY = ["--width", "0.0625", "--image-size", "32", "--samples", "4", "--batch-size", "4"]


@pytest.fixture(scope="session")
def tiny_training(tmp_path_factory):
    """(checkpoint, train's output): a 1-epoch width-1/16 FCN-8s on 32 px synthetic scenes,
    trained once for every CLI test; its optimizer state lies beside it."""
    out = tmp_path_factory.mktemp("ckpt") / "fcn8s.safetensors"
    result = run("train", "--arch", "fcn8s-vgg16", *TINY, "--epochs", "1", "--out", out)
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture
def checkpoint(tiny_training):
    return tiny_training[0]
