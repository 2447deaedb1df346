"""``fcn-deploy info``: one record for checkpoints, ONNX files and engines, the same keys for
each, numbers as numbers; the text form shows no Python ``None``."""
import importlib.util
import json

import pytest
from helpers import export_tiny, run

from fcn_deploy.exporters.tensorrt_build import build_engine
from fcn_deploy.runtime.tensorrt import Profile
from fcn_deploy.tasks.info import describe

KEYS = ["kind", "path", "size_bytes", "arch", "width", "num_classes", "class_names", "mean",
        "std", "convention", "input", "stride", "precision", "int8_scheme", "output",
        "static_shape", "activation_bytes_per_pixel", "epoch", "learn_upsample",
        "fcn_deploy_version", "source_sha256", "parameters", "crop_offsets", "inputs", "outputs",
        "engine"]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, tiny_training):
    d = tmp_path_factory.mktemp("info")
    found = {"checkpoint": tiny_training[0], "onnx": export_tiny(d / "m.onnx", "--output",
                                                                 "labels+score")}
    if importlib.util.find_spec("tensorrt_rtx"):
        build_engine(export_tiny(d / "e.onnx"), d / "m.engine",
                     [Profile((1, 3, 32, 32), (1, 3, 64, 64), (2, 3, 96, 128))],
                     backend="tensorrt-rtx", compute_capabilities=["SM86"], log=lambda s: None)
        found["engine"] = d / "m.engine"
    return found


@pytest.mark.parametrize("kind", ["checkpoint", "onnx", "engine"])
def test_one_record_for_every_kind(artifacts, kind):
    if kind not in artifacts:
        pytest.skip("tensorrt_rtx is not installed")
    result = run("info", artifacts[kind], "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert list(record) == KEYS and record["kind"] == kind
    assert record["size_bytes"] == artifacts[kind].stat().st_size
    assert isinstance(record["width"], float) and isinstance(record["stride"], int)
    for tensor in record["inputs"] + record["outputs"]:
        assert all(isinstance(d, int) for d in tensor["shape"]), tensor
    assert record["inputs"][0]["dtype"] == "float32"
    assert record["inputs"][0]["shape"] == [-1, 3, -1, -1]
    text = run("info", artifacts[kind]).output
    assert "None" not in text and "null" not in text


def test_what_each_kind_adds(artifacts):
    ckpt, onnx = describe(artifacts["checkpoint"]), describe(artifacts["onnx"])
    assert isinstance(ckpt["parameters"], int) and ckpt["parameters"] > 1000
    assert ckpt["crop_offsets"] == [5, 9, 31] and ckpt["epoch"] == 1
    assert ckpt["outputs"] == [{"name": "logits", "dtype": "float32", "shape": [-1, 7, -1, -1]}]
    assert onnx["parameters"] is None and onnx["engine"] is None
    assert onnx["outputs"] == [{"name": "labels", "dtype": "uint8", "shape": [-1, -1, -1]},
                               {"name": "score", "dtype": "float32", "shape": [-1, -1, -1]}]
    assert "uint8 [N x H x W]" in run("info", artifacts["onnx"]).output
    if "engine" in artifacts:
        engine = describe(artifacts["engine"])
        assert engine["input"]["height"] == [32, 96] and engine["input"]["width"] == [32, 128]
        assert engine["engine"]["backend"] == "tensorrt_rtx"
        assert engine["engine"]["profiles"][0]["max"] == [2, 3, 96, 128]
        assert "H in [32, 96], W in [32, 128]" in run("info", artifacts["engine"]).output
