import numpy as np
import pytest
import torch

from fcn_deploy.data.synthetic import SyntheticShapes
from fcn_deploy.errors import ExportError
from fcn_deploy.exporters.export import default_class_names, export
from fcn_deploy.models import build_model

META = {"arch": "fcn8s-vgg16", "width": 0.0625, "num_classes": 7,
        "class_names": default_class_names(7), "mean": [0.5] * 3, "std": [0.25] * 3}


def images(n=2):
    data = SyntheticShapes("train", n, 48)
    return [data[i][0] for i in range(n)]


def overflowing_model():
    """Finite in FP32, beyond FP16's 65504 after conv1_2."""
    torch.manual_seed(0)
    model = build_model("fcn8s-vgg16", 7, width=0.0625).eval()
    with torch.no_grad():
        model.conv1_2.weight.mul_(1e6)
    return model


def test_fp16_overflow_is_refused_naming_the_node(tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"NaN or Inf on calibration image 0 \(first in .*"
                       r"the output of Conv node .*conv1_2.*--keep-fp32 .*conv1_2"):
        export(overflowing_model(), META, None, out, "fp16", calibration=images())
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_healthy_model_passes_the_scan(tmp_path):
    torch.manual_seed(0)
    model = build_model("fcn8s-vgg16", 7, width=0.0625).eval()
    export(model, META, None, tmp_path / "ok.onnx", "fp16", calibration=images())
    assert (tmp_path / "ok.onnx").exists()
