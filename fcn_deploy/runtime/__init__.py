"""Running ONNX files and TensorRT engines behind one ``Segmenter`` interface, with numpy and
the backend's own library only (no torch). ``fcn_deploy.segmenters.open_segmenter`` picks the
backend from an artifact's content, checkpoints (torch) included."""
from __future__ import annotations

from .base import Segmenter

__all__ = ["Segmenter"]
