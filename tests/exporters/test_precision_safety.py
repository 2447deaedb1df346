import pytest
import torch
from helpers import tiny_meta

from fcn_deploy.data.synthetic import SyntheticShapes
from fcn_deploy.errors import ExportError
from fcn_deploy.exporters.export import export
from fcn_deploy.models import build_model, random_init_

META = tiny_meta()


def images(n=2):
    data = SyntheticShapes("train", n, 48)
    return [data[i][0] for i in range(n)]


def overflowing_model():
    """Finite in FP32, beyond FP16's 65504 after conv1_2."""
    torch.manual_seed(0)
    model = random_init_(build_model("fcn8s-vgg16", 7, width=0.0625)).eval()
    with torch.no_grad():
        model.conv1_2.weight.mul_(1e6)
    return model


def test_fp16_overflow_is_refused_naming_the_node(tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"NaN or Inf on calibration image 0 \(first in .*"
                       r"the output of Conv node .*conv1_2.*--keep-fp32 .*conv1_2"):
        export(overflowing_model(), META, None, out, precision="fp16", calibration=images())
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_healthy_model_passes_the_scan(tmp_path):
    torch.manual_seed(0)
    model = random_init_(build_model("fcn8s-vgg16", 7, width=0.0625)).eval()
    export(model, META, None, tmp_path / "ok.onnx", precision="fp16", calibration=images())
    assert (tmp_path / "ok.onnx").exists()


def test_engine_scan_is_skipped_and_said_where_the_engine_cannot_run(tmp_path):
    pytest.importorskip("tensorrt_rtx")
    if torch.cuda.is_available():
        pytest.skip("checks the no-GPU path")
    from fcn_deploy.exporters.onnx_export import export_onnx
    from fcn_deploy.exporters.tensorrt_build import build_engine
    from fcn_deploy.runtime.tensorrt import DEFAULT_PROFILE

    torch.manual_seed(0)
    export_onnx(random_init_(build_model("fcn8s-vgg16", 7, width=0.0625)).eval(), META,
                tmp_path / "m.onnx", verify_shapes=((1, 3, 40, 40),))
    logged = []
    build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", [DEFAULT_PROFILE], "tensorrt-rtx",
                 ["SM86"], log=logged.append, scan_images=images())
    assert any(line.startswith("NaN/Inf scan of m.engine skipped:") and "GPU" in line
               for line in logged)


@pytest.mark.gpu
def test_engine_with_fp16_overflow_is_refused_and_not_written(tmp_path):
    pytest.importorskip("tensorrt_rtx")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    if torch.cuda.get_device_capability() not in {(7, 5), (8, 0), (8, 6), (8, 9), (12, 0), (12, 1)}:
        pytest.skip("TensorRT-RTX 1.7 engines do not run on this GPU (e.g. H100/H200)")
    from fcn_deploy.exporters.onnx_export import export_onnx
    from fcn_deploy.exporters.precision import convert_fp16
    from fcn_deploy.exporters.tensorrt_build import build_engine
    from fcn_deploy.runtime.tensorrt import DEFAULT_PROFILE

    model = overflowing_model()
    with torch.no_grad():
        torch.nn.init.normal_(model.score_fr.weight)  # let the overflow reach the outputs
    export_onnx(model, META, tmp_path / "m.onnx", verify_shapes=((1, 3, 40, 40),))
    # no ONNX scan: the engine's must catch it
    convert_fp16(tmp_path / "m.onnx", tmp_path / "h.onnx")
    with pytest.raises(ExportError,
                       match="h.engine: NaN or Inf in output logits on calibration image 0"):
        build_engine(tmp_path / "h.onnx", tmp_path / "h.engine", [DEFAULT_PROFILE], "tensorrt-rtx",
                     ["CURRENT"], log=lambda s: None, scan_images=images())
    assert not (tmp_path / "h.engine").exists() and not (tmp_path / "h.engine.json").exists()
