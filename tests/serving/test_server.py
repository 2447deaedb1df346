"""`fcn-deploy serve` as a real Triton server: labels equal to one-by-one inference for sizes
of every bucket, clear errors for bad requests (the server keeps serving), a bounded
concurrent load, and a clean exit on SIGINT. The last test stops the module's server."""
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from fcn_deploy.runtime.factory import open_segmenter

http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

SIZES = [(32, 48), (48, 64), (64, 96)]  # exactly the buckets: labels must be identical


@pytest.fixture(scope="module")
def reference(tiny_onnx):
    """One-by-one labels of ``tiny_onnx`` (the Segmenter runtime, in this venv)."""
    seg = open_segmenter(tiny_onnx, threads=1).load()
    yield lambda image: seg.predict(image[None])[0]
    seg.close()


def images(count: int, sizes=SIZES, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*sizes[i % len(sizes)], 3), np.uint8) for i in range(count)]


def infer(url: str, name: str, image: np.ndarray, dtype: str = "UINT8") -> np.ndarray:
    """The labels for one request of ``image`` (given with its batch dimension or without)."""
    batch = image[None] if image.ndim == 3 else image
    inp = http.InferInput("image", list(batch.shape), dtype)
    inp.set_data_from_numpy(batch)
    # closed: an open keep-alive connection delays Triton's exit by its timeout
    with closing(http.InferenceServerClient(url)) as client:
        labels = client.infer(name, [inp]).as_numpy("labels")
    return labels[0] if image.ndim == 3 else labels


def test_labels_equal_one_by_one_inference_for_three_sizes(server, reference):
    for image in images(3):
        got = infer(server.url, server.name, image)
        assert got.dtype == np.uint8 and got.shape == image.shape[:2]
        assert np.array_equal(got, reference(image))
    assert len(np.unique(reference(images(1)[0]))) > 1  # random init: labels say something


def test_config_carries_the_artifacts_metadata(server):
    with closing(http.InferenceServerClient(server.url)) as client:
        config = client.get_model_config(server.name)
    params = {k: v["string_value"] for k, v in config["parameters"].items()}
    assert json.loads(params["class_names"])[:1] == ["background"]
    assert len(json.loads(params["class_names"])) == 7 and len(json.loads(params["mean"])) == 3
    assert params["arch"] == "fcn8s-vgg16" and params["output_mode"] == "logits"
    assert params["precision"] == "fp32" and params["input_format"] == "float"
    assert params["input_convention"] == "imagenet"
    assert params["buckets"] == "32x48,48x64,64x96"  # conftest
    assert [o["name"] for o in config["output"]] == ["labels"]


def test_sizes_between_buckets_are_padded_and_cropped(server, reference):
    for image in images(3, sizes=[(30, 40), (45, 50), (60, 90)], seed=1):
        got = infer(server.url, server.name, image)
        assert got.shape == image.shape[:2]
        assert (got == reference(image)).mean() >= 0.999  # padded only where that holds


BAD = {
    "FP32": (np.zeros((1, 32, 32, 3), np.float32), "FP32", "UINT8"),
    "2-D": (np.zeros((4, 32), np.uint8), "UINT8", "unexpected shape"),  # 4 <= max batch
    "zero-size": (np.zeros((1, 0, 32, 3), np.uint8), "UINT8", "empty"),
    "too large": (np.zeros((1, 65, 97, 3), np.uint8), "UINT8", "larger than every bucket"),
    "4-channel": (np.zeros((1, 32, 32, 4), np.uint8), "UINT8", "unexpected shape"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_get_errors_naming_the_problem(server, case):
    image, dtype, needle = BAD[case]
    with pytest.raises(InferenceServerException) as e:
        infer(server.url, server.name, image, dtype)
    assert needle in str(e.value)
    assert "Traceback" not in str(e.value) and "\n" not in str(e.value).strip()


def test_the_server_keeps_serving_after_bad_requests(server, reference):
    good = images(20, seed=2)
    for image in good:
        assert np.array_equal(infer(server.url, server.name, image), reference(image))


def test_concurrent_mixed_sizes_are_all_answered(server, reference):
    good = images(40, seed=3)  # 8 threads x 5 requests
    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        labels = list(pool.map(lambda im: infer(server.url, server.name, im), good))
    assert time.monotonic() - start < 60
    assert all(np.array_equal(got, reference(im)) for got, im in zip(labels, good))


def test_bad_requests_among_concurrent_good_ones_fail_alone(server, reference):
    good = images(24, seed=4)  # the buckets' own sizes: labels identical
    bad = [np.zeros((65, 97, 3), np.uint8), np.zeros((0, 32, 3), np.uint8)] * 4
    requests = [(im, None) for im in good] + [(im, "bad") for im in bad]
    order = np.random.default_rng(4).permutation(len(requests))

    def outcome(item):
        try:
            return infer(server.url, server.name, item[0])
        except InferenceServerException as e:
            return e

    with ThreadPoolExecutor(16) as pool:  # bad ones share executions with good ones
        results = list(pool.map(outcome, [requests[i] for i in order]))
    for k, i in enumerate(order):
        image, kind = requests[i]
        if kind is None:
            assert np.array_equal(results[k], reference(image))
        else:
            assert isinstance(results[k], InferenceServerException), results[k]
            needle = "is empty" if image.size == 0 else "larger than every bucket"
            assert needle in str(results[k]) and "\n" not in str(results[k]).strip()


def test_sigint_stops_cleanly_after_printing_the_endpoints(server):
    start = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - start < 20
    out = server.stdout.read_text()
    for line in (f"model:   {server.name}  http://127.0.0.1:{server.http_port}/v2/models/"
                 f"{server.name}",
                 f"grpc:    127.0.0.1:{server.grpc_port}",
                 f"metrics: http://127.0.0.1:{server.metrics_port}/metrics",
                 "exposed: this machine only (loopback)",
                 # the model's own refusals: 2 of BAD, 8 among good ones (Triton refuses 3)
                 "; 10 requests answered with an error"):
        assert line in out, out
    # tritonserver's own lines (E-level ones about CUDA on a CPU-only start among them) go to
    # the log file it names, not the console
    assert not re.search(r"^[EWI]\d{4} ", out, re.M), out
    log = Path(re.search(r"log: +(\S+) \(tritonserver's own lines\)", out).group(1))
    assert f"successfully loaded '{server.name}'" in log.read_text()
