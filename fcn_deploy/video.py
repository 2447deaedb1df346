"""Video files in and out as uint8 H x W x 3 RGB frames, through PyAV (the ``video`` extra).

No torch here: ``predict`` on a runtime-only install reads and writes videos with this module.
"""
from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from itertools import chain
from pathlib import Path
from typing import Iterator

import numpy as np

from .atomic import atomic_path
from .errors import DataError, FcnDeployError

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


class VideoReader:
    """Decode a video into uint8 H x W x 3 RGB frames, all of the first frame's size.

    Every pixel format (grey, YUV, RGBA with alpha dropped) becomes RGB; ``pix_fmt`` is the
    source's. Frames of another size are resized to ``size`` and counted in ``resized``.
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
        self._decoded = self._decode(av, stream)
        self._first = next(self._decoded, None)
        if self._first is None:
            raise DataError(f"{self.path}: not a readable video (no frames)")
        self.size = (self._first.height, self._first.width)
        self.pix_fmt = self._first.format.name
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else _FALLBACK_FPS
        self.frames = stream.frames or None
        self.resized = 0

    def _decode(self, av, stream) -> Iterator:
        frames = self._container.decode(stream)
        count = 0
        while True:
            try:
                frame = next(frames, None)
            except av.FFmpegError as e:
                raise DataError(f"{self.path}: decode error at frame {count + 1} "
                                f"({_reason(e)})") from e
            if frame is None:
                return
            count += 1
            yield frame

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._first is None:
            raise FcnDeployError(f"{self.path}: a VideoReader can be iterated only once")
        first, self._first = self._first, None
        for frame in chain([first], self._decoded):
            yield self._rgb(frame)

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
