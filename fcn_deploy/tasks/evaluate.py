"""Evaluate a predictor (uint8 images -> label maps, e.g. ``Segmenter.predict``) on a data set
with the paper's metrics."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from fcn_deploy.data.transforms import batches
from fcn_deploy.errors import DataError, FcnDeployError
from fcn_deploy.metrics import BoundaryMetrics, ConfusionMatrix
from fcn_deploy.progress import progress_bar
from fcn_deploy.runtime.memory import OutOfMemoryError
from fcn_deploy.runtime.ort_segmenter import OrtSegmenter
from fcn_deploy.runtime.tiling import predictor

Predictor = Callable[[np.ndarray], np.ndarray]
# ConfusionMatrix.compute's fields: None on a data set without labels (has_labels False).
METRICS = ("pixel_acc", "mean_acc", "mean_iu", "fwavacc", "iu")
# Overlap of the tiles of images past the memory budget (predict's --overlap default).
EVAL_OVERLAP = 64


def has_labels(dataset) -> bool:
    """Whether ``dataset``'s items carry label maps (a plain image folder's do not)."""
    return getattr(dataset, "has_labels", True)  # users' own data sets may predate the flag


def adopt_classes(dataset, num_classes: int, class_names=None) -> None:
    """A data set with no class count of its own (images/ + masks/ without class names, a plain
    image folder: ``num_classes`` None) takes the model's, by its ``set_classes``."""
    if getattr(dataset, "num_classes", 0) is None:
        dataset.set_classes(num_classes, class_names)


def evaluate(predict: Predictor, dataset, num_classes: int, batch_size: int = 8,
             description: str = "eval", labels_out: list | None = None,
             bands: tuple[int, ...] = ()) -> dict:
    """The four metrics of ``predict`` over ``dataset`` (``METRICS``, None without labels),
    its mean ms per image and, with ``bands``, the ``boundary`` rows (``BoundaryMetrics``).

    Predicted label maps are appended to ``labels_out`` when given (to compare artifacts).
    """
    adopt_classes(dataset, num_classes)  # images/ + masks/ then check labels against it
    labelled, seconds, count = has_labels(dataset), 0.0, 0
    cm = ConfusionMatrix(num_classes) if labelled else None
    boundary = BoundaryMetrics(num_classes, bands) if bands and labelled else None
    with progress_bar(description, total=len(dataset)) as bar:
        for images, masks in batches(dataset, batch_size):
            start = time.perf_counter()
            labels = predict(images)
            seconds, count = seconds + time.perf_counter() - start, count + len(images)
            if cm is not None:
                cm.update(labels, masks)
            for pred, mask in zip(labels, masks) if boundary else ():
                boundary.update(pred, mask)
            if labels_out is not None:
                labels_out.append(labels)
            bar.advance(len(images))
    scores = cm.compute() if cm is not None else dict.fromkeys(METRICS)
    result = {**scores, "ms_per_image": 1000 * seconds / max(count, 1)}
    if bands:
        result["boundary"] = boundary.compute() if boundary else None
    return result


def evaluate_onnx(path, dataset, batch_size: int = 8) -> tuple[dict, list]:
    """``evaluate`` of an ONNX file in onnxruntime (CPU), with its label batches; metrics are
    None on a data set without labels, whose label batches still compare artifacts."""
    labels: list = []
    segmenter = OrtSegmenter(path)
    check_classes(segmenter.meta, dataset, Path(path))
    result = evaluate(segmenter.predict, dataset, segmenter.meta.num_classes, batch_size,
                      f"eval {Path(path).name}", labels)
    return result, labels


def label_agreement(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Fraction of pixels on which two lists of label batches (from ``evaluate``) agree."""
    flat = [np.concatenate([batch.ravel() for batch in labels]) for labels in (a, b)]
    return float((flat[0] == flat[1]).mean())


def check_classes(meta, dataset, path: Path) -> None:
    """FcnDeployError when the artifact at ``path`` predicts another class count than
    ``dataset`` has; a data set without a count of its own takes the artifact's."""
    adopt_classes(dataset, meta.num_classes, meta.class_names)
    if meta.num_classes != dataset.num_classes:
        raise FcnDeployError(f"{path} predicts {meta.num_classes} classes but the data set has "
                             f"{dataset.num_classes}")


def evaluate_artifacts(segmenters: list, dataset, batch_size: int = 8,
                       max_memory: int | None = None, log=None) -> tuple[dict, list]:
    """``fcn-deploy eval``: the metrics of each (path, name, Segmenter), with size and label
    agreement with the first that ran: ({path: result}, [{artifact, backend, reason}] of those
    that could not run here). A data error or running out of memory stops them all; an
    artifact's own error does not. Images past the memory budget (``max_memory`` bytes, or
    what is available) are segmented in tiles, said through ``log``."""
    for path, _, seg in segmenters:  # before any evaluation
        check_classes(seg.meta, dataset, path)
    results, not_run, reference = {}, [], None
    for path, name, seg in segmenters:
        labels: list = []
        try:
            with seg:
                r = evaluate(predictor(seg, None, EVAL_OVERLAP, max_memory, log), dataset,
                             seg.meta.num_classes, batch_size, f"eval {name}", labels)
        except (DataError, OutOfMemoryError):
            raise
        except FcnDeployError as e:  # the others' results still count, as in bench
            not_run.append({"artifact": str(path), "backend": seg.backend, "reason": str(e)})
            continue
        reference = labels if reference is None else reference  # the first that ran
        results[str(path)] = {"name": name, "arch": seg.meta.arch, "backend": seg.backend,
                              "precision": seg.precision,
                              "size_mb": Path(path).stat().st_size / 1e6, **r,
                              "agreement_vs_first": label_agreement(labels, reference)}
    return results, not_run
