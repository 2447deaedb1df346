"""Video in and out through real PyAV: round trips, odd sizes, grey sources, size changes,
corrupt files and atomic writes."""
from __future__ import annotations

import re
import sys
import wave

import numpy as np
import pytest

from fcn_deploy.errors import DataError, FcnDeployError
from fcn_deploy.video import VideoReader, VideoWriter, is_video, write_test_video

av = pytest.importorskip("av")


def encode_raw(path, fmt, codec, frames, pix_fmt):
    """Write ``frames`` with PyAV alone, for sources VideoWriter does not make."""
    height, width = frames[0].shape[:2]
    container = av.open(str(path), "w", format=fmt)
    stream = container.add_stream(codec, rate=10)
    stream.height, stream.width, stream.pix_fmt = height, width, pix_fmt
    channels = frames[0].shape[2] if frames[0].ndim == 3 else 1
    source_format = {1: "gray", 3: "rgb24", 4: "rgba"}[channels]
    for frame in frames:
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format=source_format)))
    container.mux(stream.encode(None))
    container.close()


def mean_abs_diff(a, b):
    return np.abs(a.astype(int) - b.astype(int)).mean()


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi", ".mov", ".webm"])
def test_round_trip(tmp_path, suffix):
    path = tmp_path / f"clip{suffix}"
    written = write_test_video(path, 12, size=(48, 64), fps=10)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
    with VideoReader(path) as reader:
        frames = list(reader)
        assert reader.size == (48, 64)
        assert reader.fps == pytest.approx(10)
        assert reader.pix_fmt == "yuv420p"
        assert reader.frames in (12, None)
        assert reader.resized == 0
    assert len(frames) == 12
    for got, sent in zip(frames, written):
        assert got.dtype == np.uint8 and got.shape == (48, 64, 3)
        assert mean_abs_diff(got, sent) < 12


def test_reader_iterates_once(tmp_path):
    write_test_video(tmp_path / "clip.mp4", 2)
    with VideoReader(tmp_path / "clip.mp4") as reader:
        list(reader)
        with pytest.raises(FcnDeployError, match="only once"):
            list(reader)


def test_odd_size_is_padded_to_even(tmp_path):
    written = write_test_video(tmp_path / "odd.mp4", 3, size=(47, 63))
    with VideoReader(tmp_path / "odd.mp4") as reader:
        frames = list(reader)
        assert reader.size == (48, 64)
    assert mean_abs_diff(frames[0][:47, :63], written[0]) < 12
    # the padding repeats the last row and column
    assert mean_abs_diff(frames[0][47], frames[0][46]) < 12
    assert mean_abs_diff(frames[0][:, 63], frames[0][:, 62]) < 12


def test_grey_source_reads_as_rgb(tmp_path):
    ramp = (np.arange(48 * 64) % 256).astype(np.uint8).reshape(48, 64)
    encode_raw(tmp_path / "grey.mkv", "matroska", "ffv1", [ramp, 255 - ramp], "gray")
    with VideoReader(tmp_path / "grey.mkv") as reader:
        frames = list(reader)
        assert reader.pix_fmt == "gray"
    assert len(frames) == 2
    for frame, sent in zip(frames, [ramp, 255 - ramp]):
        assert frame.shape == (48, 64, 3)
        assert (frame[..., 0] == frame[..., 1]).all() and (frame[..., 1] == frame[..., 2]).all()
        assert mean_abs_diff(frame[..., 0], sent) < 2


def test_rgba_source_drops_alpha(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    encode_raw(tmp_path / "rgba.avi", "avi", "png", [rgba], "rgba")
    with VideoReader(tmp_path / "rgba.avi") as reader:
        (frame,) = list(reader)
        assert reader.pix_fmt == "rgba"
    assert (frame == rgba[..., :3]).all()


def test_size_change_mid_stream_is_resized(tmp_path):
    # MPEG-TS segments concatenate byte-wise; the decoder follows the new sequence header.
    parts = []
    for name, (height, width) in [("a.ts", (48, 64)), ("b.ts", (32, 80))]:
        frames = [np.full((height, width, 3), 40 * i, np.uint8) for i in range(5)]
        encode_raw(tmp_path / name, "mpegts", "mpeg2video", frames, "yuv420p")
        parts.append((tmp_path / name).read_bytes())
    (tmp_path / "joined.ts").write_bytes(b"".join(parts))
    with VideoReader(tmp_path / "joined.ts") as reader:
        frames = list(reader)
        assert reader.size == (48, 64)
        assert reader.resized == 5
    # the first segment's last frame is lost at the join: the decoder resets on the new size
    assert len(frames) >= 9
    assert all(frame.shape == (48, 64, 3) for frame in frames)


def test_garbage_file_is_a_data_error(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(b"not a video at all " * 100)
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: not a readable video"):
        VideoReader(path)


def test_missing_file_and_audio_only_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        VideoReader(tmp_path / "missing.mp4")
    with wave.open(str(tmp_path / "tone.wav"), "wb") as tone:
        tone.setnchannels(1)
        tone.setsampwidth(2)
        tone.setframerate(8000)
        tone.writeframes(bytes(1600))
    with pytest.raises(DataError, match="no video stream"):
        VideoReader(tmp_path / "tone.wav")


def test_decode_error_mid_stream_names_the_frame(tmp_path):
    path = tmp_path / "clip.avi"
    frames = [np.full((16, 16, 3), 40 * i, np.uint8) for i in range(5)]
    encode_raw(path, "avi", "png", frames, "rgb24")
    data = bytearray(path.read_bytes())
    third = [i for i in range(len(data)) if data.startswith(b"\x89PNG", i)][2]
    data[third:third + 16] = bytes(16)  # the PNG decoder refuses a frame without its signature
    path.write_bytes(bytes(data))
    decoded = []
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: decode error at frame 3 "):
        with VideoReader(path) as reader:
            decoded.extend(reader)
    assert len(decoded) == 2


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi"])
def test_truncated_file_gives_fewer_frames_or_data_error(tmp_path, suffix):
    path = tmp_path / f"clip{suffix}"
    write_test_video(path, 12)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    try:
        with VideoReader(path) as reader:
            assert len(list(reader)) < 12
    except DataError as e:
        assert str(e).startswith(str(path))


def test_writer_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(target, 10, size=(48, 64)) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            raise RuntimeError("model failed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("frame", [
    np.zeros((48, 64), np.uint8),
    np.zeros((48, 64, 4), np.uint8),
    np.zeros((64, 48, 3), np.uint8),
    np.zeros((48, 64, 3), np.float32),
])
def test_writer_refuses_a_wrong_frame(tmp_path, frame):
    with pytest.raises(FcnDeployError, match="must be uint8 48x64x3 RGB"):
        with VideoWriter(tmp_path / "out.mp4", 10, size=(48, 64)) as writer:
            writer.write(frame)
    assert list(tmp_path.iterdir()) == []


def test_writer_without_frames_writes_nothing(tmp_path):
    with pytest.raises(FcnDeployError, match="no frames"):
        with VideoWriter(tmp_path / "out.mp4", 10, size=(48, 64)):
            pass
    assert list(tmp_path.iterdir()) == []


def test_unknown_suffix_refused_before_writing(tmp_path):
    with pytest.raises(FcnDeployError, match=r"\.mp4, \.mkv, \.avi, \.mov, \.webm"):
        VideoWriter(tmp_path / "out.gif", 10, size=(48, 64))
    assert list(tmp_path.iterdir()) == []


def test_missing_pyav_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` fail
    with pytest.raises(FcnDeployError, match=r"pip install 'fcn-deploy\[video\]'"):
        VideoReader(tmp_path / "clip.mp4")


def test_is_video():
    assert is_video("a/clip.MP4") and is_video("clip.webm") and is_video("cam.ts")
    assert not is_video("photo.png") and not is_video("noext")
