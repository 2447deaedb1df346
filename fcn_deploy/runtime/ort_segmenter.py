"""onnxruntime backend: execution providers chosen by name, intra- and inter-op thread count."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fcn_deploy.contract.metadata import onnx_metadata
from fcn_deploy.errors import FcnDeployError, OptionError

from .base import Segmenter

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}


class OrtSegmenter(Segmenter):
    """Runs an fcn-deploy ONNX file in onnxruntime; ``optimize=False`` turns its graph
    optimizations off, so a Q/DQ graph runs QuantizeLinear, DequantizeLinear and Conv in float:
    the graph's exact INT8 arithmetic, a reference for the runtimes' integer kernels."""

    backend = "onnxruntime"

    def __init__(self, path: Path, providers: tuple[str, ...] = ("cpu",),
                 threads: int | None = None, optimize: bool = True):
        unknown = [p for p in providers if p not in PROVIDERS]
        if unknown:
            raise OptionError(f"unknown onnxruntime provider {unknown[0]!r}; choose "
                              f"{', '.join(PROVIDERS)}")
        super().__init__(Path(path), onnx_metadata(path))
        self.providers, self.threads, self.optimize = tuple(providers), threads, optimize

    @property
    def device(self) -> str:
        return "cpu" if self.providers[0] == "cpu" else "cuda"

    def _load(self) -> None:
        import onnxruntime as ort  # 0.2-0.3 s: paid by load, not by reading metadata

        available = ort.get_available_providers()
        missing = [p for p in self.providers if PROVIDERS[p] not in available]
        if missing:
            raise FcnDeployError(f"onnxruntime {ort.__version__} here has no "
                                 f"{PROVIDERS[missing[0]]} (available: {', '.join(available)}); "
                                 "GPU providers need onnxruntime-gpu "
                                 "(pip install 'fcn-deploy[gpu]')")
        opts = ort.SessionOptions()
        # errors come back as exceptions (one line each); its log would print them again
        opts.log_severity_level = 4
        if self.threads:  # both pools, as torch's, so that neither backend oversubscribes
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = self.threads
        if not self.optimize:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self._session = ort.InferenceSession(str(self.path), opts,
                                             providers=[PROVIDERS[p] for p in self.providers])
        got = self._session.get_providers()[0]
        if got != PROVIDERS[self.providers[0]]:  # onnxruntime falls back silently otherwise
            self._session = None
            raise FcnDeployError(f"onnxruntime could not start {PROVIDERS[self.providers[0]]} for "
                                 f"{self.path} (it fell back to {got})")

    def _release(self) -> None:
        self._session = None

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.require_static_shape(batch)
        return self._session.run(list(self.outputs), {"input": batch})
