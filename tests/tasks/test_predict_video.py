"""Video in and out through real PyAV: round trips, odd sizes, grey sources, size changes,
corrupt files and atomic writes."""
from __future__ import annotations

import contextlib
import re
import sys
import wave
from fractions import Fraction

import numpy as np
import pytest

from fcn_deploy.errors import DataError, FcnDeployError
from fcn_deploy.media.video import VideoReader, VideoWriter, is_video, write_test_video

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


# Broken videos: frames numbered by source frame, losses counted against the container.

def remux(source, target, drop):
    """Copy the video packets of ``source`` to ``target`` (same format), leaving out the
    packets at the positions in ``drop``; return the pts of those kept."""
    kept = []
    with av.open(str(source)) as src, av.open(str(target), "w", format=src.format.name
                                              .split(",")[0]) as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        for i, packet in enumerate(p for p in src.demux(stream) if p.size):
            if i not in drop:
                kept.append(packet.pts)
                packet.stream = out
                dst.mux(packet)
    return kept


def intra_video(tmp_path, name, frames=40):
    """``frames`` frames of ``write_test_video`` as MJPEG in a .mov: every packet is a whole
    frame, so leaving packets out loses exactly those frames. Returns the path."""
    written = write_test_video(tmp_path / "h264.mp4", frames)
    path = tmp_path / name
    encode_raw(path, "mov", "mjpeg", written, "yuvj420p")
    return path


def decoded(path):
    """{source frame number: RGB frame} of what PyAV alone decodes from ``path`` (constant
    frame rate: pts x time base x rate), stopping at a decode error."""
    frames = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start, base, rate = stream.start_time or 0, stream.time_base, stream.guessed_rate
        with contextlib.suppress(av.FFmpegError):
            for frame in container.decode(stream):
                frames[round((frame.pts - start) * base * rate)] = frame.to_ndarray(
                    format="rgb24")
    return frames


def test_dropped_packets_leave_gaps_in_the_frame_numbers(tmp_path):
    source = intra_video(tmp_path, "source.mov")
    kept = remux(source, tmp_path / "cut.mov", drop=range(12, 17))
    with VideoReader(tmp_path / "cut.mov") as reader:
        numbers = [i for i, _ in reader.indexed()]
        count = reader.count()
    assert numbers == [pts * 10 // 10240 for pts in kept]  # mov time base 1/10240 at 10 fps
    assert numbers == [*range(12), *range(17, 40)]
    # the container holds 35 frames: the 5 missing are gaps in its timing, not lost frames
    assert (count.decoded, count.lost, count.gaps, count.first_gap) == (35, 0, 5, 12)


def test_frames_an_edit_list_hides_are_not_lost(tmp_path):
    # A cut made without re-encoding keeps the packets before it, hidden by an edit list.
    write_test_video(tmp_path / "clip.mp4", 40)
    with av.open(str(tmp_path / "clip.mp4")) as src, av.open(str(tmp_path / "cut.mp4"), "w",
                                                             format="mp4") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.size:
                packet.pts, packet.dts = packet.pts - 10240, packet.dts - 10240  # 10 frames
                packet.stream = out
                dst.mux(packet)
    with VideoReader(tmp_path / "cut.mp4") as reader:
        numbers = [i for i, _ in reader.indexed()]
        count = reader.count()
        assert reader.frames == 40  # the count includes the hidden frames
    assert numbers == list(range(30))
    assert (count.decoded, count.lost, count.gaps) == (30, 0, 0)


@pytest.mark.parametrize("suffix, total", [(".mp4", "40"), (".mkv", "about 40")])
def test_truncated_file_counts_the_lost_frames(tmp_path, suffix, total):
    path = tmp_path / f"clip{suffix}"
    write_test_video(path, 40)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with VideoReader(path) as reader:
        numbers = [i for i, _ in reader.indexed()]
        count = reader.count()
    # the B-frames shown before the last P-frame decoded may be lost with the cut packet
    assert 0 < count.decoded < 40 and numbers == sorted(decoded(path))
    assert (count.total, count.lost, count.gaps) == (40, 40 - count.decoded, 0)
    assert count.basis == ("count" if suffix == ".mp4" else "duration")  # mkv: no frame count


def test_timestamps_that_go_back_switch_to_decode_order(tmp_path):
    parts = []
    for name in ["a.ts", "b.ts"]:  # each segment's timestamps start again
        frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(5)]
        encode_raw(tmp_path / name, "mpegts", "mpeg2video", frames, "yuv420p")
        parts.append((tmp_path / name).read_bytes())
    (tmp_path / "joined.ts").write_bytes(b"".join(parts))
    with VideoReader(tmp_path / "joined.ts") as reader:
        numbers = [i for i, _ in reader.indexed()]
        count = reader.count()
    assert numbers == list(range(10))  # never two frames on one number
    assert count.renumbered_at == 5 and count.basis is None and count.lost == 0


def test_variable_frame_rate_is_numbered_in_decode_order_and_loses_nothing(tmp_path):
    path = tmp_path / "vfr.mkv"
    container = av.open(str(path), "w", format="matroska")
    stream = container.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000)  # else PyAV puts the pts on 1/30 s
    for i, pts in enumerate([0, 50, 100, 166, 207, 240, 273, 314]):  # off the 30 fps grid
        frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 30 * i, np.uint8),
                                           format="rgb24")
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    container.close()
    with VideoReader(path) as reader:
        numbers = [i for i, _ in reader.indexed()]
        count = reader.count()
    assert numbers == list(range(8))
    assert (count.renumbered_at, count.lost, count.gaps, count.basis) == (1, 0, 0, None)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from helpers import export_tiny

    return export_tiny(tmp_path_factory.mktemp("video") / "m.onnx")


def predict(model, clip, out):
    from helpers import run

    return run("predict", model, clip, "-o", out, "--batch-size", "4")


def assert_labels_of_the_model(model, folder, frames):
    """The label maps in ``folder`` are named by the source frame numbers of ``frames`` and hold
    the model's labels of those frames."""
    from fcn_deploy.media.images import read_labels
    from fcn_deploy.runtime.factory import open_segmenter

    assert sorted(p.name for p in folder.iterdir()) == [f"{i:06d}.png" for i in sorted(frames)]
    with open_segmenter(model) as seg:
        for i, frame in frames.items():
            assert np.array_equal(read_labels(folder / f"{i:06d}.png"),
                                  seg.predict(frame[None])[0]), i


def overlay_frames(path):
    with VideoReader(path) as reader:
        return len(list(reader))


@pytest.mark.parametrize("suffix, about", [(".mp4", ""), (".mkv", "about ")])
def test_predict_on_a_truncated_video_reports_lost_frames_and_fails(model, tmp_path, suffix,
                                                                     about):
    clip = tmp_path / f"clip{suffix}"
    write_test_video(clip, 40)
    data = clip.read_bytes()
    clip.write_bytes(data[:len(data) // 2])
    frames = decoded(clip)
    n = len(frames)
    assert 0 < n < 40 and set(frames) <= set(range(40))
    result = predict(model, clip, tmp_path / "out")
    assert result.exit_code == 1, result.output
    estimate = "; no frame count in the file: estimated from its duration at 10 fps" * bool(about)
    assert (f"warning: clip{suffix}: {n} of {about}40 frames decoded ({40 - n} lost: corrupt "
            f"or missing data{estimate})") in result.output
    assert re.search(rf"^failed: .*clip{re.escape(suffix)}: {40 - n} of {about}40 frames lost "
                     rf"\(corrupt or missing data\); the outputs of the {n} decoded were "
                     r"written$", result.output, re.M), result.output
    assert re.match(r"error: 1 of 1 inputs? failed", result.output.strip().splitlines()[-1])
    # what decoded is written, and right: the overlay holds those frames, no more
    assert_labels_of_the_model(model, tmp_path / "out" / "clip", frames)
    assert overlay_frames(tmp_path / "out" / f"clip_overlay{suffix}") == n


def test_predict_on_a_video_corrupt_in_the_middle_fails_and_writes_only_right_frames(
        model, tmp_path):
    clip = tmp_path / "clip.mkv"
    write_test_video(clip, 40)
    with av.open(str(clip)) as container:
        places = [(p.pos, p.size) for p in container.demux(container.streams.video[0])
                  if p.size]
    data = bytearray(clip.read_bytes())
    for pos, size in places[12:17]:  # frames 12-16, their Matroska block headers included
        data[pos:pos + size] = bytes(size)
    clip.write_bytes(bytes(data))
    frames = decoded(clip)
    assert set(frames) <= set(range(40)) and len(frames) < 40
    result = predict(model, clip, tmp_path / "out")
    assert result.exit_code == 1, result.output
    n = len(frames)
    assert f"warning: clip.mkv: {n} of about 40 frames decoded ({40 - n} lost" in result.output
    assert re.search(r"^failed: .*clip\.mkv: \d+ of about 40 frames lost", result.output, re.M)
    assert_labels_of_the_model(model, tmp_path / "out" / "clip", frames)
    assert overlay_frames(tmp_path / "out" / "clip_overlay.mkv") == n


def test_predict_names_label_maps_by_source_frame_across_dropped_packets(model, tmp_path):
    source = intra_video(tmp_path, "source.mov")
    remux(source, tmp_path / "clip.mov", drop=range(12, 17))
    frames = decoded(tmp_path / "clip.mov")
    assert sorted(frames) == [*range(12), *range(17, 40)]
    result = predict(model, tmp_path / "clip.mov", tmp_path / "out")
    # the file itself holds 35 frames (as a recording with a variable frame rate would): all
    # are written, named by source frame, and the gap is said, but nothing failed
    assert result.exit_code == 0, result.output
    assert ("warning: clip.mov: the file has no frame for 5 frame times at 10 fps (the first "
            "is 12)") in result.output
    assert "lost" not in result.output and "failed" not in result.output
    assert_labels_of_the_model(model, tmp_path / "out" / "clip", frames)
    assert overlay_frames(tmp_path / "out" / "clip_overlay.mov") == 35
