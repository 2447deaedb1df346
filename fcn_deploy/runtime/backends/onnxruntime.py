"""onnxruntime on the CPU: the default runtime of ONNX files (installed with fcn-deploy)."""
from fcn_deploy.runtime.registry import Backend


def _open(path, device, options, log):
    from fcn_deploy.runtime.ort_segmenter import OrtSegmenter  # numpy; onnxruntime on load

    return OrtSegmenter(path, ("cpu",), **options)


BACKEND = Backend(
    name="onnxruntime", kinds=("onnx",), devices=("cpu",), open=_open,
    requires=("onnxruntime",), order=20, options=("threads",),
    capabilities=frozenset({"uint8_frames"}),
    summary="onnxruntime's CPU execution provider (the default for ONNX files on CPUs)")
