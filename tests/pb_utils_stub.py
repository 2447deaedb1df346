"""A stand-in for Triton's ``triton_python_backend_utils`` (only inside the Python backend's
stub), with the few names fcn-deploy's model.py files use: tests run their batching and error
answers without a server."""
from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np


class Tensor:
    def __init__(self, name, array):
        self.name, self.array = name, array

    def as_numpy(self):
        return self.array


class Response:
    def __init__(self, output_tensors, error=None):
        self.outputs, self.error = {t.name: t.array for t in output_tensors}, error

    def has_error(self) -> bool:
        return self.error is not None


class MetricFamily:
    COUNTER = "counter"
    counts: dict = {}  # labels -> count, over every model

    def __init__(self, name, description, kind):
        self.name = name

    def Metric(self, labels):  # noqa: N802 - Triton's name
        family, key = self, (self.name, tuple(sorted(labels.items())))

        class Counter:
            def increment(self, n):
                family.counts[key] = family.counts.get(key, 0) + n
        return Counter()


class TritonError(RuntimeError):
    INTERNAL, INVALID_ARG = 13, 3  # Triton's codes (HTTP 500 and 400)

    def __init__(self, message, code=INTERNAL):
        super().__init__(message)
        self.code = code


def fake_pb_utils() -> types.ModuleType:
    """The module model.py imports as ``triton_python_backend_utils``."""
    pb = types.ModuleType("triton_python_backend_utils")
    pb.Tensor, pb.InferenceResponse, pb.TritonError = Tensor, Response, TritonError
    pb.MetricFamily = MetricFamily
    pb.TritonModelException = RuntimeError
    pb.get_input_tensor_by_name = lambda request, name: request.get(name)
    pb.triton_string_to_numpy = {"TYPE_FP32": np.float32, "TYPE_UINT8": np.uint8}.get
    return pb


def load_model(monkeypatch, model_py: Path, config: dict, **args):
    """``model_py``'s TritonPythonModel initialized as the Python backend does (``config`` as
    Triton's JSON, with int dims)."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils())
    for name in [m for m in sys.modules if m.startswith("fcn_deploy.exporters.triton_python")]:
        monkeypatch.delitem(sys.modules, name)  # re-imported beside this stand-in
    spec = importlib.util.spec_from_file_location("model", model_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for tensor in config["input"] + config["output"]:
        tensor["dims"] = [int(d) for d in tensor["dims"]]
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), **args})
    return model
