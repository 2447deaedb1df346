"""One entry point for every backend, chosen from the artifact's content: checkpoint -> torch,
ONNX -> onnxruntime (or OpenVINO), engine -> TensorRT. Each backend's library is imported only
when an artifact of its kind is opened, so ONNX files and engines run where torch is not
installed."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from fcn_deploy.contract.kinds import artifact_kind
from fcn_deploy.errors import OptionError
from fcn_deploy.runtime.base import Segmenter

DEVICES = ("cpu", "cuda")
# The runtimes of ONNX files, the default first (checkpoints run in torch, engines in TensorRT).
ONNX_BACKENDS = ("onnxruntime", "openvino")


def check_device(device: str) -> None:
    """OptionError unless ``device`` is one ``open_segmenter`` takes."""
    if device not in DEVICES:
        raise OptionError(f"unknown device {device!r}; choose {' or '.join(DEVICES)}")


def check_onnx_backend(backend: str, device: str = "cpu") -> None:
    """OptionError unless ONNX ``backend`` exists and runs on ``device``."""
    if backend not in ONNX_BACKENDS:
        raise OptionError(f"unknown backend {backend!r} for ONNX files; choose "
                          f"{', '.join(ONNX_BACKENDS)}")
    if backend == "openvino" and device != "cpu":
        raise OptionError("the openvino backend runs on the CPU; use --device cpu")


def installed_onnx_backends(device: str = "cpu") -> list[str]:
    """The ONNX runtimes installed here that run on ``device``, the default first."""
    found = importlib.util.find_spec("openvino") is not None
    return ["onnxruntime"] + (["openvino"] if found and device == "cpu" else [])


def open_segmenter(path: str | Path, *, device: str = "cpu", fp16: bool = False,
                   channels_last: bool = False, cuda_graph: bool = False, compile: bool = False,
                   providers: tuple[str, ...] | None = None, threads: int | None = None,
                   pad: bool = False, log=None, runtime_cache: Path | None = None,
                   backend: str = "onnxruntime", cache_dir: Path | None = None) -> Segmenter:
    """A (not yet loaded) Segmenter for ``path``; options that do not apply are ignored.
    ``backend`` runs ONNX files (``ONNX_BACKENDS``); onnxruntime's providers follow ``device``
    (cuda: CUDA, then CPU) unless given; ``log`` hears an engine's profile choice for each new
    input shape; ``runtime_cache`` is the TensorRT-RTX kernel cache file of an engine;
    ``cache_dir`` OpenVINO's compiled-model cache (default: ``default_cache_dir()``)."""
    check_device(device)
    check_onnx_backend(backend, device)
    kind = artifact_kind(path)
    if kind == "checkpoint":
        from fcn_deploy.runtime.torch_segmenter import TorchSegmenter  # torch: only for checkpoints

        return TorchSegmenter(Path(path), device=device, fp16=fp16, channels_last=channels_last,
                              cuda_graph=cuda_graph, compile=compile)
    if kind == "onnx" and backend == "openvino":
        from fcn_deploy.runtime.ov_segmenter import OpenVINOSegmenter, default_cache_dir  # openvino

        return OpenVINOSegmenter(Path(path), threads, cache_dir=cache_dir or default_cache_dir())
    if kind == "onnx":
        from fcn_deploy.runtime.ort_segmenter import OrtSegmenter  # onnxruntime

        if providers is None:
            providers = ("cuda", "cpu") if device.startswith("cuda") else ("cpu",)
        return OrtSegmenter(Path(path), providers, threads)
    from fcn_deploy.runtime.trt_segmenter import TensorRTSegmenter  # cuda-python, tensorrt

    return TensorRTSegmenter(Path(path), cuda_graph=cuda_graph, pad=pad, log=log,
                             runtime_cache=runtime_cache)
