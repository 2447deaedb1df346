"""onnxruntime's TensorRT execution provider: ONNX files compiled by TensorRT inside
onnxruntime-gpu (engines built on first run), CUDA then CPU for what TensorRT does not take."""
from fcn_deploy.runtime.registry import Backend

PROVIDERS = ("tensorrt", "cuda", "cpu")


def _open(path, device, options, log):
    from fcn_deploy.runtime.ort_segmenter import OrtSegmenter  # numpy; onnxruntime on load

    return OrtSegmenter(path, PROVIDERS, **options)


def _check() -> str | None:
    import onnxruntime  # only asked when listing what runs here

    if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
        return (f"onnxruntime {onnxruntime.__version__} here has no TensorrtExecutionProvider: "
                "pip install 'fcn-deploy[gpu]' (onnxruntime-gpu) and TensorRT's libraries")
    return None


BACKEND = Backend(
    name="onnxruntime-tensorrt", kinds=("onnx",), devices=("cuda",), open=_open,
    requires=("onnxruntime",), extra="gpu", order=22, options=("threads",), check=_check,
    capabilities=frozenset({"uint8_frames"}),
    summary="onnxruntime's TensorRT execution provider (onnxruntime-gpu + TensorRT)")
