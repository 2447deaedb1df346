"""fcn-deploy: Fully Convolutional Networks from PyTorch to ONNX, TensorRT and benchmarks."""

__version__ = "0.1.0"
