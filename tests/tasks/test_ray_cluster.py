"""segment-dataset on a real two-node Ray cluster on this machine (`ray start --head`, then a
second node joining it, both on 127.0.0.1 with token authentication), losing the second node's
raylet mid-run: the job still finishes, every label map is written once, and the metrics equal
single-process eval's. Both nodes are stopped by the fixture."""
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import run, wait_for_files

from fcn_deploy.data.voc import write_voc_fixture
from fcn_deploy.serving.tritonserver import free_ports
from fcn_deploy.tasks.segment_dataset import MANIFEST

pytest.importorskip("ray")
RAY = Path(sys.executable).parent / "ray"
IMAGES, KILL_AFTER, RUN_S = 48, 6, 240


def _raylets() -> set[int]:
    found = subprocess.run(["pgrep", "-f", "ray/raylet/raylet"], capture_output=True, text=True)
    return {int(p) for p in found.stdout.split()}


@pytest.fixture()
def cluster(tmp_path):
    """(address, environment, pid of the second node's raylet) of a running two-node cluster."""
    if shutil.which("pgrep") is None:
        pytest.skip("pgrep is needed to find the second node's raylet")
    (port,) = free_ports(1)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    # short: Ray's unix sockets live under it (108 characters at most)
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    before = _raylets()
    try:
        subprocess.run([RAY, "start", "--head", "--port", str(port), "--include-dashboard=false",
                        "--temp-dir", temp, *common], env=env, check=True,
                       capture_output=True, timeout=120)
        head = _raylets() - before
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", *common], env=env,
                       check=True, capture_output=True, timeout=120)
        second = _raylets() - before - head
        assert len(second) == 1, (head, second)
        yield f"127.0.0.1:{port}", env, second.pop()
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_segment_dataset_survives_losing_a_node(cluster, tmp_path):
    address, env, raylet = cluster
    onnx = tmp_path / "m.onnx"
    assert run("export", "--random-init", "--arch", "fcn8s-vgg16", "--width", "0.25",
               "--num-classes", "7", "-o", onnx).exit_code == 0
    voc = write_voc_fixture(tmp_path / "voc", n_train=1, n_val=IMAGES, size=(300, 400),
                            num_classes=7)
    out = tmp_path / "labels"
    cmd = [sys.executable, "-m", "fcn_deploy.cli", "segment-dataset", str(onnx), str(voc),
           "--out", str(out), "--workers", "2", "--batch-size", "2", "--address", address,
           "--json", str(tmp_path / "s.json")]
    job = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    written_before = wait_for_files(out, "*.png", KILL_AFTER, job, RUN_S)
    print(f"killed the second node's raylet with {written_before} of {IMAGES} label maps written")
    os.kill(raylet, 9)  # the second node is gone, with its actor and the blocks it held
    output, _ = job.communicate(timeout=RUN_S)
    assert job.returncode == 0, output
    assert written_before < IMAGES, "the job ended before the node was lost"
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["processed"], summary["skipped"], summary["failed"]) == (IMAGES, 0, 0)
    names = sorted(p.name for p in out.iterdir())
    labels = [f"{i:06d}.png" for i in range(1, IMAGES + 1)]
    assert names == sorted(labels + [MANIFEST])  # no partial or temporary files
    assert json.loads((out / MANIFEST).read_text())["labels"] == labels
    ref = run("eval", onnx, "--data", voc, "--json", tmp_path / "ref.json")
    assert ref.exit_code == 0, ref.output
    expected = json.loads((tmp_path / "ref.json").read_text())["results"][str(onnx)]
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fwavacc"):
        assert summary["metrics"][key] == pytest.approx(expected[key], abs=1e-12)
