"""TensorRT backend (``tensorrt`` or ``tensorrt_rtx``, whichever built the engine) through
cuda-python: buffers sized once at the profiles' maximum and reused, one stream,
``set_input_shape`` + ``set_tensor_address`` + ``execute_async_v3``, one execution context per
optimization profile (created when first needed), optional CUDA graph per input shape."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fcn_deploy.atomic import atomic_path
from fcn_deploy.contract.metadata import ArtifactMeta
from fcn_deploy.contract.outputs import PER_CLASS
from fcn_deploy.contract.sidecar import read_sidecar
from fcn_deploy.errors import ArtifactError, FcnDeployError

from . import cuda
from .base import MAX_GRAPHS, Segmenter
from .tensorrt import Profile, collecting_logger, import_backend

_DTYPES = {"float": np.float32, "half": np.float16, "uint8": np.uint8, "int32": np.int32,
           "int64": np.int64}


class NoGpuError(FcnDeployError):
    """This machine has no CUDA GPU at all: engines build here but run elsewhere."""


def no_gpu_reason() -> str | None:
    """``no NVIDIA driver`` or ``no CUDA device`` when this machine has no GPU, else None.
    Asked through the driver API: the runtime API reports both as an insufficient driver."""
    try:
        from cuda.bindings import driver  # cuda-python: the gpu extra
    except ImportError:
        return None  # cuda.runtime() names the package to install
    try:
        err = driver.cuInit(0)[0]
    except RuntimeError:  # cuda-python raises when libcuda itself is missing
        return "no NVIDIA driver"
    if err == driver.CUresult.CUDA_ERROR_NO_DEVICE:
        return "no CUDA device"
    if err != driver.CUresult.CUDA_SUCCESS:
        return None  # a GPU that does not work (old driver, ...): require_gpu names the error
    err, count = driver.cuDeviceGetCount()
    return "no CUDA device" if err == driver.CUresult.CUDA_SUCCESS and count == 0 else None


class TensorRTSegmenter(Segmenter):
    """Runs an engine written by ``fcn-deploy build`` (its sidecar is checked first)."""

    backend = "tensorrt"

    def __init__(self, path: Path, cuda_graph: bool = False, pad: bool = False, log=None,
                 meta: ArtifactMeta | None = None, runtime_cache: Path | None = None):
        meta = meta or read_sidecar(path)  # given: an engine being built, not yet in place
        self.engine = meta.engine
        if runtime_cache is not None and self.engine.backend != "tensorrt_rtx":
            raise FcnDeployError(f"--runtime-cache is for TensorRT-RTX engines; {path} was built "
                                 f"with {self.engine.backend}")
        super().__init__(Path(path), meta)
        # TensorRT-RTX compiles kernels when a context is created; the cache file keeps them.
        self.runtime_cache = Path(runtime_cache) if runtime_cache is not None else None
        self.profiles = [Profile(*(tuple(p[k]) for k in ("min", "opt", "max")))
                         for p in self.engine.profiles]
        self.cuda_graph, self.pad = cuda_graph, pad
        self.backend = self.engine.backend.replace("_", "-")
        self.max_batch = max(p.max[0] for p in self.profiles)
        self.phases["build_s"] = self.engine.build_seconds  # measured by `build`
        self._log, self._shapes_logged = log, set()  # log: which profile each new shape runs in

    @property
    def device(self) -> str:
        return "cuda"

    def _load(self) -> None:
        reason = no_gpu_reason()
        if reason:
            raise NoGpuError(f"running the TensorRT engine {self.path} needs a CUDA GPU; this "
                             f"machine has none ({reason})")
        cuda.require_gpu(f"running the TensorRT engine {self.path}")
        trt = self._trt = import_backend(self.backend)  # the library that built it runs it
        self._logger = collecting_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise ArtifactError(f"{trt.__name__} {trt.__version__} could not deserialize "
                                f"{self.path} (built with {self.engine.backend} "
                                f"{self.engine.backend_version} for "
                                f"{self.engine.compute_capabilities or 'its build GPU'}): "
                                + self._logger.error(last=True))
        self._in_name = self.engine.inputs[0]["name"]
        # Output dtypes as the engine declared them (sidecar), in the artifact's output order.
        declared = {o["name"]: _DTYPES[o["dtype"]] for o in self.engine.outputs}
        self._out_dtypes = [declared[name] for name in self.outputs]
        n, c, h, w = (max(p.max[i] for p in self.profiles) for i in range(4))
        self._contexts, self._graphs, self._in, self._out, self._events = {}, {}, None, [], None
        rt = cuda.runtime()
        self._stream, self._config = cuda.cuda_call(rt.cudaStreamCreate()), None
        try:
            # rgb8 graphs take uint8 frames: a quarter of float32's bytes cross the bus
            self._in = cuda.Buffer(n * c * h * w * self.meta.input.itemsize)
            for name, dtype in zip(self.outputs, self._out_dtypes):
                channels = self.meta.num_classes if name in PER_CLASS else 1
                self._out.append(cuda.Buffer(n * channels * h * w * np.dtype(dtype).itemsize))
            self._config = self._open_runtime_cache() if self.runtime_cache else None
        except FcnDeployError:  # CUDA or runtime cache errors
            self._release()  # load() failed, so close() would not release what we got
            raise

    def _open_runtime_cache(self):
        """A runtime config holding the cache file's kernels (when the file exists and fits
        this GPU, TensorRT-RTX version and driver; otherwise it starts empty)."""
        config = self._engine.create_runtime_config()
        self._cache = config.create_runtime_cache()
        self.phases["runtime_cache_hit"] = False
        if self.runtime_cache.is_file():
            try:
                blob = self.runtime_cache.read_bytes()
            except OSError as e:
                raise FcnDeployError(f"cannot read the runtime cache {self.runtime_cache}: "
                                     f"{e}") from e
            self.phases["runtime_cache_hit"] = bool(self._cache.deserialize(blob))
        self._check(config.set_runtime_cache(self._cache), "runtime cache setup")
        return config

    def _release(self) -> None:
        try:
            self._save_runtime_cache()
        finally:
            self._free()

    def _save_runtime_cache(self) -> None:
        """Keep what this session compiled for the next load."""
        if self._config is None:
            return
        try:
            with atomic_path(self.runtime_cache) as tmp:
                tmp.write_bytes(memoryview(self._cache.serialize()))
        except OSError as e:
            raise FcnDeployError(f"cannot write the runtime cache {self.runtime_cache}: {e}") from e

    def _free(self) -> None:
        rt = cuda.runtime()
        for g in self._graphs.values():
            cuda.cuda_call(rt.cudaGraphExecDestroy(g))
        for buffer in [self._in, *self._out]:
            if buffer is not None:
                buffer.free()
        if self._events is not None:
            self._events.destroy()
        cuda.cuda_call(rt.cudaStreamDestroy(self._stream))
        self._graphs, self._contexts, self._events, self._out = {}, {}, None, []
        self._config = self._cache = self._engine = self._runtime = None

    def _check(self, ok: bool, what: str) -> None:
        if not ok:
            raise FcnDeployError(f"TensorRT {what} failed for {self.path}: "
                                 f"{self._logger.error(last=True)}")

    def profile_for(self, shape: tuple[int, ...]) -> int:
        """Index of the tightest profile holding NCHW ``shape`` (padding up to its min if
        ``pad``); profiles are N x 3 x H x W whatever the input's layout."""
        fits = [i for i, p in enumerate(self.profiles)
                if all(s <= hi for s, hi in zip(shape, p.max))
                and (self.pad or all(lo <= s for s, lo in zip(shape, p.min)))
                and p.min[0] <= shape[0]]
        if not fits:
            ranges = ", ".join(str(p) for p in self.profiles)
            small = any(s < lo for p in self.profiles for s, lo in zip(shape[2:], p.min[2:]))
            raise FcnDeployError(f"input {'x'.join(map(str, shape))} is outside every profile of "
                                 f"{self.path} ({ranges})"
                                 + ("; pad=True (--pad) pads smaller images up to a profile's "
                                    "minimum" if small and not self.pad else ""))
        best = min(fits, key=lambda i: np.prod(self.profiles[i].max))
        if self._log and shape not in self._shapes_logged:
            self._shapes_logged.add(shape)
            self._log(f"{self.path.name}: input {'x'.join(map(str, shape))} runs in profile {best} "
                      f"({self.profiles[best]}) of {len(self.profiles)}")
        return best

    def _context(self, index: int):
        if index not in self._contexts:
            start = time.perf_counter()  # TensorRT-RTX compiles its kernels here
            ctx = (self._engine.create_execution_context(self._config) if self._config is not None
                   else self._engine.create_execution_context())
            self.phases.setdefault("context_s", time.perf_counter() - start)
            self._check(ctx is not None, "execution context creation")
            self._check(ctx.set_optimization_profile_async(index, int(self._stream)),
                        "profile selection")
            self._check(ctx.set_tensor_address(self._in_name, self._in.device), "input binding")
            for name, buffer in zip(self.outputs, self._out):
                self._check(ctx.set_tensor_address(name, buffer.device), f"{name} binding")
            self._contexts[index] = ctx
        return self._contexts[index]

    def _prepare(self, batch: np.ndarray) -> tuple[np.ndarray, list, callable]:
        """Pad if asked, bind the shape, and return (input, output shapes, enqueue function)."""
        n, _, h, w = self.meta.input.nchw(batch.shape)
        index = self.profile_for((n, 3, h, w))
        lo = self.profiles[index].min
        ph, pw = max(lo[2] - h, 0), max(lo[3] - w, 0)
        pad = ((0, 0), (0, ph), (0, pw), (0, 0)) if self.meta.input.layout == "NHWC" else \
            ((0, 0), (0, 0), (0, ph), (0, pw))
        padded = np.pad(batch, pad) if ph or pw else batch
        ctx = self._context(index)
        self._check(ctx.set_input_shape(self._in_name, padded.shape), "set_input_shape")
        out_shapes = [tuple(ctx.get_tensor_shape(name)) for name in self.outputs]
        return padded, out_shapes, self._enqueue_fn(ctx, padded.shape)

    def _enqueue_fn(self, ctx, shape):
        def run():
            self._check(ctx.execute_async_v3(int(self._stream)), "execute_async_v3")
        if not self.cuda_graph or (shape not in self._graphs and len(self._graphs) >= MAX_GRAPHS):
            return run
        if shape not in self._graphs:
            run()  # TensorRT needs one enqueue after a shape change before capture
            self._graphs[shape] = cuda.capture_graph(self._stream, run)
        graph, rt = self._graphs[shape], cuda.runtime()
        return lambda: cuda.cuda_call(rt.cudaGraphLaunch(graph, self._stream))

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        if len(batch) > self.max_batch:  # e.g. eval's batches of 8 on a max-batch-4 engine
            parts = [self._run(batch[i:i + self.max_batch])
                     for i in range(0, len(batch), self.max_batch)]
            return [np.concatenate(outs) for outs in zip(*parts)]
        padded, out_shapes, enqueue = self._prepare(batch)
        self._in.to_device(padded, self._stream)
        enqueue()
        _, _, h, w = self.meta.input.nchw(batch.shape)
        return [buffer.to_host(shape, dtype, self._stream)[..., :h, :w]
                for buffer, shape, dtype in zip(self._out, out_shapes, self._out_dtypes)]

    def _timer(self, x: np.ndarray):
        padded, _, enqueue = self._prepare(x)
        self._in.to_device(padded, self._stream)
        if self._events is None:
            self._events = cuda.EventTimer(self._stream)
        return lambda: self._events.time(enqueue)
