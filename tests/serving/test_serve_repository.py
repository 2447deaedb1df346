"""`fcn-deploy serve REPO/` serves an export-triton repository (Python backend) as `serve
ARTIFACT` does: its models answer, SIGINT stops it with a summary, and with --verbose
tritonserver's lines are prefixed, apart from serve's own."""
import re

import numpy as np
import pytest

from fcn_deploy.exporters.triton import export_triton
from fcn_deploy.runtime.ort_segmenter import OrtSegmenter

http = pytest.importorskip("tritonclient.http")


def test_serve_a_python_backend_repository(tiny_onnx, tmp_path, launch):
    repo = tmp_path / "repo"
    export_triton(tiny_onnx, repo, "seg", max_batch_size=4, kind="cpu", backend="python")
    server = launch(repo, tmp_path, name="seg_labels", verbose=True)
    try:
        seg = OrtSegmenter(tiny_onnx)
        image = np.random.default_rng(0).integers(0, 256, (2, 40, 56, 3), np.uint8)
        x = seg.preprocess(image)
        tensor = http.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        client = http.InferenceServerClient(server.url)
        labels = client.infer("seg_labels", [tensor]).as_numpy("labels")
        client.close()  # an open keep-alive connection would hold up the server's exit
        assert np.array_equal(labels, seg.predict(image))
    finally:
        assert server.stop() == 0
    out = server.stdout.read_text()
    assert f"serving {repo} (3 models)" in out
    for model in ("seg", "seg_argmax", "seg_labels"):
        assert f"model:   {model}  http://127.0.0.1:{server.http_port}/v2/models/{model}" in out
    assert "exposed: this machine only (loopback)" in out
    # the ensemble's request ran both its steps: 2 images each, in 2 executions
    assert "stopped; answered 6 images in 3 batches" in out, out
    lines = out.splitlines()
    assert any(re.match(r"tritonserver\| I\d{4} ", line) for line in lines)
    assert not [line for line in lines if re.match(r"[EWI]\d{4} ", line)]  # none unprefixed
    log = re.search(r"log: +(\S+) \(tritonserver's own lines\)", out).group(1)
    assert "successfully loaded 'seg'" in open(log).read()
