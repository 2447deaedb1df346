"""The backend table: every module under runtime/backends/ declares a whole backend, the
factory and the CLI read it, options a backend does not take are refused, and a backend that
cannot run here says why in one line."""
import pytest
from helpers import export_tiny, run

from fcn_deploy.errors import OptionError
from fcn_deploy.runtime import open_segmenter
from fcn_deploy.runtime.registry import (
    CAPABILITIES,
    DEVICES,
    KINDS,
    backends,
    check_options,
    choose,
    get,
    installed,
)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("registry") / "m.onnx")


def test_every_backend_declares_itself_whole():
    assert {"torch", "onnxruntime", "openvino", "tensorrt"} <= set(backends())
    for b in backends().values():
        assert b.kinds and set(b.kinds) <= set(KINDS) and set(b.devices) <= set(DEVICES)
        assert set(b.capabilities) <= set(CAPABILITIES) and b.summary and callable(b.open)
        reason = b.unavailable()
        assert reason is None or (isinstance(reason, str) and "\n" not in reason), reason


def test_auto_picks_by_kind_and_device():
    assert choose("checkpoint", "cpu").name == "torch"
    assert choose("onnx", "cpu").name == "onnxruntime"
    assert choose("engine", "cpu").name == "tensorrt"  # engines run on their GPU
    assert installed("onnx", "cpu")[0] == "onnxruntime"
    with pytest.raises(OptionError, match="unknown backend 'tvm'; choose auto, torch"):
        get("tvm")
    with pytest.raises(OptionError, match="unknown device 'tpu'"):
        choose("onnx", "tpu")


def test_an_option_a_backend_does_not_take_is_refused(onnx_file):
    with pytest.raises(OptionError, match="--pad does not apply to the onnxruntime backend "
                                          r"\(it is for tensorrt\)"):
        open_segmenter(onnx_file, pad=True)
    with pytest.raises(OptionError, match="--cuda-graph does not apply to the openvino"):
        open_segmenter(onnx_file, backend="openvino", cuda_graph=True)
    check_options(get("onnxruntime"), {"threads": None, "pad": False})  # defaults: not given
    seg = open_segmenter(onnx_file, threads=1)
    assert seg.backend == "onnxruntime" and seg.threads == 1


def test_the_cli_lists_every_backend_and_its_extra():
    text = " ".join(run("predict", "--help").output.split())
    for b in backends().values():
        assert b.name in text
        assert b.extra is None or f"fcn-deploy[{b.extra}]" in text
