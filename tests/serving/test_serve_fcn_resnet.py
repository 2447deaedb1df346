"""A width-1/8 FCN-ResNet50 served by a real `fcn-deploy serve` (the serve venv's tritonserver,
loopback, free ports, bounded waits, stopped here): the FP32 ONNX file with shape buckets, and
its rgb8-in / labels-out export without; mixed-size requests get the labels onnxruntime gives
one by one, and the config carries the family's metadata (VOC names, ImageNet mean/std)."""
import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from helpers import run

from fcn_deploy.contract.classes import VOC_CLASSES
from fcn_deploy.contract.conventions import IMAGENET_MEAN
from fcn_deploy.runtime.factory import open_segmenter

http = pytest.importorskip("tritonclient.http")

SIZES = [(97, 131), (160, 131)]  # exactly the buckets (they nest): labels must be identical


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    """{"float": the FP32 logits graph, "rgb8": uint8 frames in, labels out} of one random-init
    width-1/8 FCN-ResNet50 with VOC's 21 classes."""
    folder = tmp_path_factory.mktemp("resnet")
    common = ["--random-init", "--arch", "fcn-resnet50", "--width", "0.125", "--eval-samples",
              "0"]
    options = {"float": [], "rgb8": ["--input", "rgb8", "--output", "labels"]}
    files = {}
    for kind, extra in options.items():
        files[kind] = folder / f"fcn_resnet50_{kind}.onnx"
        result = run("export", *common, *extra, "-o", files[kind])
        assert result.exit_code == 0, result.output
    return files


def _infer(url: str, name: str, image: np.ndarray) -> np.ndarray:
    inp = http.InferInput("image", [1, *image.shape], "UINT8")
    inp.set_data_from_numpy(image[None])
    # closed: an open keep-alive connection delays Triton's exit by its timeout
    with closing(http.InferenceServerClient(url)) as client:
        return client.infer(name, [inp]).as_numpy("labels")[0]


def _config(url: str, name: str) -> dict:
    with closing(http.InferenceServerClient(url)) as client:
        config = client.get_model_config(name)
    return {k: v["string_value"] for k, v in config["parameters"].items()}


def _images(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), np.uint8) for h, w in SIZES]


def _one_by_one(path: Path, images) -> list[np.ndarray]:
    with open_segmenter(path, threads=1) as seg:
        return [seg.predict(image[None])[0] for image in images]


def test_mixed_size_requests_get_onnxruntimes_labels(onnx_files, tmp_path, launch):
    buckets = ",".join(f"{h}x{w}" for h, w in SIZES)
    server = launch(onnx_files["float"], tmp_path, "--name", "resnet", "--buckets", buckets,
                    "--instances", "2", "--max-batch", "4", "--threads", "1", name="resnet")
    url = server.url
    try:
        params = _config(url, "resnet")
        assert params["arch"] == "fcn-resnet50" and params["buckets"] == buckets
        assert json.loads(params["class_names"]) == list(VOC_CLASSES)
        assert json.loads(params["mean"]) == list(IMAGENET_MEAN)
        images = _images(0) * 2  # both sizes, twice, in flight together
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda im: _infer(url, "resnet", im), images))
    finally:
        code = server.stop()
    assert code == 0  # SIGINT: a clean exit
    want = _one_by_one(onnx_files["float"], images)
    for labels, ref in zip(got, want):
        assert labels.dtype == np.uint8 and np.array_equal(labels, ref)
    assert len(np.unique(want[0])) > 1  # random init: the labels say something


def test_the_rgb8_labels_graph_serves_the_same_labels(onnx_files, tmp_path, launch):
    server = launch(onnx_files["rgb8"], tmp_path, "--name", "resnet_rgb8", "--instances", "1",
                    "--threads", "1", name="resnet_rgb8")
    url = server.url
    try:
        params = _config(url, "resnet_rgb8")
        assert (params["input_format"], params["output_mode"]) == ("rgb8", "labels")
        images = _images(1)
        got = [_infer(url, "resnet_rgb8", image) for image in images]
    finally:
        code = server.stop()
    assert code == 0
    for labels, ref, float_ref in zip(got, _one_by_one(onnx_files["rgb8"], images),
                                      _one_by_one(onnx_files["float"], images)):
        assert np.array_equal(labels, ref)
        assert (labels == float_ref).mean() >= 0.999  # the graph normalizes as the host does
