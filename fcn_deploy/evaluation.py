"""Evaluate a predictor (uint8 images -> label maps) on a data set with the paper's metrics."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, batches, normalize
from .metrics import ConfusionMatrix
from .progress import progress_bar

Predictor = Callable[[np.ndarray], np.ndarray]


def torch_predictor(model: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Predictor:
    """Label maps from a torch FCN in eval mode, with the given normalization."""
    def predict(images: np.ndarray) -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            return model(normalize(images, mean, std)).argmax(1).to(torch.uint8).numpy()
    return predict


def evaluate(predict: Predictor, dataset, num_classes: int, batch_size: int = 8,
             description: str = "eval") -> dict:
    """Accumulate a confusion matrix over ``dataset`` and return the four metrics."""
    cm = ConfusionMatrix(num_classes)
    with progress_bar(description, total=len(dataset)) as bar:
        for images, masks in batches(dataset, batch_size):
            cm.update(predict(images), masks)
            bar.advance(len(images))
    return cm.compute()


def onnx_predictor(path, threads: int | None = None) -> Predictor:
    """Label maps from an fcn-deploy ONNX file in onnxruntime (CPU), with its own preprocessing."""
    import onnxruntime as ort

    from .exporters.onnx_export import read_metadata

    meta = read_metadata(path)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def predict(images: np.ndarray) -> np.ndarray:
        out = session.run(None, {"input": normalize(images, meta["mean"], meta["std"]).numpy()})[0]
        return out.astype(np.uint8) if meta["output"] == "labels" else out.argmax(1).astype(np.uint8)
    return predict
