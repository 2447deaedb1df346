"""The runtime without PyTorch: a second venv with only `pip install fcn-deploy[video]` of the
built wheel runs predict, eval, info and a bench latency row on an ONNX file this venv
exported, with the same labels, and never imports torch. `make test` builds that venv
(.venv-runtime) and names it in FCN_RUNTIME_VENV. Its commands run outside the repository, so
Python finds the installed package, not the tree."""
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers import run
from PIL import Image

VENV = os.environ.get("FCN_RUNTIME_VENV")
VENV = VENV and str(Path(VENV).absolute())  # the commands run in another folder
pytestmark = pytest.mark.skipif(not VENV, reason="no runtime-only venv (make test builds one)")

# Runs the CLI in the runtime venv, then fails if anything imported torch on the way.
DRIVER = """
import sys
from fcn_deploy.cli import main
sys.argv = ["fcn-deploy", *sys.argv[1:]]
try:
    main()
    code = 0
except SystemExit as e:
    code = e.code or 0
if "torch" in sys.modules:
    sys.exit("torch was imported")
sys.exit(code)
"""


def runtime(*args):
    python = Path(VENV) / "bin" / "python"
    return subprocess.run([str(python), "-c", DRIVER, *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=OUTSIDE)


OUTSIDE = tempfile.gettempdir()  # `python -c` puts its working folder first on sys.path


def test_the_runtime_venv_has_no_torch_and_runs_the_installed_wheel():
    python = Path(VENV) / "bin" / "python"
    proc = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True,
                          cwd=OUTSIDE)
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr
    proc = subprocess.run([str(python), "-c", "import fcn_deploy.contract as c; print(c.__file__)"],
                          capture_output=True, text=True, cwd=OUTSIDE, check=True)
    assert Path(proc.stdout.strip()).is_relative_to(Path(VENV).absolute() / "lib"), proc.stdout


def test_predict_eval_info_bench_without_torch(checkpoint, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    assert run("export", checkpoint, "-o", onnx_path).exit_code == 0
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 56), (33, 47), (64, 64)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(images / f"i{i}.png")
    here = run("predict", onnx_path, images, "--out", tmp_path / "here", "--no-overlay")
    assert here.exit_code == 0, here.output

    there = runtime("predict", onnx_path, images, "--out", tmp_path / "there", "--no-overlay")
    assert there.returncode == 0, there.stderr + there.stdout
    for i in range(3):
        a = np.asarray(Image.open(tmp_path / "here" / f"i{i}.png"))
        b = np.asarray(Image.open(tmp_path / "there" / f"i{i}.png"))
        assert np.array_equal(a, b)

    proc = runtime("eval", onnx_path, "--image-size", "32", "--samples", "4",
                   "--json", tmp_path / "eval.json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert 0 <= json.loads((tmp_path / "eval.json").read_text())["results"][str(onnx_path)][
        "mean_iu"] <= 1

    proc = runtime("info", onnx_path, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["arch"] == "fcn8s-vgg16"

    proc = runtime("bench", onnx_path, "--sizes", "32", "--iters", "3", "--warmup", "1",
                   "--out", tmp_path / "bench")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    rows = json.loads((tmp_path / "bench" / "bench.json").read_text())["latency"]
    assert rows and rows[0]["backend"] == "onnxruntime" and rows[0]["p50_ms"] > 0


def test_commands_that_need_torch_say_which_extra(checkpoint, tmp_path):
    for args in (("train", "--out", tmp_path / "m.safetensors"), ("info", checkpoint)):
        proc = runtime(*args)
        assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
            f"error: {args[0]} needs torch, which is not installed here: "
            "pip install 'fcn-deploy[torch]'"]


def test_openvino_backend_without_openvino_names_its_extra(checkpoint, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    assert run("export", checkpoint, "-o", onnx_path).exit_code == 0
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "a.png")
    proc = runtime("predict", onnx_path, images, "--out", tmp_path / "out", "--backend",
                   "openvino")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "error: the openvino backend needs OpenVINO, which is not installed here: "
        "pip install 'fcn-deploy[openvino]'"], proc.stderr + proc.stdout
    assert not (tmp_path / "out" / "a.png").exists()
