"""Distributed batch segmentation with Ray Data: a Segmenter per actor, label PNGs written
atomically beside the inputs' names, and the confusion matrix reduced across workers.

Images are read inside the actors (not by ``ray.data.read_images``) so that one corrupt file
is counted as failed instead of failing the whole read. A rerun skips images whose label PNG
exists and, where ground truth exists, scores the saved labels, so the metrics always cover
every image. On a cluster, ``out`` must be a filesystem every node shares (the actors write
the PNGs and the driver checks which exist).

``out/fcn-deploy-manifest.json`` records which artifact (by hash) wrote the folder's label
maps, and which they are: a run with another artifact, or into a folder of label maps nobody
recorded, is refused before anything is written, so two models' outputs never mix.
"""
from __future__ import annotations

import json
import logging
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcn_deploy.atomic import check_outputs, write_texts
from fcn_deploy.contract.hashing import sha256_file
from fcn_deploy.data.voc import VOCSegmentation
from fcn_deploy.errors import DataError, FcnDeployError
from fcn_deploy.media.images import (
    alpha_note,
    collect_images,
    decode_image,
    read_labels,
    write_labels,
)
from fcn_deploy.metrics import ConfusionMatrix
from fcn_deploy.runtime.factory import open_segmenter
from fcn_deploy.runtime.pipeline import Stage, run_pipeline
from fcn_deploy.runtime.registry import get
from fcn_deploy.runtime.tiling import parse_tile, predictor
from fcn_deploy.wording import counted


@dataclass
class Source:
    """What to segment: image files (no ground truth) or a VOC-layout split (with masks)."""

    names: list[str]
    files: list[Path] | None = None  # plain images
    voc: object = None               # a VOCSegmentation

    def paths(self) -> list[Path]:
        """Every file this source reads: images, and masks where they exist."""
        if self.voc is None:
            return list(self.files)
        return [p for id_ in self.voc.ids for p in self.voc.paths(id_)]

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """(RGB image, ground truth or None, whether an alpha channel was dropped)."""
        if self.voc is not None:
            return (*self.voc[i], False)
        image, alpha = decode_image(self.files[i])
        return image, None, alpha


def open_source(inputs: list[Path], split: str = "val") -> Source:
    """A VOC-layout folder (one input holding ImageSets/) or image files and folders."""
    if len(inputs) == 1 and (inputs[0] / "ImageSets").is_dir():
        voc = VOCSegmentation(inputs[0], split)
        return Source(list(voc.ids), voc=voc)
    files = collect_images(inputs)
    return Source([f.stem for f in files], files=files)


@dataclass
class _Frame:
    """One image on its way through an actor's pipeline."""

    name: str
    labels: np.ndarray | None = None
    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    alpha: bool = False
    status: str = "processed"


class Worker:
    """One Ray actor: loads the Segmenter once, then segments batches of image indices, with
    reading, inference and writing overlapped (runtime/pipeline.py)."""

    def __init__(self, artifact: str, source: Source, out: str, num_classes: int,
                 threads: int | None, tile: tuple[int, int] | None = None, overlap: int = 0,
                 backend: str = "auto", max_memory: int | None = None):
        self.segmenter = open_segmenter(artifact, threads=threads, backend=backend).load()
        self.source, self.out, self.k = source, Path(out), num_classes
        self.notes: list[str] = []  # auto-tiling's notes, sent to the driver with a batch
        self.predict = predictor(self.segmenter, tile, overlap, max_memory, self.notes.append)
        self.stages = [Stage("read", self._read, 2), Stage("infer", self._infer),
                       Stage("write", self._write, 2)]

    def __call__(self, batch: dict) -> dict:
        items = [(int(i), bool(reuse)) for i, reuse in zip(batch["index"], batch["reuse"])]
        status, errors, cms, alpha = [], [], [], []
        # one bad image is counted, never the end of the run
        for result in run_pipeline(items, self.stages, depth=4):
            frame, cm = result.value, ConfusionMatrix(self.k)
            if result.ok and frame.mask is not None:
                cm.update(frame.labels[None], frame.mask[None])
            status.append(frame.status if result.ok else "failed")
            errors.append("" if result.ok else
                          f"{self.source.names[result.item[0]]}: {result.error}")
            alpha.append(result.ok and frame.alpha)
            cms.append(cm.hist.ravel())
        notes = ["\n".join(self.notes)] + [""] * (len(items) - 1)
        self.notes.clear()
        return {"index": batch["index"], "status": np.array(status, dtype=object),
                "note": np.array(notes, dtype=object),
                "error": np.array(errors, dtype=object), "cm": np.stack(cms),
                "alpha": np.array(alpha)}

    def _read(self, item: tuple[int, bool]) -> _Frame:
        """The saved label map of a rerun where it is usable, else the image (and mask)."""
        i, reuse = item
        frame = _Frame(self.source.names[i])
        saved = None
        if reuse:
            try:
                saved = read_labels(self.out / f"{frame.name}.png")
            except DataError:
                pass  # unreadable (e.g. cut off by a crash): segment it again
        if saved is not None and self.source.voc is None:
            frame.labels, frame.status = saved, "skipped"  # nothing to score
            return frame
        frame.image, frame.mask, frame.alpha = self.source.load(i)
        if saved is not None and saved.shape == frame.image.shape[:2]:
            frame.labels, frame.status = saved, "skipped"
        return frame

    def _infer(self, frame: _Frame) -> _Frame:
        if frame.labels is None:
            frame.labels = self.predict(frame.image[None])[0]
        return frame

    def _write(self, frame: _Frame) -> _Frame:
        if frame.status == "processed":
            write_labels(self.out, frame.name, frame.labels)
        frame.image = None  # the results hold labels only
        return frame


MANIFEST = "fcn-deploy-manifest.json"


def check_manifest(out: Path, artifact: Path, sha: str, names: list[str]) -> None:
    """FcnDeployError when ``out`` holds label maps of another artifact than ``artifact``
    (``sha``), or label maps for ``names`` that no manifest accounts for."""
    path = out / MANIFEST
    if path.is_file():
        try:
            record = json.loads(path.read_text())
            theirs, name = record["artifact_sha256"], record["artifact"]
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path} is not a readable fcn-deploy manifest ({e}): segment "
                            "into another --out") from None
        if theirs != sha:
            raise FcnDeployError(
                f"{out} holds label maps of {name} (sha256 {theirs[:12]}), not of {artifact} "
                f"(sha256 {sha[:12]}): segment into another --out, or empty {out} first")
        return
    found = next((n for n in names if (out / f"{n}.png").is_file()), None)
    if found is not None:
        raise FcnDeployError(f"{out} already holds label maps ({found}.png, ...) and no "
                             f"{MANIFEST} saying which model wrote them: segment into another "
                             "--out, or empty it first")


def remove_partial_files(out: Path, names: list[str]) -> int:
    """Delete the temporary files of label maps that an interrupted run (killed mid-write)
    left in ``out`` (atomic_path's ``.NAME.png.*.tmp``); how many there were."""
    stale = [p for n in names for p in out.glob(f".{n}.png.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def write_manifest(out: Path, artifact: Path, sha: str, meta, labels: list[str]) -> None:
    """``out``'s manifest (atomically): the artifact, its hash and metadata, the label maps."""
    record = {"artifact": str(artifact), "artifact_sha256": sha, "arch": meta.arch,
              "precision": meta.precision, "convention": meta.convention,
              "labels": [f"{n}.png" for n in sorted(labels)]}
    write_texts({out / MANIFEST: json.dumps(record, indent=2)})


def segment_dataset(artifact: Path, inputs: list[Path], out: Path, workers: int = 2,
                    batch_size: int = 4, address: str | None = None, threads: int | None = None,
                    split: str = "val", log=print, tile: str | None = None,
                    overlap: int = 64, quiet: bool = True, backend: str = "auto",
                    max_memory: int | None = None) -> dict:
    """Segment every input with ``workers`` Ray actors; a summary with counts and metrics.
    ``tile`` segments each image in overlapping tiles, as ``predict --tile`` does; without it,
    images past the memory budget (``max_memory`` bytes per actor, or what is available) are
    tiled automatically; ``backend`` and ``threads`` (per actor) as ``open_segmenter`` takes
    them."""
    try:
        import ray  # the ray extra
    except ImportError:
        raise FcnDeployError("segment-dataset needs Ray: pip install 'fcn-deploy[ray]'") from None
    # reads metadata only; refuses a bad artifact, backend or option early
    segmenter = open_segmenter(artifact, backend=backend, threads=threads)
    backend = segmenter.backend  # auto resolved: every actor opens the same
    if threads is None and "threads" in get(backend).options:
        threads = 1  # one per actor: actors share the machine's cores
    meta, gpus = segmenter.meta, 1 if segmenter.device == "cuda" else 0
    tile_hw = parse_tile(tile, segmenter, overlap) if tile else None
    source = open_source(inputs, split)
    if source.voc is not None and source.voc.num_classes != meta.num_classes:
        raise FcnDeployError(f"{artifact} predicts {meta.num_classes} classes but {inputs[0]} "
                             f"has {source.voc.num_classes}")
    check_outputs([artifact, *source.paths()], [out / f"{n}.png" for n in source.names])
    sha = sha256_file(artifact)
    check_manifest(out, artifact, sha, source.names)
    out.mkdir(parents=True, exist_ok=True)
    partial = remove_partial_files(out, source.names)
    if partial:
        log(f"removed {counted(partial, 'partial file')} of an interrupted run")
    reuse = [(out / f"{n}.png").is_file() for n in source.names]
    # claimed before any label map is written: an interrupted run's folder stays this model's
    write_manifest(out, artifact, sha, meta, [n for n, r in zip(source.names, reuse) if r])
    start = time.perf_counter()
    ours = not ray.is_initialized()  # a session the caller started stays theirs
    if ours:
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR" if quiet else "WARNING")
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR if quiet else logging.WARNING)
    started = time.perf_counter()
    try:
        ds = ray.data.from_items([{"index": i, "reuse": r} for i, r in enumerate(reuse)],
                                 override_num_blocks=max(1, min(len(reuse), 4 * workers)))
        with warnings.catch_warnings():
            # Ray >= 2.60 marks extra remote args deprecated but has no other way to say
            # max_restarts=0; without it Ray logs an error line on every run (restartable
            # actors whose arguments live in the object store).
            warnings.filterwarnings("ignore", "`ray_remote_args`", DeprecationWarning)
            results = ds.map_batches(
                Worker, fn_constructor_args=(str(artifact), source, str(out), meta.num_classes,
                                             threads, tile_hw, overlap, backend, max_memory),
                batch_size=batch_size, num_cpus=1, num_gpus=gpus, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                # on a cluster (--address) restarts survive a lost node: keep Ray's default
                **({} if address else {"max_restarts": 0}))
        cm, counts, failed, alpha = ConfusionMatrix(meta.num_classes), Counter(), [], []
        labelled, said = [], set()
        try:
            for row in results.iter_rows():
                for note in filter(None, row["note"].split("\n")):
                    if note not in said:  # each actor tiles on its own: say it once
                        said.add(note)
                        log(note)
                counts[row["status"]] += 1
                if row["status"] != "failed":
                    labelled.append(source.names[int(row["index"])])
                if row["alpha"]:
                    alpha.append(source.names[int(row["index"])])
                if row["status"] == "failed":
                    failed.append(row["error"])
                    log(f"failed: {row['error']}")
                cm.hist += np.asarray(row["cm"]).reshape(cm.hist.shape)
        except ray.exceptions.RayError as e:  # e.g. no actor could load the artifact
            cause = str(getattr(e, "cause", None) or e).strip().splitlines()[-1]
            raise FcnDeployError(f"segment-dataset stopped in a Ray worker: {cause}") from None
    finally:
        if ours:
            ray.shutdown()
    write_manifest(out, artifact, sha, meta, labelled)
    seconds = time.perf_counter() - started
    summary = {"images": len(reuse), "processed": counts["processed"], "skipped": counts["skipped"],
               "failed": counts["failed"], "failures": failed, "workers": workers,
               "ray_start_s": started - start, "seconds": seconds,
               "images_per_s": (counts["processed"] + counts["failed"]) / seconds}
    if alpha:
        summary["alpha_dropped"] = sorted(alpha)
        log(alpha_note(summary["alpha_dropped"]))
    if source.voc is not None:
        summary["metrics"] = cm.compute()
    return summary
