"""serve starts on a loaded machine: four model instances (four Python-backend stubs, each
opening its own runtime session) while a training run takes the CPUs; a start-up that still
fails is retried, and the model answers as onnxruntime does."""
import subprocess
import sys
from contextlib import closing

import numpy as np
import pytest

from fcn_deploy.runtime.factory import open_segmenter

http = pytest.importorskip("tritonclient.http")


def test_four_instances_start_beside_a_training_run(tiny_onnx, tmp_path, launch):
    train = subprocess.Popen(
        [sys.executable, "-m", "fcn_deploy.cli", "train", "--arch", "fcn8s-vgg16", "--width",
         "0.125", "--image-size", "96", "--samples", "4096", "--epochs", "1", "-o",
         str(tmp_path / "busy.safetensors")], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        server = launch(tiny_onnx, tmp_path, "--instances", "4", "--buckets", "32x48,48x64",
                        "--threads", "1")
        try:
            assert train.poll() is None, "the training run ended before the server started"
            image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)  # a bucket
            inp = http.InferInput("image", [1, *image.shape], "UINT8")
            inp.set_data_from_numpy(image[None])
            with closing(http.InferenceServerClient(server.url)) as client:
                labels = client.infer(server.name, [inp]).as_numpy("labels")[0]
        finally:
            assert server.stop() == 0
    finally:
        train.kill()
        train.wait()
    with open_segmenter(tiny_onnx, threads=1) as seg:
        assert np.array_equal(labels, seg.predict(image[None])[0])
    out = server.stdout.read_text()
    retries = out.count("warning: the Triton server did not start")
    print(f"start-up attempts beside training: {retries + 1}")
    assert retries < 3 and "ready; Ctrl-C or SIGTERM stops" in out, out
