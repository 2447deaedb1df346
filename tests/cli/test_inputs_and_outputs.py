"""The CLI on real-looking photos and broken inputs: outputs never over inputs, corrupt inputs
refused before anything is written, what a run says it did, one-line usage errors; each test
runs the real command on real files."""
import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_one_line_error, run
from PIL import Image

TINY = ["--width", "0.0625", "--image-size", "32", "--samples", "4", "--batch-size", "4"]




@pytest.fixture
def model(checkpoint):
    return checkpoint


def test_training_prints_progress_with_an_eta_off_a_terminal(tiny_training):
    assert "ETA" in tiny_training[1]  # plain progress lines when output is not a terminal


def photos(folder, corrupt=False):
    """An RGB JPEG, a greyscale PNG, an RGBA PNG and a palette PNG of odd sizes."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (45, 61, 3), np.uint8)).save(folder / "chelsea.jpg")
    Image.fromarray(rng.integers(0, 255, (45, 61), np.uint8)).save(folder / "camera.png")
    Image.fromarray(rng.integers(0, 255, (33, 40, 4), np.uint8)).save(folder / "logo.png")
    Image.fromarray(rng.integers(0, 255, (45, 61, 3), np.uint8)).convert("P").save(
        folder / "palette.png")
    if corrupt:
        (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return folder


def test_predict_never_writes_over_its_inputs(model, tmp_path):
    src = photos(tmp_path / "photos")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    line = assert_one_line_error(run("predict", model, src, "--out", src))
    assert "is also an input" in line and "camera.png" in line
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    # Outputs beside the inputs are fine when no name is shared (a JPEG's labels are .png).
    jpgs = tmp_path / "jpgs"
    jpgs.mkdir()
    (jpgs / "chelsea.jpg").write_bytes((src / "chelsea.jpg").read_bytes())
    result = run("predict", model, jpgs, "--out", jpgs, "--no-overlay")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in jpgs.iterdir()) == ["chelsea.jpg", "chelsea.png"]


def test_a_corrupt_input_stops_the_run_before_anything_is_written(model, tmp_path):
    src = photos(tmp_path / "photos", corrupt=True)
    line = assert_one_line_error(run("predict", model, src, "--out", tmp_path / "out"))
    assert "1 of 5 inputs are not readable" in line and "broken.jpg" in line
    assert not (tmp_path / "out").exists()
    result = run("predict", model, src, "--out", tmp_path / "out", "--skip-bad")
    assert result.exit_code == 0, result.output
    assert "skipped: " in result.output and "broken.jpg" in result.output
    assert "wrote 4 label maps" in result.output
    assert len(list((tmp_path / "out").glob("*_overlay.png"))) == 4


def test_predict_says_what_it_did(model, tmp_path):
    src = photos(tmp_path / "photos")
    result = run("predict", model, src, "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.count("alpha channel") == 1 and "logo.png" in out  # said once, not per image
    assert out.count("knows only fcn-deploy's synthetic scenes") == 1
    for name in ("chelsea.jpg", "camera.png", "logo.png", "palette.png"):  # class shares
        share = next(line for line in out.splitlines() if line.startswith(f"{name}: "))
        assert share.endswith("%")
    overlay = Image.open(tmp_path / "a" / "camera_overlay.png")
    assert overlay.width > 61  # the legend panel beside the 61 px wide image
    panel = np.asarray(overlay.convert("L"))[:, 61:]
    assert (panel < 128).any() and (panel == 255).any()  # swatch and text on white
    labels = Image.open(tmp_path / "a" / "camera.png")
    assert labels.mode == "P" and labels.size == (61, 45)


def test_batches_give_the_labels_of_single_images(model, tmp_path):
    src = tmp_path / "same"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(src / f"f{i}.png")
    one = run("predict", model, src, "--out", tmp_path / "one", "--no-overlay")
    three = run("predict", model, src, "--out", tmp_path / "three", "--batch-size", "3",
                "--no-overlay")
    assert one.exit_code == 0 and three.exit_code == 0, one.output + three.output
    assert not list((tmp_path / "three").glob("*_overlay.png"))
    for i in range(3):
        a = np.asarray(Image.open(tmp_path / "one" / f"f{i}.png"))
        b = np.asarray(Image.open(tmp_path / "three" / f"f{i}.png"))
        assert np.array_equal(a, b)


def test_train_checks_its_output_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(run("train", *TINY, "--epochs", "1", "--out", blocker / "m.safetensors"),
                          "cannot write", "is a file, not a folder")
    ckpt = tmp_path / "c.safetensors"
    ckpt.write_bytes(b"placeholder")
    assert_one_line_error(run("train", *TINY, "--init", ckpt, "--out", ckpt), "is also an input")
    assert ckpt.read_bytes() == b"placeholder"


@pytest.mark.parametrize("value", ["-1", "0", "many"])
def test_bad_option_values_are_one_line(value, tmp_path):
    assert_one_line_error(run("train", "--epochs", value, "--out", tmp_path / "m.safetensors"),
                          "--epochs", "train --help", code=2)


def test_missing_argument_and_unknown_command_are_one_line():
    assert "Missing argument" in assert_one_line_error(run("info"), code=2)
    assert "No such command" in assert_one_line_error(run("nosuch"), code=2)


def test_version_short_help_and_info_json(model):
    proc = subprocess.run([sys.executable, "-m", "fcn_deploy.cli", "--version"],
                          capture_output=True, text=True, check=True)
    from fcn_deploy import __version__
    assert proc.stdout.strip() == f"fcn-deploy {__version__}"
    assert "Usage" in run("-h").output and "--out" in run("predict", "-h").output
    result = run("info", model, "--json")
    assert result.exit_code == 0, result.output
    fields = json.loads(result.output)
    assert fields["arch"] == "fcn8s-vgg16" and fields["num_classes"] == 7
    assert fields["class_names"][0] == "background"


def test_the_optimizer_state_file_says_what_it_is(model):
    optim = model.with_name("fcn8s.optim.safetensors")
    for command in ("info", "eval"):
        line = assert_one_line_error(run(command, optim))
        assert "optimizer state of checkpoint fcn8s.safetensors" in line and "--arch" not in line


def test_no_command_writes_over_its_inputs(model, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    assert run("export", model, "-o", onnx_path).exit_code == 0
    kept = {p: p.read_bytes() for p in (model, onnx_path)}
    cases = [("export", model, "-o", model),
             ("build", onnx_path, "-o", onnx_path),
             ("eval", onnx_path, "--image-size", "32", "--samples", "2", "--json", onnx_path),
             ("train", *TINY, "--init", model, "--out", model)]
    for args in cases:
        assert_one_line_error(run(*args), "is also an input")
    assert {p: p.read_bytes() for p in kept} == kept


def test_outputs_that_collide_are_refused(model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("x.png", "x_overlay.png"):  # x's overlay and x_overlay's label map
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(src / name)
    assert_one_line_error(run("predict", model, src, "--out", tmp_path / "out"),
                          "would be written to the same file")
    assert not (tmp_path / "out").exists()


def test_segment_dataset_refuses_to_write_label_maps_over_its_inputs(model, tmp_path):
    src = photos(tmp_path / "photos")
    assert_one_line_error(run("segment-dataset", model, src, "--out", src, "--workers", "1"),
                          "is also an input")


def test_palette_transparency_is_said_once_in_our_words(model, tmp_path):
    src = tmp_path / "pal"
    src.mkdir()
    im = Image.fromarray(np.arange(400, dtype=np.uint8).reshape(20, 20) % 7).convert("P")
    im.info["transparency"] = b"\x00" * 256
    im.save(src / "t.png", transparency=0)
    result = run("predict", model, src, "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "alpha channel" in result.output and "Warning" not in result.output


def test_skip_bad_counts_what_it_skipped(model, tmp_path):
    src = photos(tmp_path / "photos", corrupt=True)
    (src / "cut.png").write_bytes((src / "camera.png").read_bytes()[:60])  # cut off
    result = run("predict", model, src, "--out", tmp_path / "o", "--skip-bad", "--no-overlay")
    assert result.exit_code == 0, result.output
    assert "skipped 2 unreadable inputs:" in result.output and "cut.png" in result.output


def test_exporting_a_bare_classifier_says_to_train_first(tmp_path):
    import torch

    from fcn_deploy.models import vgg16
    clf = tmp_path / "vgg.pth"
    torch.save(vgg16(width=0.0625).state_dict(), clf)
    assert_one_line_error(run("export", clf, "--arch", "fcn8s-vgg16", "-o", tmp_path / "x.onnx"),
                          "is a classifier", "train --arch fcn8s-vgg16 --init")
    assert not (tmp_path / "x.onnx").exists()


def test_a_closed_pipe_ends_quietly(model):
    # `true` exits before the command writes: every write meets a closed pipe
    proc = subprocess.run(f"{sys.executable} -m fcn_deploy.cli info {model} --json | true",
                          shell=True, capture_output=True, text=True)
    assert proc.stderr == ""


def test_inputs_past_1199_pixels_run_and_the_metadata_says_any_size(model, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    assert run("export", model, "-o", onnx_path).exit_code == 0
    fields = json.loads(run("info", onnx_path, "--json").output)
    assert fields["input"]["height"] == [1, None] and fields["input"]["width"] == [1, None]
    src = tmp_path / "tall"
    src.mkdir()
    Image.fromarray(np.zeros((1300, 24, 3), np.uint8)).save(src / "tall.png")
    result = run("predict", onnx_path, src, "--out", tmp_path / "o", "--no-overlay")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "o" / "tall.png").size == (24, 1300)
