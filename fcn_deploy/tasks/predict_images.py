"""``fcn-deploy predict`` on image files: inputs checked before anything is written, outputs
that never land on an input, same-size images batched, and a pipeline (decode -> infer ->
write) that overlaps PNG decoding and encoding with inference; a class-share line per image."""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from fcn_deploy.data.pixels import Conversion
from fcn_deploy.errors import DataError, FcnDeployError
from fcn_deploy.media.images import (
    ImageInfo,
    decode_image,
    output_names,
    probe_image,
    write_prediction,
)
from fcn_deploy.progress import progress_bar
from fcn_deploy.runtime.memory import OutOfMemoryError
from fcn_deploy.runtime.pipeline import FrameResult, PipelineStats, Stage, run_pipeline

# Items (batches) in flight: one per worker of the stages below, and one more waiting.
DEPTH = 6
# Threads of the up-front scan: PIL decodes without the GIL.
SCAN_WORKERS = min(4, os.cpu_count() or 1)


@dataclass
class InputScan:
    """What a first pass over the inputs found: images that decode (with their sizes), the
    corrupt or refused ones (a float image outside [0, 1], ...) with their reasons, those whose
    alpha channel is dropped, and those converted to 8-bit RGB in a way worth a note (16-bit,
    float, CMYK, ...), by conversion in input order."""

    good: list[tuple[Path, tuple[int, int]]] = field(default_factory=list)
    bad: list[tuple[Path, str]] = field(default_factory=list)
    alpha: list[Path] = field(default_factory=list)
    converted: dict[Conversion, list[Path]] = field(default_factory=dict)


def _probe(path: Path) -> ImageInfo | str:
    try:
        return probe_image(path)
    except DataError as e:
        return str(e)


def scan_inputs(files: list[Path]) -> InputScan:
    """Decode every input once (on a few threads), so a corrupt or refused file is known
    before any output is written."""
    scan = InputScan()
    with ThreadPoolExecutor(SCAN_WORKERS, thread_name_prefix="scan") as pool:
        for f, probed in zip(files, pool.map(_probe, files)):
            if isinstance(probed, str):
                scan.bad.append((f, probed))
                continue
            scan.good.append((f, probed.size))
            if probed.alpha:
                scan.alpha.append(f)
            if probed.conversion:
                scan.converted.setdefault(probed.conversion, []).append(f)
    return scan


def output_paths(files: list[Path], out: Path, overlay: bool, labels: bool = True) -> list[Path]:
    """Every file ``predict`` writes for the images ``files`` into ``out``."""
    return [out / name for f in files for name in output_names(f.stem, overlay, labels)]


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
    return shares_of_counts(np.bincount(labels.ravel(), minlength=len(names)), names)


def shares_of_counts(counts: np.ndarray, names: list[str]) -> list[tuple[int, str, float]]:
    """``class_shares`` from pixel counts per class id."""
    order = np.argsort(-counts, kind="stable")
    total = counts.sum()
    return [(int(k), names[k] if k < len(names) else f"class{k}", counts[k] / total)
            for k in order if counts[k]]


def shares_text(shares: list[tuple[int, str, float]]) -> str:
    return ", ".join(f"{n} {s:.1%}" for _, n, s in shares)


def add_frames(stats: PipelineStats, result: FrameResult, frames: int) -> None:
    """Count a result of a batch of ``frames`` as that many frames, each with its share of
    the batch's stage times, so the summary says frames/s and ms per frame."""
    share = {name: s / frames for name, s in result.seconds.items()}
    for _ in range(frames):
        stats.add(FrameResult(result.index, None, error=result.error, seconds=share))


def produced(labels: bool, overlay: bool) -> str:
    """'label maps and overlays', 'label maps' or 'overlays'."""
    return " and ".join(["label maps"] * labels + ["overlays"] * overlay)


@dataclass
class ImageJob:
    """What ``predict_images`` runs and writes: the predict function (uint8 N x H x W x 3 ->
    N x H x W labels), the output folder, class names, the outputs asked for, a log line sink."""

    run: Callable[[np.ndarray], np.ndarray]
    out: Path
    names: list[str]
    overlay: bool = True
    labels: bool = True
    log: Callable[[str], None] = print

    def decode(self, group: list[Path]) -> tuple[list[Path], np.ndarray]:
        return group, np.stack([decode_image(f)[0] for f in group])

    def infer(self, batch: tuple[list[Path], np.ndarray]):
        group, images = batch
        return group, images, self.run(images)

    def write(self, batch) -> list[str]:
        """Write the outputs of one batch; its log lines."""
        lines = []
        for f, image, label in zip(*batch):
            shares = class_shares(label, self.names)
            write_prediction(self.out, f.stem, image, label, shares if self.overlay else None,
                             label_map=self.labels)
            lines.append(f"{f.name}: {shares_text(shares)}")
        return lines

    def stages(self) -> list[Stage]:
        # One infer worker: one session, which takes all the CPU threads it was given.
        return [Stage("decode", self.decode, 2), Stage("infer", self.infer, 1),
                Stage("write", self.write, 2)]


def predict_images(job: ImageJob, groups: list[list[Path]],
                   depth: int = DEPTH) -> tuple[list[str], PipelineStats]:
    """Segment each group as one batch and write its outputs, logging in input order, with up
    to ``depth`` batches in flight (1: one after another); return the failures (one line
    each) instead of stopping at the first, so every other image is still written, and the
    throughput."""
    stats, failed = PipelineStats(), []
    # out of memory ends the run (one error line): the next image would not fit either
    results = run_pipeline(groups, job.stages(), depth, catch=(FcnDeployError,),
                           fatal=(OutOfMemoryError,))
    total = sum(map(len, groups))
    with contextlib.closing(results), progress_bar("predict", total) as bar:
        stats.start()
        for result in results:
            add_frames(stats, result, len(result.item))
            if result.ok:
                for line in result.value:
                    job.log(line)
            else:
                failed += [f"{f}: {result.error}" for f in result.item]
            bar.advance(len(result.item))
    return failed, stats


def predict_image_files(job: ImageJob, scan: InputScan, batch_size: int,
                        backend: str) -> list[str]:
    """The good images of ``scan`` through the pipeline in batches of ``batch_size``, then a
    line of what was written and how fast; the failures, one line each."""
    if not scan.good and not scan.bad:
        return []
    failed, stats = predict_images(job, batches(scan.good, batch_size))
    done = len(scan.good) - len(failed)
    job.log(f"wrote {done} {produced(job.labels, job.overlay)} to {job.out} ({backend}); "
            f"{stats.summary()}")
    return failed
