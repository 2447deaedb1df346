"""CUDA from Python through cuda-python (``cuda.bindings``): one error-unwrapping helper,
device and pinned host buffers, streams, events and graphs for the TensorRT runtime."""
from __future__ import annotations

import ctypes

import numpy as np

from fcn_deploy.errors import FcnDeployError


class CudaError(FcnDeployError):
    """A CUDA runtime call failed."""


def runtime():
    """``cuda.bindings.runtime``, or one clear error when cuda-python is missing."""
    try:
        from cuda.bindings import runtime as rt  # cuda-python: the gpu extra
    except ImportError:
        raise FcnDeployError("running TensorRT engines needs a CUDA GPU and cuda-python: "
                             "pip install 'fcn-deploy[gpu]' (cuda-bindings)") from None
    return rt


def cuda_call(result):
    """Unwrap a cuda-python ``(err, *values)`` tuple; raise CudaError naming the error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        rt = runtime()
        _, text = rt.cudaGetErrorString(err)
        raise CudaError(f"CUDA {getattr(err, 'name', err)}: {text.decode()}")
    return values[0] if len(values) == 1 else (values or None)


def require_gpu(what: str) -> int:
    """The number of CUDA devices; a one-line error naming ``what`` when there is none."""
    rt = runtime()
    try:
        count = cuda_call(rt.cudaGetDeviceCount())
    except CudaError as e:
        raise FcnDeployError(f"{what} needs a CUDA GPU and none is usable here ({e})") from None
    if not count:
        raise FcnDeployError(f"{what} needs a CUDA GPU and none is visible")
    return count


class Buffer:
    """``nbytes`` on the device plus a pinned host copy, viewed through numpy."""

    def __init__(self, nbytes: int):
        rt = runtime()
        self.nbytes = nbytes
        self.device = cuda_call(rt.cudaMalloc(nbytes))
        self._host = cuda_call(rt.cudaMallocHost(nbytes))
        self.host = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(self._host))

    def to_device(self, array: np.ndarray, stream) -> None:
        """Copy ``array`` through the pinned buffer to the device (asynchronously on ``stream``)."""
        n = array.nbytes
        self.host[:n] = array.reshape(-1).view(np.uint8)
        rt = runtime()
        cuda_call(rt.cudaMemcpyAsync(self.device, self._host, n,
                                     rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def to_host(self, shape, dtype, stream) -> np.ndarray:
        """Copy the first ``shape`` elements back and wait; returns a fresh array."""
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        rt = runtime()
        cuda_call(rt.cudaMemcpyAsync(self._host, self.device, n,
                                     rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))
        cuda_call(rt.cudaStreamSynchronize(stream))
        return self.host[:n].view(dtype).reshape(shape).copy()

    def free(self) -> None:
        rt = runtime()
        cuda_call(rt.cudaFree(self.device))
        cuda_call(rt.cudaFreeHost(self._host))


class EventTimer:
    """Milliseconds between two CUDA events recorded around work on ``stream``."""

    def __init__(self, stream):
        rt = runtime()
        self.stream = stream
        self.start, self.end = cuda_call(rt.cudaEventCreate()), cuda_call(rt.cudaEventCreate())

    def destroy(self) -> None:
        rt = runtime()
        cuda_call(rt.cudaEventDestroy(self.start))
        cuda_call(rt.cudaEventDestroy(self.end))

    def time(self, work) -> float:
        rt = runtime()
        cuda_call(rt.cudaEventRecord(self.start, self.stream))
        work()
        cuda_call(rt.cudaEventRecord(self.end, self.stream))
        cuda_call(rt.cudaEventSynchronize(self.end))
        return cuda_call(rt.cudaEventElapsedTime(self.start, self.end))


def capture_graph(stream, work):
    """Capture what ``work`` enqueues on ``stream`` into an instantiated CUDA graph."""
    rt = runtime()
    cuda_call(rt.cudaStreamBeginCapture(
        stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
    try:
        work()
    finally:  # end the capture even when work() raised, or the stream stays unusable
        graph = cuda_call(rt.cudaStreamEndCapture(stream))
    try:
        return cuda_call(rt.cudaGraphInstantiate(graph, 0))
    finally:
        cuda_call(rt.cudaGraphDestroy(graph))  # the instantiated graph does not need it
