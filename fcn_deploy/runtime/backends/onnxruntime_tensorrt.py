"""onnxruntime's TensorRT execution provider: ONNX files compiled by TensorRT inside
onnxruntime-gpu (engines built on first run), CUDA then CPU for what TensorRT does not take."""
from .onnxruntime import execution_provider

BACKEND = execution_provider(
    "onnxruntime-tensorrt", ("tensorrt", "cuda", "cpu"), "TensorrtExecutionProvider", order=22,
    summary="onnxruntime's TensorRT execution provider (onnxruntime-gpu + TensorRT)",
    needs="pip install 'fcn-deploy[gpu]' (onnxruntime-gpu) and TensorRT's libraries")
