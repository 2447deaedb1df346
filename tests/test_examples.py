"""examples/edge_app.py: a video or a folder of images in, an overlay video out, with frames/s
and per-stage times, on the runtime install (FCN_RUNTIME_VENV: no torch) and on this venv;
either way the app must never import torch.

The models are random-init exports: the tiny trained checkpoint of conftest.py has all-zero
logits, so it labels every pixel background (black in the palette) and would leave the colour
half of the overlay unchecked. This 2-class one labels about a fifth of each frame class 1."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers import export_tiny
from PIL import Image
from safetensors.numpy import save_file

from fcn_deploy.media.images import colorize
from fcn_deploy.media.video import VideoReader, write_test_video
from fcn_deploy.runtime.factory import open_segmenter

APP = Path(__file__).resolve().parents[1] / "examples" / "edge_app.py"
VENV = os.environ.get("FCN_RUNTIME_VENV")
VENV = VENV and str(Path(VENV).absolute())  # the commands run in another folder
RUNTIME = pytest.mark.skipif(not VENV, reason="no runtime-only venv (make test builds one)")
SIZE, FRAMES, FPS = (64, 96), 10, 10

# Runs the app as `python examples/edge_app.py ...` would, then exits 99 if torch got imported
# (a code of its own: the app's error exits are 1).
DRIVER = """
import runpy, sys
app, sys.argv = sys.argv[1], sys.argv[1:]
try:
    runpy.run_path(app, run_name="__main__")
    code = 0
except SystemExit as e:
    code = e.code
if "torch" in sys.modules:
    print("torch was imported", file=sys.stderr)
    sys.exit(99)
sys.exit(code)
"""


def edge_app(*args, python="here"):
    exe = str(Path(VENV) / "bin" / "python") if python == "runtime" else sys.executable
    # outside the repository: `python -c` puts its working folder first on sys.path, and the
    # runtime venv must run its installed wheel, not the tree
    return subprocess.run([exe, "-c", DRIVER, str(APP), *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=tempfile.gettempdir())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{input format: ONNX file} of one random-init 2-class FCN-8s."""
    out = tmp_path_factory.mktemp("edge")
    paths = {"float": out / "float.onnx", "rgb8": out / "rgb8.onnx"}
    for fmt, path in paths.items():
        export_tiny(path, "--input", fmt, num_classes=2)
    return paths


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("edge") / "in.mp4"
    write_test_video(path, FRAMES, size=SIZE, fps=FPS)
    return path


def read_video(path):
    with VideoReader(path) as reader:
        return list(reader), reader.fps


def assert_overlays(written, frames, model):
    """``written`` (decoded) is 0.5 * frame + 0.5 * the label colours of each of ``frames``,
    up to the video codec's loss, in the labelled regions too."""
    with open_segmenter(model) as seg:
        labels = [seg.predict(frame[None])[0] for frame in frames]
    assert np.mean([(label != 0).mean() for label in labels]) > 0.05  # colours to check
    for got, frame, label in zip(written, frames, labels):
        diff = np.abs(got - (0.5 * frame + 0.5 * colorize(label)))
        coloured = label != 0  # there, an overlay without the colours would be ~21 off
        assert diff.mean() < 10 and diff[coloured].mean() < 12


@pytest.mark.parametrize("python, fmt", [("here", "float"), ("here", "rgb8"),
                                         pytest.param("runtime", "rgb8", marks=RUNTIME)])
def test_video_in_overlay_video_out(models, video, tmp_path, python, fmt):
    out = tmp_path / "overlay.mp4"
    proc = edge_app(models[fmt], video, "-o", out, "--threads", 2, python=python)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert f"input {fmt}" in proc.stdout
    assert f"{FRAMES} frames in" in proc.stdout and "frames/s" in proc.stdout
    assert all(f"{stage} " in proc.stdout for stage in ("grab", "infer", "blend", "write"))
    assert "decode" not in proc.stdout  # a video decodes in the grab

    written, fps = read_video(out)
    assert len(written) == FRAMES and written[0].shape == (*SIZE, 3) and fps == pytest.approx(FPS)
    frames, _ = read_video(video)  # what the app saw: the decoded (lossy) input
    assert_overlays(written, frames, models[fmt])


def test_a_folder_of_images_with_a_failed_frame(models, video, tmp_path):
    frames, _ = read_video(video)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames[:4]):
        Image.fromarray(frame).save(folder / f"{i:03}.png")
    Image.fromarray(frames[4][:32, :48]).save(folder / "004.png")  # another size: resized
    (folder / "005.png").write_bytes(b"not a png")  # fails alone; the run goes on
    Image.fromarray(frames[5]).save(folder / "006.png")

    out = tmp_path / "overlay.mkv"
    proc = edge_app(models["rgb8"], folder, "-o", out, "--fps", 5, "--depth", 2)
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "frame 5: decode: " in proc.stderr and "005.png" in proc.stderr
    assert f"1 image resized to {SIZE[0]}x{SIZE[1]}" in proc.stderr and "004.png" in proc.stderr
    assert "7 frames in" in proc.stdout and "1 failed" in proc.stdout
    assert all(f"{stage} " in proc.stdout for stage in ("decode", "infer", "blend", "write"))

    written, fps = read_video(out)
    assert len(written) == 6 and written[0].shape == (*SIZE, 3) and fps == pytest.approx(5)
    assert_overlays(written[:4] + written[5:], frames[:4] + frames[5:6], models["rgb8"])


def test_bad_inputs_give_one_error_line(models, video, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    checkpoint = tmp_path / "fcn8s.safetensors"  # what train writes; only torch can load it
    save_file({"score.weight": np.zeros((2, 8, 1, 1), np.float32)}, checkpoint)
    out = tmp_path / "overlay.mp4"
    for args, needle in [((models["float"], garbage), "garbage.mp4: not a readable video"),
                         ((checkpoint, video), "is a training checkpoint; export it first")]:
        # the runtime install is where a user meets these; this venv without one
        proc = edge_app(*args, "-o", out, python="runtime" if VENV else "here")
        assert proc.returncode == 1, proc.stderr + proc.stdout
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
        assert "Traceback" not in proc.stderr and not out.exists()
        assert not list(tmp_path.glob("overlay*"))  # no temp file left either


def test_output_over_an_input_is_refused(models, video, tmp_path):
    """-o naming the source video (or the model) refuses, as the CLI does; the input stays."""
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(video.read_bytes())
    before = clip.read_bytes()
    for target in (clip, models["rgb8"]):
        proc = edge_app(models["rgb8"], clip, "-o", target)
        assert proc.returncode == 1, proc.stderr + proc.stdout
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "is also an input" in lines[0], lines
    assert clip.read_bytes() == before
