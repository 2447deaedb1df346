"""OpenVINO on the CPU: ONNX files compiled for this CPU, with a compiled-model cache."""
from fcn_deploy.runtime.registry import Backend


def _open(path, device, options, log):
    from fcn_deploy.runtime.ov_segmenter import (  # numpy; openvino on load
        OpenVINOSegmenter,
        default_cache_dir,
    )

    cache_dir = options.pop("cache_dir", None) or default_cache_dir()
    return OpenVINOSegmenter(path, cache_dir=cache_dir, **options)


BACKEND = Backend(
    name="openvino", kinds=("onnx",), devices=("cpu",), open=_open, requires=("openvino",),
    extra="openvino", order=30, options=("threads", "cache_dir"),
    capabilities=frozenset({"compiled_cache", "uint8_frames"}),
    summary="OpenVINO on the CPU (compiled-model cache; fast INT8 on x86)")
