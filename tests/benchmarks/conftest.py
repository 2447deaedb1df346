import pytest
from helpers import export_tiny


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory):
    """A random-init width-1/16 FCN-8s ONNX file (7 classes) every bench test times."""
    return export_tiny(tmp_path_factory.mktemp("bench") / "m.onnx")
