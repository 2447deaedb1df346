"""The CLI with real TensorRT-RTX engines on a machine without a GPU: interrupts, engines
without sidecars, eval of what can run, the skipped NaN/Inf scan, and info's profiles."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from helpers import assert_one_line_error, run, tiny_meta

from fcn_deploy.contract.kinds import artifact_kind
from fcn_deploy.exporters.onnx_export import export_onnx
from fcn_deploy.exporters.tensorrt_build import build_engine
from fcn_deploy.models import build_model, random_init_
from fcn_deploy.runtime.tensorrt import Profile

pytest.importorskip("tensorrt_rtx")
PROFILES = [Profile((1, 3, 32, 32), (1, 3, 64, 64), (2, 3, 64, 64)),
            Profile((1, 3, 64, 64), (1, 3, 96, 96), (1, 3, 128, 128))]
SMALL = ["--image-size", "32", "--samples", "4", "--batch-size", "4"]




def no_gpu() -> bool:
    from fcn_deploy.runtime.trt_segmenter import no_gpu_reason

    return no_gpu_reason() is not None


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    """A width-1/16 FCN-8s with 7 classes (the synthetic data set's)."""
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    meta = tiny_meta()
    model = random_init_(build_model("fcn8s-vgg16", 7, width=0.0625)).eval()
    export_onnx(model, meta, path, verify_shapes=((1, 3, 40, 40),))
    return path


@pytest.fixture(scope="module")
def engine(onnx_path):
    out = onnx_path.with_name("m.engine")
    build_engine(onnx_path, out, PROFILES, "tensorrt-rtx", ["SM86"], log=lambda s: None)
    return out


def test_ctrl_c_during_build_exits_130_and_writes_nothing(onnx_path, tmp_path):
    # Twelve profiles for five GPU families: a build of several seconds, cancelled midway.
    buckets = ",".join(str(64 * i) for i in range(1, 13))
    proc = subprocess.Popen(
        [sys.executable, "-m", "fcn_deploy.cli", "build", onnx_path, "-o", tmp_path / "i.engine",
         "--buckets", buckets, "--scan-samples", "0"], cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first = proc.stdout.readline()  # printed once the build has started
        assert first.startswith("building i.engine"), first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    assert err.strip() == "error: interrupted" and "built" not in out
    assert os.listdir(tmp_path) == []  # no engine, sidecar or temp file


def test_engine_copied_without_its_sidecar_says_so(engine, tmp_path):
    copy = tmp_path / "copy.engine"
    shutil.copy(engine, copy)
    assert artifact_kind(copy) == "engine"
    needles = (f"engine {copy} has no sidecar copy.engine.json: copy it along, or rebuild",)
    assert_one_line_error(run("info", copy), *needles)
    assert_one_line_error(run("eval", copy, *SMALL), *needles)


def test_eval_keeps_what_ran_and_lists_the_engine_as_not_run(engine, onnx_path, tmp_path):
    if not no_gpu():
        pytest.skip("checks the no-GPU path")
    out = tmp_path / "eval.json"
    result = run("eval", engine, onnx_path, *SMALL, "--json", out)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert any("m.onnx" in line and "onnxruntime" in line for line in lines), result.output
    assert any(line.startswith("not run: m.engine (tensorrt-rtx):") and "GPU" in line
               for line in lines)
    assert lines[-1] == "error: 1 of 2 artifacts did not run: m.engine"
    r = json.loads(out.read_text())
    assert r["results"][str(onnx_path)]["agreement_vs_first"] == 1.0  # the first that ran
    assert [n["artifact"] for n in r["not_run"]] == [str(engine)]
    assert "GPU" in r["not_run"][0]["reason"]

    result = run("eval", onnx_path, *SMALL, "--json", out)  # all ran: exit 0, empty list
    assert result.exit_code == 0 and json.loads(out.read_text())["not_run"] == []


def test_build_without_a_gpu_says_so_and_names_only_the_engine(onnx_path, tmp_path):
    if not no_gpu():
        pytest.skip("checks the no-GPU path")
    result = run("build", onnx_path, "-o", tmp_path / "b.engine", "--compute-capability", "SM86",
                 "--min", "1x3x32x32", "--opt", "1x3x64x64", "--max", "1x3x64x64")
    assert result.exit_code == 0, result.output
    assert ("NaN/Inf scan of b.engine skipped: no CUDA GPU here (the engine was built; scan it "
            "where it runs)") in result.output
    assert ".tmp" not in result.output and "insufficient" not in result.output
    assert sorted(os.listdir(tmp_path)) == ["b.engine", "b.engine.json"]


def test_info_shows_the_engine_profiles_not_the_onnx_range(engine):
    result = run("info", engine)
    assert result.exit_code == 0, result.output
    assert "profile 0 " in result.output and "profile 1 " in result.output
    assert "min 1x3x32x32, opt 1x3x64x64, max 2x3x64x64" in result.output
    assert "min 1x3x64x64, opt 1x3x96x96, max 1x3x128x128" in result.output
    assert "[1, 1199]" not in result.output
