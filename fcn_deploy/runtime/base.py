"""The one interface every backend implements: load lazily, infer a batch, release.

Like Polygraphy's runners: constructing a Segmenter only reads the artifact's metadata;
``load`` acquires the session, engine or model; ``close`` (or leaving a ``with``) releases it.
Preprocessing comes from the artifact's metadata and is applied here, once, for every backend:
normalization for float graphs, none for rgb8 graphs (they take camera frames as they are).
"""
from __future__ import annotations

import abc
import time
from pathlib import Path
from typing import Callable

import numpy as np

from fcn_deploy.contract.metadata import ArtifactMeta
from fcn_deploy.contract.outputs import OUTPUT_MODES
from fcn_deploy.contract.preprocess import check_input, model_input
from fcn_deploy.errors import FcnDeployError
from fcn_deploy.shapes import fmt_shape

# CUDA graphs are captured per input shape and each holds its own memory: past this many
# shapes (a VOC eval has hundreds) further shapes run without one.
MAX_GRAPHS = 8


class Segmenter(abc.ABC):
    """An FCN artifact ready to run: ``infer`` takes batches in the artifact's input convention
    (normalized float32 NCHW, or uint8 NHWC frames for rgb8 graphs), ``predict`` takes uint8
    NHWC RGB images and returns uint8 label maps."""

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
        """fp32, fp16, or int8 with its scheme (``int8 s8s8``; ``int8 s8s8 7-bit`` for an
        export with --reduce-range)."""
        calibration = self.meta.extra.get("calibration") or {}
        return " ".join(filter(None, [self.meta.precision, self.meta.int8_scheme,
                                      "7-bit" if calibration.get("reduce_range") else None]))

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
        """Every output of the artifact, by name, for a batch in its input convention."""
        batch = check_input(batch, self.meta, self.path or "this model")
        self.load()
        return dict(zip(self.outputs, self._run(batch)))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The primary output (logits, probs or labels) for a batch in its input convention."""
        return self.run(batch)[self.outputs[0]]

    def require_static_shape(self, batch: np.ndarray) -> None:
        """FcnDeployError unless ``batch`` fits a static-shape copy's one shape (if this is one)."""
        static = self.meta.static_shape  # N, C, H, W whatever the input layout
        if static and list(self.meta.input.nchw(batch.shape)) != static:
            n, _, h, w = static
            raise FcnDeployError(f"{self.path} takes only {fmt_shape(self.input_shape(n, h, w))} "
                                 f"inputs (a static-shape copy), not {fmt_shape(batch.shape)}")

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x 3 RGB -> the batch this artifact takes: normalized float32 NCHW,
        or the frames themselves for an rgb8 graph."""
        return model_input(images, self.meta)

    def input_shape(self, n: int, h: int, w: int) -> tuple[int, int, int, int]:
        """The input tensor's shape for N images of H x W (NCHW, or NHWC for rgb8 graphs)."""
        return self.meta.input.shape(n, h, w)

    def random_input(self, shape: tuple[int, int, int, int], seed: int = 0) -> np.ndarray:
        """A random input of NCHW ``shape`` in the artifact's convention (bench, timers)."""
        rng = np.random.default_rng(seed)
        n, _, h, w = shape
        if self.meta.input.format == "rgb8":
            return rng.integers(0, 256, self.input_shape(n, h, w), dtype=np.uint8)
        return rng.standard_normal(shape, dtype=np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W label maps for uint8 N x H x W x 3 RGB images."""
        out = self.infer(self.preprocess(images))
        return out if out.dtype == np.uint8 else out.argmax(1).astype(np.uint8)

    def timer(self, shape: tuple[int, int, int, int], seed: int = 0) -> Callable[[], float]:
        """A function running one inference on a resident random input of ``shape`` (NCHW)
        and returning its milliseconds: wall clock here; torch on CUDA and TensorRT override
        it with CUDA events around the work on their stream."""
        self.load()
        return self._timer(self.random_input(shape, seed))

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
        """The outputs, in ``outputs`` order, for a contiguous batch ``run`` checked."""
