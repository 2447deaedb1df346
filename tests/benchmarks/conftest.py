import pytest
from helpers import run


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory):
    """A random-init width-1/16 FCN-8s ONNX file (7 classes) every bench test times."""
    out = tmp_path_factory.mktemp("bench") / "m.onnx"
    result = run("export", "--random-init", "--arch", "fcn8s-vgg16", "--width", "0.0625",
                 "--num-classes", "7", "-o", out)
    assert result.exit_code == 0, result.output
    return out
