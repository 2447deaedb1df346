"""The load generator against a real server: the bundled tritonserver serving an rgb8 model
through the Python backend (uint8 frames in, labels out through the ensemble)."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import export_tiny, run

from fcn_deploy.benchmarks.load import Endpoint, markdown, mixed_images, run_level, sweep
from fcn_deploy.errors import FcnDeployError
from fcn_deploy.exporters.triton import export_triton
from fcn_deploy.runtime.ort_segmenter import OrtSegmenter
from fcn_deploy.serving.tritonserver import Install, free_ports, stop, wait_ready

SERVE_VENV = os.environ.get("FCN_SERVE_VENV")
pytestmark = pytest.mark.skipif(not SERVE_VENV, reason="no serve venv (make test builds one)")
http = pytest.importorskip("tritonclient.http")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(URL, the rgb8 ONNX file) of a bundled tritonserver serving it as ``seg_labels``."""
    d = tmp_path_factory.mktemp("load")
    model = export_tiny(d / "m.onnx", "--input", "rgb8")
    export_triton(model, d / "repo", "seg", max_batch_size=4, kind="cpu", backend="python")
    install = Install.of(Path(SERVE_VENV) / "bin" / "python")
    ports, log = free_ports(3), d / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(install.command(d / "repo", install.backend_dir(d), ports),
                                stdout=out, stderr=subprocess.STDOUT, env=install.env())
    url = f"127.0.0.1:{ports[0]}"
    try:
        wait_ready(proc, url, ("seg", "seg_argmax", "seg_labels"), log)
        yield url, model
    finally:
        stop(proc)


def test_every_request_is_answered_with_the_runtime_labels(served):
    url, model = served
    endpoint = Endpoint.probe(url, "seg_labels")
    assert (endpoint.input, endpoint.batched) == ("input", True)
    images = mixed_images([(48, 64), (61, 83)], per_size=2)
    seg = OrtSegmenter(model)
    client = http.InferenceServerClient(url)
    try:
        for image in images:
            assert np.array_equal(endpoint.request(client, image), seg.predict(image[None])[0])
    finally:
        client.close()
    row = run_level(endpoint, images, concurrency=4, requests=12, seconds=60)
    assert (row["requests"], row["errors"]) == (12, 0)
    assert row["throughput"] > 0 and row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]


def test_sweep_report_and_errors_counted(served):
    url, _ = served
    rows = sweep(Endpoint.probe(url, "seg_labels"), mixed_images([(40, 40)], 1), levels=(1, 2),
                 requests=4, log=lambda line: None)
    assert [r["concurrency"] for r in rows] == [1, 2] and all(r["errors"] == 0 for r in rows)
    wrong = Endpoint(url, "seg_labels", "nope")  # a wrong input name: every request fails
    row = run_level(wrong, mixed_images([(40, 40)], 1), 2, requests=4)
    assert row["errors"] == 4 and "nope" in row["first_error"]
    text = markdown({"model": "seg_labels", "url": url, "sizes": ["40x40"], "requests": 4,
                     "seconds": 30, "rows": rows,
                     "machine": {"cpu": "x", "logical_cpus": 2, "threads": 1, "cpu_flags": [],
                                 "libraries": {}}})
    assert "| 2 |" in text and "infer/s" in text
    with pytest.raises(FcnDeployError, match="cannot reach model 'absent'"):
        Endpoint.probe(url, "absent")


def test_load_test_cli_writes_its_report(served, tmp_path):
    url, _ = served
    result = run("load-test", url, "-m", "seg_labels", "-o", tmp_path / "out", "--sizes",
                 "40,32x48", "--concurrency", "1,2", "--requests", "4")
    assert result.exit_code == 0, result.output
    assert "concurrency 2:" in result.output and "0 errors of 4" in result.output
    report = json.loads((tmp_path / "out" / "load.json").read_text())
    assert [r["concurrency"] for r in report["rows"]] == [1, 2]
    assert report["sizes"] == ["40x40", "32x48"] and (tmp_path / "out" / "load.md").is_file()
    bad = run("load-test", url, "-m", "absent", "-o", tmp_path / "bad")
    assert bad.exit_code == 1 and bad.output.startswith("error: cannot reach model 'absent'")
    assert not (tmp_path / "bad").exists()
