"""OpenVINO backend: an fcn-deploy ONNX file compiled for the CPU, dynamic N/H/W kept, with a
thread count, a performance hint and a compiled-model cache (the second load skips compiling).

OpenVINO runs the same files as onnxruntime: FP32, FP16 (computed in FP32 on CPUs), and INT8
Q/DQ graphs, which its low-precision transformations turn into int8 kernels.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fcn_deploy.contract.metadata import onnx_metadata
from fcn_deploy.errors import FcnDeployError, OptionError

from .base import Segmenter

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
EXTRA = "openvino"  # pip install 'fcn-deploy[openvino]'


def default_cache_dir() -> Path:
    """Where compiled models are cached unless told: ``$XDG_CACHE_HOME/fcn-deploy/openvino``
    (``~/.cache`` without it), as other tools keep their caches."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fcn-deploy" / "openvino"


class OpenVINOSegmenter(Segmenter):
    """Runs an fcn-deploy ONNX file in OpenVINO on the CPU."""

    backend = "openvino"

    def __init__(self, path: Path, threads: int | None = None, hint: str = "latency",
                 cache_dir: Path | None = None):
        if hint not in HINTS:
            raise OptionError(f"unknown OpenVINO performance hint {hint!r}; choose "
                              f"{', '.join(HINTS)}")
        super().__init__(Path(path), onnx_metadata(path))
        self.threads, self.hint = threads, hint
        self.cache_dir = None if cache_dir is None else Path(cache_dir)

    def _load(self) -> None:
        try:
            import openvino as ov  # the openvino extra: only when a model loads
        except ModuleNotFoundError:
            raise FcnDeployError("the openvino backend needs OpenVINO, which is not installed "
                                 f"here: pip install 'fcn-deploy[{EXTRA}]'") from None
        # FP32 stays FP32: on CPUs with bf16/AMX OpenVINO would otherwise compute in bf16.
        config = {"PERFORMANCE_HINT": HINTS[self.hint], "INFERENCE_PRECISION_HINT": "f32"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(self.cache_dir)
        try:  # from the path: the cache is keyed on the file, so a second load skips compiling
            self._compiled = ov.Core().compile_model(str(self.path), "CPU", config)
        except RuntimeError as e:
            raise FcnDeployError(f"OpenVINO {ov.__version__} cannot compile {self.path}: "
                                 f"{str(e).splitlines()[0]}") from e
        self._request = self._compiled.create_infer_request()
        self._ports = [self._compiled.output(name) for name in self.outputs]

    def _release(self) -> None:
        self._request = self._compiled = self._ports = None

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.require_static_shape(batch)
        results = self._request.infer({"input": batch})
        # copies: the request's output buffers are reused by its next inference
        return [np.array(results[port]) for port in self._ports]
