"""``fcn-deploy predict`` on video files: frames decoded in order (the pipeline's source, in
the calling thread) -> infer -> post (overlay frame, label PNGs) -> encode (one writer, in
order). Outputs of ``clip.mp4``: ``clip_overlay.mp4`` (same fps and size, no legend) and
``clip/000000.png ...`` (a label map per frame, the first frame 000000)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import DataError, FcnDeployError
from .predict_files import DEPTH, add_frames, shares_of_counts, shares_text
from .progress import progress_bar
from .runtime.pipeline import PipelineStats, Stage, run_pipeline
from .video import WRITABLE_SUFFIXES, VideoReader, VideoWriter
from .visualize import blend, write_labels


@dataclass
class VideoInput:
    """A video that decodes (its first frame, at least): what its outputs need to know."""

    path: Path
    fps: float
    size: tuple[int, int]
    frames: int | None
    pix_fmt: str


@dataclass
class VideoScan:
    good: list[VideoInput] = field(default_factory=list)
    bad: list[tuple[Path, str]] = field(default_factory=list)


def overlay_path(path: Path, out: Path) -> Path:
    """``OUT/<stem>_overlay<suffix>``: the input's suffix when it can be written, else .mp4."""
    suffix = path.suffix if path.suffix.lower() in WRITABLE_SUFFIXES else ".mp4"
    return out / f"{path.stem}_overlay{suffix}"


def labels_dir(path: Path, out: Path) -> Path:
    """``OUT/<stem>``: the folder of a video's per-frame label PNGs."""
    return out / path.stem


def video_outputs(videos: list[Path], out: Path, overlay: bool, labels: bool) -> list[Path]:
    """The overlay videos and label folders ``predict`` writes for ``videos``."""
    return ([overlay_path(v, out) for v in videos] * overlay
            + [labels_dir(v, out) for v in videos] * labels)


def check_label_dirs(inputs: list[Path], videos: list[Path], out: Path, labels: bool) -> None:
    """FcnDeployError when a label folder is a file, or holds an input (frames would be
    written over it)."""
    if not labels:
        return
    sources = [p.resolve() for p in inputs]
    for video in videos:
        folder = labels_dir(video, out)
        if folder.exists() and not folder.is_dir():
            raise FcnDeployError(f"{folder} is a file; the label maps of {video.name} go to a "
                                 "folder of that name: move it or give another --out")
        inside = next((p for p in sources if p.is_relative_to(folder.resolve())), None)
        if inside is not None:
            raise FcnDeployError(f"{folder} holds the input {inside}; label maps of {video.name} "
                                 "written there could destroy it: give another --out")


def probe_video(path: Path) -> VideoInput:
    """Open ``path`` and decode its first frame; DataError naming it when that fails."""
    with VideoReader(path) as reader:
        return VideoInput(path, reader.fps, reader.size, reader.frames, reader.pix_fmt)


def scan_videos(videos: list[Path], out: Path, overlay: bool) -> VideoScan:
    """Probe every video before anything is written; check an overlay can be encoded."""
    scan = VideoScan()
    for path in videos:
        try:
            found = probe_video(path)
        except DataError as e:
            scan.bad.append((path, str(e)))
            continue
        if overlay:  # no file yet: checks the suffix, fps and size, and that PyAV encodes it
            VideoWriter(overlay_path(path, out), found.fps, found.size)
        scan.good.append(found)
    return scan


def pixel_note(name: str, pix_fmt: str) -> str | None:
    """The note for a source whose frames are not colour (gray, palette) or carry alpha."""
    gray = pix_fmt.startswith(("gray", "ya", "mono"))
    alpha = pix_fmt.startswith(("ya", "yuva", "gbrap", "rgba", "bgra", "argb", "abgr"))
    if not (gray or alpha or pix_fmt == "pal8"):
        return None
    kind = ("gray" if gray else pix_fmt) + (" with alpha" if alpha else "")
    dropped = ", alpha dropped (not composited)" if alpha else ""
    return f"note: {name} frames are {kind}; converted to RGB{dropped}"


def resized_note(name: str, count: int, size: tuple[int, int]) -> str:
    return (f"note: {count} frames of {name} changed size mid-stream; "
            f"resized to {size[0]}x{size[1]}")


class Chunks:
    """(index of the first frame, N x H x W x 3 batch) of up to ``size`` consecutive frames.
    A decode error ends the batches and is kept in ``error``: the pipeline then finishes the
    frames before it (rather than cancelling them) and the caller raises it."""

    def __init__(self, frames: Iterator[np.ndarray], size: int):
        self._frames, self._size = frames, size
        self.error: DataError | None = None

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        start = 0
        while batch := self._next_batch():
            yield start, np.stack(batch)
            start += len(batch)

    def _next_batch(self) -> list[np.ndarray]:
        batch: list[np.ndarray] = []
        try:
            batch.extend(islice(self._frames, self._size))
        except DataError as e:
            self.error = e
        return batch


@dataclass
class VideoJob:
    """What ``predict_video`` runs and writes (see ``predict_files.ImageJob``)."""

    run: Callable[[np.ndarray], np.ndarray]
    out: Path
    names: list[str]
    overlay: bool = True
    labels: bool = True
    batch_size: int = 1
    log: Callable[[str], None] = print

    def stages(self, video: VideoInput, writer: VideoWriter | None) -> list[Stage]:
        def infer(item):
            start, frames = item
            return start, frames, self.run(frames)

        def post(item):
            start, frames, labels = item
            if self.labels:
                for i, label in enumerate(labels, start):
                    write_labels(labels_dir(video.path, self.out), f"{i:06d}", label)
            counts = sum(np.bincount(x.ravel(), minlength=256) for x in labels)
            return counts, [blend(f, x) for f, x in zip(frames, labels)] if writer else []

        def encode(item):
            counts, overlays = item
            for frame in overlays:
                writer.write(frame)
            return counts, []

        stages = [Stage("infer", infer, 1), Stage("post", post, 2)]
        return stages + [Stage("encode", encode, 1)] * (writer is not None)


def predict_video(job: VideoJob, video: VideoInput) -> PipelineStats:
    """Segment every frame of ``video`` and write its outputs; DataError (a frame that does
    not decode) or FcnDeployError ends it, the overlay video unwritten (label maps of the
    frames before stay)."""
    note = pixel_note(video.path.name, video.pix_fmt)
    if note:
        job.log(note)
    target = overlay_path(video.path, job.out)
    writer = VideoWriter(target, video.fps, video.size) if job.overlay else None
    with VideoReader(video.path) as reader, writer or contextlib.nullcontext():
        stats, counts = _run(job, video, Chunks(iter(reader), job.batch_size), writer)
    if reader.resized:
        job.log(resized_note(video.path.name, reader.resized, video.size))
    job.log(f"{video.path.name}: {stats.frames} frames: "
            f"{shares_text(shares_of_counts(counts, job.names))}")
    return stats


def _run(job: VideoJob, video: VideoInput, source: Chunks, writer: VideoWriter | None,
         ) -> tuple[PipelineStats, np.ndarray]:
    """The frames of ``source`` through the pipeline: throughput and pixels per class id."""
    stats, counts = PipelineStats(), np.zeros(256, np.int64)
    results = run_pipeline(source, job.stages(video, writer), DEPTH, catch=(FcnDeployError,))
    # A known frame count gives a bar (and plain lines off a terminal); unknown, a counter.
    with contextlib.closing(results), progress_bar(
            video.path.name, video.frames or 0, plain_lines=bool(video.frames)) as bar:
        stats.start()
        for result in results:
            start, frames = result.item[0], len(result.item[1])
            if not result.ok:
                raise FcnDeployError(f"{video.path}: frames {start}-{start + frames - 1} "
                                     f"(numbered from 0): {result.error}")
            add_frames(stats, result, frames)
            counts += result.value[0]
            bar.advance(frames)
    if source.error is not None:
        raise source.error
    return stats, counts


def predict_videos(job: VideoJob, videos: list[VideoInput], backend: str) -> list[str]:
    """Each video through its pipeline, a line of what was written and how fast after each;
    the failures, one line each (a failed video does not stop the next)."""
    failed = []
    for video in videos:
        try:
            stats = predict_video(job, video)
        except FcnDeployError as e:
            lost = f"; {overlay_path(video.path, job.out).name} not written" * job.overlay
            kept = f"; label maps of the frames before are in {labels_dir(video.path, job.out)}"
            failed.append(f"{e}{lost}{kept * job.labels}")
            continue
        wrote = [str(overlay_path(video.path, job.out))] * job.overlay + [
            f"{stats.frames} label maps in {labels_dir(video.path, job.out)}"] * job.labels
        job.log(f"wrote {' and '.join(wrote)} ({backend}); {stats.summary()}")
    return failed
