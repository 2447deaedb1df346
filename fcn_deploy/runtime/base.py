"""The one interface every backend implements: load lazily, infer a batch, release.

Like Polygraphy's runners: constructing a Segmenter only reads the artifact's metadata;
``load`` acquires the session, engine or model; ``close`` (or leaving a ``with``) releases it.
Preprocessing comes from the artifact's metadata and is applied here, once, for every backend.
"""
from __future__ import annotations

import abc
import time
from pathlib import Path
from typing import Callable

import numpy as np

from fcn_deploy.contract.metadata import ArtifactMeta
from fcn_deploy.contract.outputs import OUTPUT_MODES
from fcn_deploy.contract.preprocess import normalize

# CUDA graphs are captured per input shape and each holds its own memory: past this many
# shapes (a VOC eval has hundreds) further shapes run without one.
MAX_GRAPHS = 8


class Segmenter(abc.ABC):
    """An FCN artifact ready to run: ``infer`` takes normalized float32 NCHW batches,
    ``predict`` takes uint8 NHWC RGB images and returns uint8 label maps."""

    backend: str = ""

    def __init__(self, path: Path | None, meta: ArtifactMeta):
        self.path, self.meta, self._loaded = path, meta, False
        # Start-up costs the bench reports: load_s (model build or load, ONNX session creation,
        # engine deserialization with buffers) and backend-specific ones (TensorRT: context_s).
        self.phases: dict[str, float] = {}

    @property
    def output(self) -> str:
        """The artifact's output mode: logits, probs, labels or labels+score."""
        return self.meta.output

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the tensors ``run`` returns, primary first (models/heads.py)."""
        return OUTPUT_MODES[self.output]

    @property
    def precision(self) -> str:
        """fp32, fp16, or int8 with its scheme (``int8 s8s8``)."""
        return " ".join(filter(None, [self.meta.precision, self.meta.int8_scheme]))

    @property
    def device(self) -> str:
        return "cpu"

    def load(self) -> "Segmenter":
        """Acquire the backend's resources (idempotent)."""
        if not self._loaded:
            start = time.perf_counter()
            self._load()
            self.phases.setdefault("load_s", time.perf_counter() - start)
            self._loaded = True
        return self

    def close(self) -> None:
        """Release the backend's resources; ``load`` may be called again later."""
        if self._loaded:
            try:
                self._release()
            finally:  # released as far as it went: never twice
                self._loaded = False

    def __enter__(self) -> "Segmenter":
        return self.load()

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the artifact, by name, for a normalized float32 NCHW batch."""
        self.load()
        return dict(zip(self.outputs, self._run(np.ascontiguousarray(batch, dtype=np.float32))))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The primary output (logits, probs or labels) for a normalized NCHW batch."""
        return self.run(batch)[self.outputs[0]]

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x 3 RGB -> the normalized float32 NCHW batch this artifact takes."""
        return normalize(images, self.meta.mean, self.meta.std)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W label maps for uint8 N x H x W x 3 RGB images."""
        out = self.infer(self.preprocess(images))
        return out if out.dtype == np.uint8 else out.argmax(1).astype(np.uint8)

    def timer(self, shape: tuple[int, int, int, int], seed: int = 0) -> Callable[[], float]:
        """A function running one inference on a resident random input of ``shape`` (NCHW)
        and returning its milliseconds: wall clock here; torch on CUDA and TensorRT override
        it with CUDA events around the work on their stream."""
        self.load()
        return self._timer(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))

    def _timer(self, x: np.ndarray) -> Callable[[], float]:
        """Wall-clock timing of ``_run(x)``; device backends override it to keep ``x`` and
        the output on the device (like trtexec's GPU compute time) and time with events."""
        def timed() -> float:
            start = time.perf_counter()
            self._run(x)
            return 1000 * (time.perf_counter() - start)
        return timed

    @abc.abstractmethod
    def _load(self) -> None: ...

    @abc.abstractmethod
    def _release(self) -> None: ...

    @abc.abstractmethod
    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The outputs, in ``outputs`` order, for a contiguous float32 batch."""
