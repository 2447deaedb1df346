"""segment-dataset killed with SIGKILL mid-run, then run again: the label maps are byte for
byte those of a clean run, no partial file is left, and no Ray process outlives the killed
driver."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from helpers import run, wait_for_files

from fcn_deploy.data.voc import write_voc_fixture
from fcn_deploy.tasks.segment_dataset import MANIFEST

pytest.importorskip("ray")
IMAGES, KILL_AFTER, RUN_S = 40, 5, 180
RAY_PROCESSES = "ray/raylet/raylet|gcs_server|ray::"


def _ray_pids() -> set[int]:
    found = subprocess.run(["pgrep", "-f", RAY_PROCESSES], capture_output=True, text=True)
    return {int(p) for p in found.stdout.split()}


def _segment(onnx, voc, out) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fcn_deploy.cli", "segment-dataset", str(onnx), str(voc),
           "--out", str(out), "--workers", "2", "--batch-size", "2"]
    # a process group of its own: the kill reaches the driver alone, as an OOM killer's would
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_a_killed_run_then_a_rerun_equals_a_clean_run(tmp_path):
    onnx = tmp_path / "m.onnx"
    assert run("export", "--random-init", "--arch", "fcn8s-vgg16", "--width", "0.25",
               "--num-classes", "7", "-o", onnx).exit_code == 0
    voc = write_voc_fixture(tmp_path / "voc", n_train=1, n_val=IMAGES, size=(240, 320),
                            num_classes=7)
    clean = tmp_path / "clean"
    job = _segment(onnx, voc, clean)
    assert job.wait(RUN_S) == 0, job.stdout.read()
    before = _ray_pids()
    out = tmp_path / "killed"
    job = _segment(onnx, voc, out)
    wait_for_files(out, "*.png", KILL_AFTER, job, RUN_S)
    os.kill(job.pid, signal.SIGKILL)
    killed = time.monotonic()
    job.wait(30)
    written = len(list(out.glob("*.png")))
    assert written < IMAGES, "the run ended before the kill"
    rerun = _segment(onnx, voc, out)
    output, _ = rerun.communicate(timeout=RUN_S)
    assert rerun.returncode == 0, output
    # the killed driver's actors may finish the batch in hand: at least `written` are skipped
    done = re.search(r"(\d+) processed, (\d+) skipped \(labels already there\), 0 failed",
                     output)
    assert done, output
    assert int(done[1]) + int(done[2]) == IMAGES and int(done[2]) >= written, output
    names = sorted(p.name for p in clean.glob("*.png"))
    assert len(names) == IMAGES
    assert sorted(p.name for p in out.iterdir()) == sorted(names + [MANIFEST])  # nothing partial
    for name in names:
        assert (out / name).read_bytes() == (clean / name).read_bytes(), name
    # The killed driver's actors exit at once; Ray's dashboard and runtime-env agents notice
    # their driver is gone after about a minute (measured: 63 s).
    while _ray_pids() - before and time.monotonic() < killed + 120:
        time.sleep(1)
    assert not _ray_pids() - before, "Ray processes outlived the killed driver"
