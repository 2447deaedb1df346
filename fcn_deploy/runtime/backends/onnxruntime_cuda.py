"""onnxruntime's CUDA execution provider: ONNX files on an NVIDIA GPU (onnxruntime-gpu); the
nodes CUDA does not run fall back to the CPU provider."""
from fcn_deploy.runtime.registry import Backend

PROVIDERS = ("cuda", "cpu")


def _open(path, device, options, log):
    from fcn_deploy.runtime.ort_segmenter import OrtSegmenter  # numpy; onnxruntime on load

    return OrtSegmenter(path, PROVIDERS, **options)


def _check() -> str | None:
    import onnxruntime  # only asked when listing what runs here

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return (f"onnxruntime {onnxruntime.__version__} here has no CUDAExecutionProvider: "
                "pip install 'fcn-deploy[gpu]' (onnxruntime-gpu)")
    return None


BACKEND = Backend(
    name="onnxruntime-cuda", kinds=("onnx",), devices=("cuda",), open=_open,
    requires=("onnxruntime",), extra="gpu", order=21, options=("threads",), check=_check,
    capabilities=frozenset({"uint8_frames"}),
    summary="onnxruntime's CUDA execution provider (onnxruntime-gpu)")
