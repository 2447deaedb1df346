"""``fcn-deploy predict`` on video files: frames decoded in order (the pipeline's source, in
the calling thread) -> infer -> post (overlay frame, label PNGs) -> encode (one writer, in
order). Outputs of ``clip.mp4``: ``clip_overlay.mp4`` (same fps and size, no legend) and
``clip/000000.png ...`` (a label map per frame, named by its source frame number).

Frames are numbered from their timestamps (``video.FrameCount``), so a frame lost from the
source leaves a gap in the names instead of shifting every later one. The overlay video holds
the decoded frames, one after another: a lost frame is missing from it, never repeated or
filled in (that would show a segmentation of a frame that was not seen), so after a loss it
runs ahead of the source. Frames the container declares but that do not decode are reported
(``N of M frames decoded``) and fail the video (exit 1) after its outputs are written: what
was written is right, but not all of it. Frame times with no frame stored (timestamps that skip
them, as a variable frame rate or a cut does) get a warning, not a failure."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from fcn_deploy.errors import DataError, FcnDeployError
from fcn_deploy.media.images import blend, write_labels
from fcn_deploy.media.video import WRITABLE_SUFFIXES, FrameCount, VideoReader, VideoWriter
from fcn_deploy.progress import progress_bar
from fcn_deploy.runtime.pipeline import PipelineStats, Stage, run_pipeline
from fcn_deploy.tasks.predict_images import DEPTH, add_frames, shares_of_counts, shares_text
from fcn_deploy.wording import counted


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
    return (f"note: {counted(count, 'frame')} of {name} changed size mid-stream; "
            f"resized to {size[0]}x{size[1]}")


def frame_notes(name: str, count: FrameCount) -> list[str]:
    """The log lines on frames of ``name`` lost, missing from its timestamps or renumbered."""
    lines = []
    if count.lost:
        about = "about " * (count.basis == "duration")
        estimate = (f"; no frame count in the file: estimated from its duration at "
                    f"{float(count.rate):g} fps") * (count.basis == "duration")
        lines.append(f"warning: {name}: {count.decoded} of {about}{count.total} frames decoded "
                     f"({count.lost} lost: corrupt or missing data{estimate})")
    if count.gaps:
        lines.append(f"warning: {name}: the file has no frame for "
                     f"{counted(count.gaps, 'frame time')} at "
                     f"{float(count.rate):g} fps (the first is {count.first_gap}): a variable "
                     "frame rate, or frames cut out of it; label maps are named by frame time")
    if count.renumbered_at is not None:
        lines.append(f"note: {name}: timestamps not at a constant {float(count.rate):g} fps from "
                     f"frame {count.renumbered_at} on (a variable frame rate, or joined "
                     "streams): label maps from there on are numbered in decode order")
    if count.basis is None:
        lines.append(f"note: {name}: {counted(count.decoded, 'frame')} decoded, not checked "
                     "against a frame "
                     "count (the file has none, nor a duration at a constant frame rate): frames "
                     "lost at its end would go unnoticed")
    return lines


def lost_failure(path: Path, count: FrameCount) -> str:
    """The ``failed:`` line of a video that lost frames (its outputs are written)."""
    about = "about " * (count.basis == "duration")
    return (f"{path}: {count.lost} of {about}{count.total} frames lost (corrupt or missing "
            f"data); the outputs of the {count.decoded} decoded were written")


class Chunks:
    """(source frame numbers, N x H x W x 3 batch) of up to ``size`` consecutive decoded
    frames. A decode error ends the batches and is kept in ``error``: the pipeline then
    finishes the frames before it (rather than cancelling them) and the caller raises it."""

    def __init__(self, frames: Iterator[tuple[int, np.ndarray]], size: int):
        self._frames, self._size = frames, size
        self.error: DataError | None = None

    def __iter__(self) -> Iterator[tuple[list[int], np.ndarray]]:
        while batch := self._next_batch():
            indices, frames = zip(*batch)
            yield list(indices), np.stack(frames)

    def _next_batch(self) -> list[tuple[int, np.ndarray]]:
        batch: list[tuple[int, np.ndarray]] = []
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
            indices, frames = item
            return indices, frames, self.run(frames)

        def post(item):
            indices, frames, labels = item
            if self.labels:  # named by source frame number: a lost frame leaves a gap
                for i, label in zip(indices, labels):
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


def predict_video(job: VideoJob, video: VideoInput) -> tuple[PipelineStats, FrameCount]:
    """Segment every frame of ``video`` and write its outputs; log what was lost and return
    the frames decoded against those declared. DataError (a decode error) or FcnDeployError
    ends it, the overlay video unwritten (label maps of the frames before stay)."""
    note = pixel_note(video.path.name, video.pix_fmt)
    if note:
        job.log(note)
    target = overlay_path(video.path, job.out)
    writer = VideoWriter(target, video.fps, video.size) if job.overlay else None
    with VideoReader(video.path) as reader, writer or contextlib.nullcontext():
        stats, counts = _run(job, video, Chunks(reader.indexed(), job.batch_size), writer)
    if reader.resized:
        job.log(resized_note(video.path.name, reader.resized, video.size))
    count = reader.count()
    for line in frame_notes(video.path.name, count):
        job.log(line)
    job.log(f"{video.path.name}: {counted(stats.frames, 'frame')}: "
            f"{shares_text(shares_of_counts(counts, job.names))}")
    return stats, count


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
            indices = result.item[0]
            if not result.ok:
                raise FcnDeployError(f"{video.path}: frames {indices[0]}-{indices[-1]} "
                                     f"(source frame numbers, from 0): {result.error}")
            add_frames(stats, result, len(indices))
            counts += result.value[0]
            bar.advance(len(indices))
    if source.error is not None:
        raise source.error
    return stats, counts


def predict_videos(job: VideoJob, videos: list[VideoInput], backend: str) -> list[str]:
    """Each video through its pipeline, a line of what was written and how fast after each;
    the failures, one line each (a failed video does not stop the next). A video that lost
    frames is a failure too, its outputs written."""
    failed = []
    for video in videos:
        try:
            stats, count = predict_video(job, video)
        except FcnDeployError as e:
            lost = f"; {overlay_path(video.path, job.out).name} not written" * job.overlay
            kept = f"; label maps of the frames before are in {labels_dir(video.path, job.out)}"
            failed.append(f"{e}{lost}{kept * job.labels}")
            continue
        wrote = [str(overlay_path(video.path, job.out))] * job.overlay + [
            f"{counted(stats.frames, 'label map')} in {labels_dir(video.path, job.out)}"
        ] * job.labels
        job.log(f"wrote {' and '.join(wrote)} ({backend}); {stats.summary()}")
        if count.lost:
            failed.append(lost_failure(video.path, count))
    return failed
