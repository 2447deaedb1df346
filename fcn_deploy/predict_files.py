"""``fcn-deploy predict`` on files: inputs checked before anything is written, outputs that
never land on an input, same-size images batched, a class-share line per image."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import DataError, FcnDeployError
from .visualize import decode_image, output_names, probe_image, write_prediction


@dataclass
class InputScan:
    """What a first pass over the inputs found: images that decode (with their sizes), the
    corrupt ones with their reasons, and those whose alpha channel is dropped."""

    good: list[tuple[Path, tuple[int, int]]] = field(default_factory=list)
    bad: list[tuple[Path, str]] = field(default_factory=list)
    alpha: list[Path] = field(default_factory=list)


def scan_inputs(files: list[Path]) -> InputScan:
    """Decode every input once, so a corrupt file is known before any output is written."""
    scan = InputScan()
    for f in files:
        try:
            hw, alpha = probe_image(f)
        except DataError as e:
            scan.bad.append((f, str(e)))
            continue
        scan.good.append((f, hw))
        if alpha:
            scan.alpha.append(f)
    return scan


def output_paths(files: list[Path], out: Path, overlay: bool) -> list[Path]:
    """Every file ``predict`` writes for ``files`` into ``out``."""
    return [out / name for f in files for name in output_names(f.stem, overlay)]


def batches(good: list[tuple[Path, tuple[int, int]]], size: int) -> list[list[Path]]:
    """Runs of consecutive same-size images, at most ``size`` each (a batch has one H x W)."""
    groups: list[list[Path]] = []
    last = None
    for f, hw in good:
        if groups and hw == last and len(groups[-1]) < size:
            groups[-1].append(f)
        else:
            groups.append([f])
        last = hw
    return groups


def class_shares(labels: np.ndarray, names: list[str]) -> list[tuple[int, str, float]]:
    """(class id, name, fraction of pixels) of the classes present, largest first."""
    counts = np.bincount(labels.ravel(), minlength=len(names))
    order = np.argsort(-counts, kind="stable")
    return [(int(k), names[k] if k < len(names) else f"class{k}", counts[k] / labels.size)
            for k in order if counts[k]]


def predict_files(run: Callable[[np.ndarray], np.ndarray], groups: list[list[Path]], out: Path,
                  names: list[str], overlay: bool, log: Callable[[str], None]) -> list[str]:
    """Segment each group as one batch and write its outputs; return the failures (one line
    each) instead of stopping at the first, so every other image is still written."""
    failed = []
    for group in groups:
        try:
            images = np.stack([decode_image(f)[0] for f in group])
            labels = run(images)
        except FcnDeployError as e:
            failed += [f"{f}: {e}" for f in group]
            continue
        for f, image, label in zip(group, images, labels):
            shares = class_shares(label, names)
            write_prediction(out, f.stem, image, label, shares if overlay else None)
            log(f"{f.name}: " + ", ".join(f"{n} {s:.1%}" for _, n, s in shares))
    return failed
