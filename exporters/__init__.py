"""Exporters: ONNX, precision conversion and TensorRT engine builds
(installed as fcn_deploy.exporters)."""
