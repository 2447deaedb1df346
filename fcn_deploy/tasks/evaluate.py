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
from fcn_deploy.runtime.ort_segmenter import OrtSegmenter

Predictor = Callable[[np.ndarray], np.ndarray]


def evaluate(predict: Predictor, dataset, num_classes: int, batch_size: int = 8,
             description: str = "eval", labels_out: list | None = None,
             bands: tuple[int, ...] = ()) -> dict:
    """The four metrics of ``predict`` over ``dataset``, plus its mean ms per image, and with
    ``bands`` the ``boundary`` rows (``BoundaryMetrics``) for those trimap widths.

    Predicted label maps are appended to ``labels_out`` when given (to compare artifacts).
    """
    cm, seconds, count = ConfusionMatrix(num_classes), 0.0, 0
    boundary = BoundaryMetrics(num_classes, bands) if bands else None
    with progress_bar(description, total=len(dataset)) as bar:
        for images, masks in batches(dataset, batch_size):
            start = time.perf_counter()
            labels = predict(images)
            seconds, count = seconds + time.perf_counter() - start, count + len(images)
            cm.update(labels, masks)
            for pred, mask in zip(labels, masks) if boundary else ():
                boundary.update(pred, mask)
            if labels_out is not None:
                labels_out.append(labels)
            bar.advance(len(images))
    result = {**cm.compute(), "ms_per_image": 1000 * seconds / max(count, 1)}
    return {**result, "boundary": boundary.compute()} if boundary else result


def evaluate_onnx(path, dataset, batch_size: int = 8) -> tuple[dict, list]:
    """``evaluate`` of an ONNX file in onnxruntime (CPU), with its label batches."""
    labels: list = []
    result = evaluate(OrtSegmenter(path).predict, dataset, dataset.num_classes, batch_size,
                      f"eval {Path(path).name}", labels)
    return result, labels


def label_agreement(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Fraction of pixels on which two lists of label batches (from ``evaluate``) agree."""
    flat = [np.concatenate([batch.ravel() for batch in labels]) for labels in (a, b)]
    return float((flat[0] == flat[1]).mean())


def check_classes(meta, dataset, path: Path) -> None:
    """FcnDeployError when the artifact at ``path`` predicts another class count than
    ``dataset`` has."""
    if meta.num_classes != dataset.num_classes:
        raise FcnDeployError(f"{path} predicts {meta.num_classes} classes but the data set has "
                             f"{dataset.num_classes}")


def evaluate_artifacts(segmenters: list, dataset, batch_size: int = 8) -> tuple[dict, list]:
    """``fcn-deploy eval``: the metrics of each (path, name, Segmenter), with size and label
    agreement with the first that ran: ({path: result}, [{artifact, backend, reason}] of those
    that could not run here). A data error stops them all; an artifact's own does not."""
    for path, _, seg in segmenters:  # before any evaluation
        check_classes(seg.meta, dataset, path)
    results, not_run, reference = {}, [], None
    for path, name, seg in segmenters:
        labels: list = []
        try:
            with seg:
                r = evaluate(seg.predict, dataset, seg.meta.num_classes, batch_size,
                             f"eval {name}", labels)
        except DataError:
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
