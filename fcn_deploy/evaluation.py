"""Evaluate a predictor (uint8 images -> label maps) on a data set with the paper's metrics."""
from __future__ import annotations

import time
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
             description: str = "eval", labels_out: list | None = None) -> dict:
    """The four metrics of ``predict`` over ``dataset``, plus its mean ms per image.

    Predicted label maps are appended to ``labels_out`` when given (to compare artifacts).
    """
    cm, seconds, count = ConfusionMatrix(num_classes), 0.0, 0
    with progress_bar(description, total=len(dataset)) as bar:
        for images, masks in batches(dataset, batch_size):
            start = time.perf_counter()
            labels = predict(images)
            seconds, count = seconds + time.perf_counter() - start, count + len(images)
            cm.update(labels, masks)
            if labels_out is not None:
                labels_out.append(labels)
            bar.advance(len(images))
    return {**cm.compute(), "ms_per_image": 1000 * seconds / max(count, 1)}


def label_agreement(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Fraction of pixels on which two lists of label batches (from ``evaluate``) agree."""
    flat = [np.concatenate([l.ravel() for l in labels]) for labels in (a, b)]
    return float((flat[0] == flat[1]).mean())


def load_predictor(path) -> tuple[Predictor, dict]:
    """A predictor and the metadata of a checkpoint or ONNX file, told apart by content."""
    from .artifacts import artifact_kind
    from .errors import ArtifactError

    kind = artifact_kind(path)
    if kind == "checkpoint":
        from .checkpoint import load_model

        model, meta = load_model(path)
        return torch_predictor(model, meta["mean"], meta["std"]), {**meta, "precision": "fp32"}
    if kind == "onnx":
        from .exporters.onnx_export import read_metadata

        return onnx_predictor(path), read_metadata(path)
    raise ArtifactError(f"{path}: running TensorRT engines needs the GPU runtime, which this "
                        "release does not include yet; evaluate its ONNX file instead")


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
