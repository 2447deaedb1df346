"""TensorRT (or TensorRT-RTX) engines on an NVIDIA GPU, through cuda-python."""
import importlib.util

from fcn_deploy.runtime.registry import Backend


def _open(path, device, options, log):
    from fcn_deploy.runtime.trt_segmenter import TensorRTSegmenter  # numpy; cuda-python

    return TensorRTSegmenter(path, log=log, **options)


def _check() -> str | None:
    if not any(importlib.util.find_spec(m) for m in ("tensorrt", "tensorrt_rtx")):
        return ("the tensorrt backend needs tensorrt or tensorrt_rtx, which is not installed "
                "here: pip install 'fcn-deploy[trt]'")
    from fcn_deploy.runtime.trt_segmenter import no_gpu_reason  # cuda-python

    reason = no_gpu_reason()
    return f"the tensorrt backend needs an NVIDIA GPU: {reason}" if reason else None


BACKEND = Backend(
    name="tensorrt", kinds=("engine",), devices=("cuda",), open=_open, requires=("cuda",),
    extra="gpu", order=40, options=("cuda_graph", "pad", "runtime_cache"), check=_check,
    capabilities=frozenset({"engine_profiles", "compiled_cache", "uint8_frames"}),
    summary="TensorRT / TensorRT-RTX engines (profiles; RTX runtime cache; CUDA graphs)")
