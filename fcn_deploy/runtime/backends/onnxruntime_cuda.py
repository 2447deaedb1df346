"""onnxruntime's CUDA execution provider: ONNX files on an NVIDIA GPU (onnxruntime-gpu); the
nodes CUDA does not run fall back to the CPU provider."""
from .onnxruntime import execution_provider

BACKEND = execution_provider(
    "onnxruntime-cuda", ("cuda", "cpu"), "CUDAExecutionProvider", order=21,
    summary="onnxruntime's CUDA execution provider (onnxruntime-gpu)",
    needs="pip install 'fcn-deploy[gpu]' (onnxruntime-gpu)")
