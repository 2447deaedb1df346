"""`predict` as a pipeline: a folder of images (decode -> infer -> write) and videos (frames in
order -> infer -> post -> encode) give the labels of the model run directly, in input order,
with a frames/s summary; bad inputs are refused before anything is written."""
import importlib.util
import re
import sys

import numpy as np
import pytest
from helpers import assert_one_line_error, run
from PIL import Image

from fcn_deploy.errors import DataError
from fcn_deploy.media.images import read_labels
from fcn_deploy.runtime.factory import open_segmenter

needs_av = pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="no PyAV")
SUMMARY = (r"\(onnxruntime\); (\d+) frames in [\d.]+ s: [\d.]+ frames/s; per frame: "
           r"{} [\d.]+ ms$")


@pytest.fixture(scope="module")
def model(tiny_training, tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "m.onnx"
    result = run("export", tiny_training[0], "-o", path)
    assert result.exit_code == 0, result.output
    return path


def direct(model, frames):
    """Labels of ``frames`` (uint8 H x W x 3 each) from the model itself, one at a time."""
    with open_segmenter(model) as seg:
        return [seg.predict(frame[None])[0] for frame in frames]


def images(folder, sizes, bad=()):
    """Random RGB PNGs of ``sizes`` named i0.png ...; ``bad`` names get garbage bytes."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    written = {}
    for i, (h, w) in enumerate(sizes):
        written[f"i{i}"] = rng.integers(0, 255, (h, w, 3), np.uint8)
        Image.fromarray(written[f"i{i}"]).save(folder / f"i{i}.png")
    for name in bad:
        (folder / name).write_bytes(b"\x89PNG not really")
    return written


def log_names(output):
    return [m.group(1) for m in re.finditer(r"^(\w+)\.(?:png|jpg): \w+ [\d.]+%", output, re.M)]


def test_a_folder_gives_the_labels_of_the_model_in_input_order(model, tmp_path):
    sizes = [(40, 56), (40, 56), (40, 56), (33, 47), (64, 64), (64, 64)]
    written = images(tmp_path / "src", sizes)
    result = run("predict", model, tmp_path / "src", "-o", tmp_path / "out", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert log_names(result.output) == list(written)  # i0 ... i5, in input order
    summary = result.output.strip().splitlines()[-1]
    assert summary.startswith(f"wrote 6 label maps and overlays to {tmp_path / 'out'}")
    assert re.search(SUMMARY.format(r"decode [\d.]+ ms, infer [\d.]+ ms, write"), summary)
    for (name, image), expected in zip(written.items(), direct(model, written.values())):
        assert np.array_equal(read_labels(tmp_path / "out" / f"{name}.png"), expected), name
        assert (tmp_path / "out" / f"{name}_overlay.png").exists()


def test_corrupt_image_refused_or_skipped(model, tmp_path):
    images(tmp_path / "src", [(40, 56), (33, 47)], bad=["broken.png"])
    line = assert_one_line_error(run("predict", model, tmp_path / "src", "-o", tmp_path / "o"))
    assert "1 of 3 inputs are not readable images" in line and "broken.png" in line
    assert not (tmp_path / "o").exists()
    result = run("predict", model, tmp_path / "src", "-o", tmp_path / "o", "--skip-bad",
                 "--no-overlay")
    assert result.exit_code == 0, result.output
    assert "skipped 1 unreadable input:" in result.output and "broken.png" in result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["i0.png", "i1.png"]


def test_a_failed_batch_is_listed_and_the_others_are_written(model, tmp_path, monkeypatch):
    import fcn_deploy.tasks.predict_images as predict_files

    decode = predict_files.decode_image

    def flaky(path):
        if path.name == "i1.png":
            raise DataError(f"{path}: vanished")
        return decode(path)

    monkeypatch.setattr(predict_files, "decode_image", flaky)
    images(tmp_path / "src", [(40, 56), (33, 47), (40, 40)])
    result = run("predict", model, tmp_path / "src", "-o", tmp_path / "o", "--no-overlay")
    assert result.exit_code == 1
    assert log_names(result.output) == ["i0", "i2"]
    assert re.search(r"^failed: .*i1\.png: decode: .*vanished$", result.output, re.M)
    assert "error: 1 of 3 inputs failed (listed above); the others were written" in result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["i0.png", "i2.png"]


def test_labels_only_overlays_only_and_neither(model, tmp_path):
    images(tmp_path / "src", [(40, 56)])
    result = run("predict", model, tmp_path / "src", "-o", tmp_path / "o", "--no-labels")
    assert result.exit_code == 0, result.output
    assert "wrote 1 overlays to" in result.output
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["i0_overlay.png"]
    assert_one_line_error(run("predict", model, tmp_path / "src", "-o", tmp_path / "n",
                              "--no-labels", "--no-overlay"), "nothing to write", code=2)


@needs_av
def test_a_video_gives_an_overlay_video_and_the_labels_of_each_frame(model, tmp_path):
    from fcn_deploy.media.video import VideoReader, write_test_video

    clip = tmp_path / "clip.mp4"
    write_test_video(clip, 12, size=(64, 96), fps=12)
    with VideoReader(clip) as reader:
        frames = list(reader)
    result = run("predict", model, clip, "-o", tmp_path / "out", "--batch-size", "5")
    assert result.exit_code == 0, result.output
    summary = result.output.strip().splitlines()[-1]
    assert summary.startswith(f"wrote {tmp_path / 'out' / 'clip_overlay.mp4'} and 12 label maps "
                              f"in {tmp_path / 'out' / 'clip'}")
    assert re.search(SUMMARY.format(r"infer [\d.]+ ms, post [\d.]+ ms, encode"), summary)
    assert re.search(r"^clip\.mp4: 12 frames: \w+ [\d.]+%", result.output, re.M)
    with VideoReader(tmp_path / "out" / "clip_overlay.mp4") as overlay:
        assert (overlay.size, overlay.fps) == ((64, 96), 12)
        assert len(list(overlay)) == 12
    labels = sorted((tmp_path / "out" / "clip").iterdir())
    assert [p.name for p in labels] == [f"{i:06d}.png" for i in range(12)]
    for path, expected in zip(labels, direct(model, frames)):
        assert np.array_equal(read_labels(path), expected), path.name


@needs_av
def test_an_undecodable_video_is_refused_or_skipped(model, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all " * 100)
    assert_one_line_error(run("predict", model, bad, "-o", tmp_path / "o"), "bad.mp4",
                          "not a readable video", "1 of 1 inputs")
    assert not (tmp_path / "o").exists()
    images(tmp_path / "src", [(40, 56)])
    result = run("predict", model, tmp_path / "src", bad, "-o", tmp_path / "o", "--skip-bad")
    assert result.exit_code == 0, result.output
    assert re.search(r"^skipped: .*bad\.mp4: not a readable video", result.output, re.M)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["i0.png", "i0_overlay.png"]


def encode_raw(path, fmt, codec, frames, pix_fmt, source_format):
    """Write ``frames`` with PyAV alone, for sources VideoWriter does not make."""
    import av

    container = av.open(str(path), "w", format=fmt)
    stream = container.add_stream(codec, rate=10)
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = pix_fmt
    for frame in frames:
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format=source_format)))
    container.mux(stream.encode(None))
    container.close()


@needs_av
def test_a_gray_video_is_noted_once(model, tmp_path):
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (32, 1))
    encode_raw(tmp_path / "grey.mkv", "matroska", "ffv1", [ramp, 255 - ramp, ramp], "gray",
               "gray")
    result = run("predict", model, tmp_path / "grey.mkv", "-o", tmp_path / "o", "--no-labels")
    assert result.exit_code == 0, result.output
    assert result.output.count("note: grey.mkv frames are gray; converted to RGB") == 1
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["grey_overlay.mkv"]


@needs_av
@pytest.mark.parametrize("batch", ["1", "4"])
def test_a_decode_error_mid_stream_names_the_frame_and_writes_no_video(model, tmp_path, batch):
    clip = tmp_path / "clip.avi"
    frames = [np.full((16, 16, 3), 40 * i, np.uint8) for i in range(5)]
    encode_raw(clip, "avi", "png", frames, "rgb24", "rgb24")
    data = bytearray(clip.read_bytes())
    third = [i for i in range(len(data)) if data.startswith(b"\x89PNG", i)][2]
    data[third:third + 16] = bytes(16)  # the PNG decoder refuses a frame without its signature
    clip.write_bytes(bytes(data))
    result = run("predict", model, clip, "-o", tmp_path / "o", "--batch-size", batch)
    assert result.exit_code == 1
    assert re.search(r"^failed: .*clip\.avi: decode error at frame 3 .*clip_overlay\.avi not "
                     r"written", result.output, re.M), result.output
    assert result.output.strip().splitlines()[-1] == "error: 1 of 1 inputs failed (listed above)"
    assert not (tmp_path / "o" / "clip_overlay.avi").exists()
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["clip"]  # no temp file left
    assert sorted(p.name for p in (tmp_path / "o" / "clip").iterdir()) == ["000000.png",
                                                                         "000001.png"]


@needs_av
def test_video_outputs_never_land_on_inputs(model, tmp_path):
    from fcn_deploy.media.video import write_test_video

    src = tmp_path / "src"
    src.mkdir()
    write_test_video(src / "clip.mp4", 3)
    write_test_video(src / "clip_overlay.mp4", 3)  # clip's overlay video would replace it
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    line = assert_one_line_error(run("predict", model, src, "-o", src))
    assert "is also an input" in line and "clip_overlay.mp4" in line
    (src / "clip_overlay.mp4").unlink()
    frames = src / "clip"  # a folder of inputs where clip.mp4's label maps would go
    images(frames, [(40, 56)])
    line = assert_one_line_error(run("predict", model, src / "clip.mp4", frames, "-o", src))
    assert "holds the input" in line and "i0.png" in line
    assert {p.name for p in src.iterdir()} == {"clip.mp4", "clip"}
    assert (src / "clip.mp4").read_bytes() == before["clip.mp4"]


@needs_av
def test_missing_pyav_is_one_line(model, tmp_path, monkeypatch):
    from fcn_deploy.media.video import write_test_video

    write_test_video(tmp_path / "clip.mp4", 2)
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` fail
    assert_one_line_error(run("predict", model, tmp_path / "clip.mp4", "-o", tmp_path / "o"),
                          "pip install 'fcn-deploy[video]'")
    assert not (tmp_path / "o").exists()


@needs_av
def test_frames_that_change_size_mid_stream_are_noted_once(model, tmp_path):
    # MPEG-TS segments concatenate byte-wise; the decoder follows the new sequence header.
    parts = []
    for name, (height, width) in [("a.ts", (48, 64)), ("b.ts", (32, 80))]:
        frames = [np.full((height, width, 3), 40 * i, np.uint8) for i in range(5)]
        encode_raw(tmp_path / name, "mpegts", "mpeg2video", frames, "yuv420p", "rgb24")
        parts.append((tmp_path / name).read_bytes())
    (tmp_path / "joined.ts").write_bytes(b"".join(parts))
    result = run("predict", model, tmp_path / "joined.ts", "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    note = "note: 5 frames of joined.ts changed size mid-stream; resized to 48x64"
    assert result.output.count(note) == 1
    assert (tmp_path / "o" / "joined_overlay.mp4").exists()  # .ts is not written: .mp4
    assert {read_labels(p).shape for p in (tmp_path / "o" / "joined").iterdir()} == {(48, 64)}
