import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fcn_deploy.contract import onnx_file
from fcn_deploy.contract.metadata import onnx_metadata
from fcn_deploy.contract.onnx_file import TensorInfo, read_io, read_props
from fcn_deploy.errors import ArtifactError


def big_model(path, megabytes=32):
    """A Conv with a ``megabytes`` initializer, dynamic N/H/W and fcn-deploy-like props."""
    channels = int((megabytes * 2**20 / 4 / 9) ** 0.5)
    weight = numpy_helper.from_array(np.ones((channels, channels, 3, 3), np.float32), "w")
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, "H", "W"])
    y = helper.make_tensor_value_info("labels", TensorProto.UINT8, ["N", "H", 7])
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["labels"])], "g",
                              [x], [y], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"arch": '"fcn8s-vgg16"', "width": "1.0", "num_classes": "7",
                                   "class_names": json.dumps([f"c{i}" for i in range(7)]),
                                   "mean": "[0.5, 0.5, 0.5]", "std": "[0.25, 0.25, 0.25]",
                                   "onnx.quant.pre_process": "onnxruntime.quant"})
    onnx.save(model, str(path))
    return model


def test_props_and_io_match_onnx_without_reading_the_weights(tmp_path, monkeypatch):
    path = tmp_path / "big.onnx"
    model = big_model(path)
    read = []

    class Counting:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            data = self.f.read(n)
            read.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(onnx_file, "open", lambda p, mode: Counting(open(p, mode)),
                        raising=False)
    props = read_props(path)
    assert props == {p.key: p.value for p in model.metadata_props}
    inputs, outputs = read_io(path)
    assert inputs[0].name == "input" and inputs[0].dtype == "float32"
    assert inputs[0].dims[0] == "N" and inputs[0].dims[2:] == ("H", "W")
    assert outputs == [TensorInfo("labels", "uint8", ("N", "H", 7))]
    assert path.stat().st_size > 30 * 2**20 and sum(read) < 4096  # the weights were skipped
    meta = onnx_metadata(path)  # JSON values decoded, other tools' plain strings kept
    assert meta.arch == "fcn8s-vgg16"
    assert meta.extra["onnx.quant.pre_process"] == "onnxruntime.quant"


def test_cut_off_and_garbage_files_are_one_error(tmp_path):
    path = tmp_path / "m.onnx"
    big_model(path, megabytes=1)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(path.read_bytes()[:-100])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x01garbage" * 10)
    for bad in (cut, garbage):
        with pytest.raises(ArtifactError, match=f"{bad.name} is not a readable ONNX model"):
            read_props(bad)
