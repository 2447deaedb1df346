"""Video files in and out as uint8 H x W x 3 RGB frames, through PyAV (the ``video`` extra).

No torch here: ``predict`` on a runtime-only install reads and writes videos with this module.
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from fcn_deploy.atomic import atomic_path
from fcn_deploy.errors import DataError, FcnDeployError

# Suffix -> FFmpeg muxer: passed explicitly, since atomic_path's temp file ends in .tmp.
_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".avi": "avi", ".mov": "mov", ".webm": "webm"}
WRITABLE_SUFFIXES = tuple(_FORMATS)
VIDEO_SUFFIXES = frozenset(_FORMATS) | {
    ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".flv", ".3gp", ".ogv", ".wmv"}

# Encoders by preference; webm takes only VP9/VP8.
_ENCODERS = {".webm": ("libvpx-vp9", "libvpx")}
_DEFAULT_ENCODERS = ("libx264", "mpeg4")
# At 720p on 2 cores 'veryfast' takes ~30 ms a frame against ~55 for the default 'medium',
# for files 10-30% larger: the encoder should keep up with a GPU model. ('ultrafast', ~13 ms,
# makes them 2.5-3x larger.) x264 picks its own thread count.
# VP9/VP8 defaults ('good' deadline) take 150-300 ms a 720p frame, hence 'realtime' (~40 ms
# for VP9). VP8's crf needs a bitrate cap, and its 256 kb/s default blurs.
_ENCODER_OPTIONS = {
    "libx264": {"preset": "veryfast"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8", "crf": "10", "b": "4M"},
}
# mpeg4 aims at 200 kb/s by default, blocky at 720p: a fixed quantizer keeps the quality
# constant at any size (4 is ffmpeg's -q:v 4, visually clean).
_MPEG4_QUANTIZER = 4
# moov atom first, so a browser plays an mp4/mov before it has all of it.
_MUXER_OPTIONS = {"mp4": {"movflags": "+faststart"}, "mov": {"movflags": "+faststart"}}
_FALLBACK_FPS = 30.0


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a video file, by its suffix."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def require_av():
    """The ``av`` module, or FcnDeployError saying how to install it."""
    try:
        import av  # the video extra, only when a video is opened
    except ImportError as e:
        raise FcnDeployError("video files need PyAV: pip install 'fcn-deploy[video]'") from e
    return av


def _reason(e: Exception) -> str:
    """FFmpeg's own words for ``e`` (its str repeats the path)."""
    return getattr(e, "strerror", None) or str(e)


@dataclass(frozen=True)
class FrameCount:
    """What a decode kept against the frames its container declares (``VideoReader.count``).

    ``basis``: where the declared total comes from: ``"count"`` (the container's frame count,
    or fewer where the duration shows an edit list hides some), ``"duration"`` (no count: the
    video's duration x ``rate``; only while the timestamps are constant-rate; when frame times
    past the last frame are missing, the gaps before count as lost) or None (unknown: only
    frames flagged corrupt are counted as lost).
    ``lost``: declared frames that did not decode, and frames the decoder flagged corrupt
    (concealed damage, so not kept). ``gaps``: frame times the timestamps skip where the file
    declares no frame (a variable frame rate, or frames cut out of it), not counted as lost;
    ``first_gap`` is the first. ``renumbered_at``: the first frame number given in decode
    order, the timestamps being no longer constant-rate there.
    """

    decoded: int
    lost: int = 0
    basis: str | None = "count"
    gaps: int = 0
    first_gap: int | None = None
    renumbered_at: int | None = None
    rate: Fraction | None = None

    @property
    def total(self) -> int:
        """The frames declared: decoded + lost."""
        return self.decoded + self.lost


class _FrameClock:
    """Source frame numbers, from timestamps: round((pts - start) * time_base * rate), while
    they lie on the constant-rate grid and increase; from the first frame that does not on
    (variable frame rate, a joined stream), in decode order after the last number given.
    Numbers only increase, so no two frames share one (and overwrite each other's outputs)."""

    def __init__(self, stream, by_time: bool):
        # FFmpeg's guess (r_frame_rate, unless implausibly high): the rate every timestamp is a
        # multiple of. average_rate is frames / duration, lower where frames are missing.
        self.rate = Fraction(stream.guessed_rate or stream.average_rate or 0) or None
        self._base = stream.time_base
        self._start = stream.start_time
        self.by_time = bool(by_time and self.rate and self._base)
        # Muxers round times to their ticks: one tick off the grid (1/100 frame at least, a
        # quarter at most) is still on it.
        tick = self._base * self.rate if self.by_time else 0
        self._tolerance = min(max(tick, Fraction(1, 100)), Fraction(1, 4))
        self.next = 0
        self.first_gap: int | None = None
        self.renumbered_at: int | None = None

    def number(self, pts: int | None) -> int:
        """The source frame number of the next decoded frame, whose timestamp is ``pts``."""
        index = self._from_time(pts) if self.by_time else None
        if self.by_time and (index is None or index < self.next):
            self.by_time, self.renumbered_at = False, self.next
        if not self.by_time:
            index = self.next
        elif index > self.next and self.first_gap is None:
            self.first_gap = self.next
        self.next = index + 1
        return index

    def _from_time(self, pts: int | None) -> int | None:
        if pts is None:
            return None
        if self._start is None:  # no start time in the container: its first frame's
            self._start = pts
        frames = (pts - self._start) * self._base * self.rate
        index = round(frames)
        return index if index >= 0 and abs(frames - index) <= self._tolerance else None


def _seconds(container, stream) -> Fraction | None:
    """The video stream's own duration: its header's, the DURATION tag Matroska muxers write,
    or the file's when the video is its only stream (an audio stream may run longer)."""
    if stream.duration and stream.time_base:
        return stream.duration * stream.time_base
    tag = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", stream.metadata.get("DURATION", ""))
    if tag:
        hours, minutes, seconds = tag.groups()
        return (int(hours) * 60 + int(minutes)) * 60 + Fraction(seconds)
    if len(container.streams) == 1 and container.duration:
        return Fraction(container.duration, 1_000_000)  # in AV_TIME_BASE units
    return None


class VideoReader:
    """Decode a video into uint8 H x W x 3 RGB frames, all of the first frame's size.

    Every pixel format (grey, YUV, RGBA with alpha dropped) becomes RGB; ``pix_fmt`` is the
    source's. Frames of another size are resized to ``size`` and counted in ``resized``.
    Frames the decoder flags corrupt are left out; ``indexed`` gives each kept frame's source
    frame number, and ``count`` the frames kept against those the container declares.
    """

    def __init__(self, path: str | os.PathLike):
        av = require_av()
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: not a readable video (no such file)")
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as e:
            raise DataError(f"{self.path}: not a readable video ({_reason(e)})") from e
        try:
            self._open_stream(av)
        except BaseException:
            self._container.close()
            raise

    def _open_stream(self, av) -> None:
        if not self._container.streams.video:
            raise DataError(f"{self.path}: not a readable video (no video stream)")
        stream = self._container.streams.video[0]
        # Frame threads besides PyAV's default slice threads: 720p h264 decodes (to RGB) in
        # ~8-11 ms a frame instead of ~12-18 on 2 cores.
        stream.thread_type = "AUTO"
        # AVI stores no presentation times: FFmpeg derives them from positions in the file,
        # out of order with B-frames. Its frames are numbered in decode order, and its frame
        # count includes any empty "drop" chunks (a capture's repeats): those count as lost.
        self._clock = _FrameClock(stream, by_time=self._container.format.name != "avi")
        self._seconds = _seconds(self._container, stream)
        self.decoded = self.corrupt = 0
        self._decoded = self._decode(av, stream)
        self._first = next(self._decoded, None)
        if self._first is None:
            raise DataError(f"{self.path}: not a readable video (no frames)")
        self.size = (self._first[1].height, self._first[1].width)
        self.pix_fmt = self._first[1].format.name
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else _FALLBACK_FPS
        self.frames = stream.frames or None
        self.resized = 0

    def _decode(self, av, stream) -> Iterator[tuple[int, Any]]:
        frames = self._container.decode(stream)
        while True:
            try:
                frame = next(frames, None)
            except av.FFmpegError as e:
                raise DataError(f"{self.path}: decode error at frame "
                                f"{self.decoded + self.corrupt + 1} ({_reason(e)})") from e
            if frame is None:
                return
            index = self._clock.number(frame.pts)
            if frame.is_corrupt:  # damage the decoder concealed: partly guessed pixels
                self.corrupt += 1
                continue
            self.decoded += 1
            yield index, frame

    def indexed(self) -> Iterator[tuple[int, np.ndarray]]:
        """(source frame number, frame) of every frame kept, in order; numbers only increase
        (see ``FrameCount`` for how they are found)."""
        if self._first is None:
            raise FcnDeployError(f"{self.path}: a VideoReader can be iterated only once")
        first, self._first = self._first, None
        for index, frame in chain([first], self._decoded):
            yield index, self._rgb(frame)

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, frame in self.indexed():
            yield frame

    def count(self) -> FrameCount:
        """The frames kept against those the container declares; once iterated to the end."""
        clock = self._clock
        found = dict(decoded=self.decoded, first_gap=clock.first_gap,
                     renumbered_at=clock.renumbered_at, rate=clock.rate)
        # Frame times in the duration (a fraction >= 3/4 of a frame counts as one).
        timed = (int(self._seconds * clock.rate + Fraction(1, 4))
                 if self._seconds and clock.rate else None)
        if self.frames:
            # An edit list (a cut made without re-encoding) hides frames that the count
            # includes; the duration spans only those shown.
            declared = min(self.frames, timed or self.frames)
            # Numbers skipped (next > frames seen) beyond the frames declared: not stored.
            gaps = max(0, clock.next - max(declared, self.decoded + self.corrupt))
            return FrameCount(lost=max(0, declared - self.decoded), basis="count", gaps=gaps,
                              **found)
        gaps = clock.next - self.decoded - self.corrupt
        if not clock.by_time or timed is None:  # no duration, or no constant rate
            return FrameCount(lost=self.corrupt, basis=None, gaps=gaps, **found)
        if timed > clock.next:
            # Frame times past the last frame: the end is missing, the file is broken, and the
            # frames missing before it are lost too (a packet cut short drops the B-frames
            # shown before the frames decoded from the packets ahead of it).
            return FrameCount(lost=timed - self.decoded, basis="duration", **found)
        return FrameCount(lost=self.corrupt, basis="duration", gaps=gaps, **found)

    def _rgb(self, frame) -> np.ndarray:
        if (frame.height, frame.width) == self.size:
            return frame.to_ndarray(format="rgb24")
        self.resized += 1
        height, width = self.size
        return frame.to_ndarray(format="rgb24", width=width, height=height)

    def close(self) -> None:
        """Close the file."""
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoWriter:
    """Encode uint8 H x W x 3 RGB frames of ``size`` (H, W) into a video, atomically.

    The file appears at ``path`` only when the with-block ends without an exception. Odd
    sides are padded to even ones (yuv420p needs them), so such a video reads back 1 px larger.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int]):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _FORMATS:
            raise FcnDeployError(f"{self.path}: cannot write a {suffix or 'suffix-less'} video; "
                                 f"use one of {', '.join(WRITABLE_SUFFIXES)}")
        height, width = size
        if fps <= 0 or height < 1 or width < 1:
            raise FcnDeployError(f"{self.path}: a video needs fps > 0 and a size of at least "
                                 f"1x1, got fps {fps} and size {height}x{width}")
        self._av = require_av()
        self._format = _FORMATS[suffix]
        self._codec = _encoder(self._av, suffix)
        self.fps = fps
        self.size = (height, width)
        self.frames_written = 0
        self._stream = None

    @contextlib.contextmanager
    def _open(self) -> Iterator[None]:
        with atomic_path(self.path) as tmp:
            self._container = self._av.open(str(tmp), "w", format=self._format,
                                            options=_MUXER_OPTIONS.get(self._format))
            try:
                self._stream = self._add_stream()
                yield
                if not self.frames_written:
                    raise FcnDeployError(f"{self.path}: no frames to write")
                self._mux(None)
            finally:
                self._stream = None
                self._container.close()

    def _add_stream(self):
        height, width = self.size
        stream = self._container.add_stream(
            self._codec, rate=Fraction(self.fps).limit_denominator(1001),
            options=_ENCODER_OPTIONS.get(self._codec, {}))
        stream.height, stream.width = height + height % 2, width + width % 2
        stream.pix_fmt = "yuv420p"
        if self._codec == "mpeg4":
            stream.codec_context.qmin = stream.codec_context.qmax = _MPEG4_QUANTIZER
        return stream

    def __enter__(self) -> VideoWriter:
        self._session = self._open()
        self._session.__enter__()
        return self

    def __exit__(self, *exc) -> bool | None:
        return self._session.__exit__(*exc)

    def write(self, frame: np.ndarray) -> None:
        """Encode one uint8 H x W x 3 RGB frame of the writer's ``size``."""
        height, width = self.size
        if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8
                and frame.shape == (height, width, 3)):
            got = (f"{frame.dtype} {'x'.join(map(str, frame.shape))}"
                   if isinstance(frame, np.ndarray) else type(frame).__name__)
            raise FcnDeployError(f"{self.path}: a video frame must be uint8 {height}x{width}x3 "
                                 f"RGB, got {got}")
        if self._stream is None:
            raise FcnDeployError(f"{self.path}: VideoWriter.write outside its with-block")
        # Repeat the last row/column to reach the even sides yuv420p needs.
        frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        video_frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame),
                                                       format="rgb24")
        video_frame.pts = self.frames_written
        self._mux(video_frame)
        self.frames_written += 1

    def _mux(self, frame) -> None:
        """Encode ``frame`` (None flushes the encoder) and write its packets."""
        try:
            self._container.mux(self._stream.encode(frame))
        except (self._av.FFmpegError, OSError) as e:
            raise FcnDeployError(f"cannot write {self.path}: {_reason(e)}") from e


def _encoder(av, suffix: str) -> str:
    """The first encoder for ``suffix`` this PyAV build has."""
    names = _ENCODERS.get(suffix, _DEFAULT_ENCODERS)
    for name in names:
        try:
            av.Codec(name, "w")
        except ValueError:  # UnknownCodecError: not in this build
            continue
        return name
    raise FcnDeployError(f"this PyAV build has no {suffix} encoder ({', '.join(names)})")


def write_test_video(path: str | os.PathLike, frames: int, size: tuple[int, int] = (48, 64),
                     fps: float = 10, seed: int = 0) -> list[np.ndarray]:
    """Write ``frames`` frames of coloured rectangles moving over a gradient (deterministic
    for a ``seed``) to ``path``; return the frames written."""
    rng = np.random.default_rng(seed)
    height, width = size
    background = np.empty((height, width, 3), np.uint8)
    background[..., 0] = np.linspace(40, 200, height, dtype=np.uint8)[:, None]
    background[..., 1] = np.linspace(200, 40, width, dtype=np.uint8)[None, :]
    background[..., 2] = 90
    box_h, box_w = max(1, height // 3), max(1, width // 3)
    boxes = [(rng.integers(0, 256, 3), rng.integers(0, (height, width)),
              rng.integers(-3, 4, 2) * max(1, min(height, width) // 24)) for _ in range(3)]
    written = []
    with VideoWriter(path, fps, size) as writer:
        for t in range(frames):
            frame = background.copy()
            for colour, (y0, x0), (vy, vx) in boxes:
                y, x = (y0 + vy * t) % (height - box_h + 1), (x0 + vx * t) % (width - box_w + 1)
                frame[y:y + box_h, x:x + box_w] = colour
            writer.write(frame)
            written.append(frame)
    return written
