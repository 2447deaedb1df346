"""A labels+score artifact served: both outputs, equal to the Segmenter's own, for requests
of two sizes with two images each (no buckets: each size its own batch)."""
import numpy as np
import pytest

from fcn_deploy.runtime.factory import open_segmenter

http = pytest.importorskip("tritonclient.http")


def test_labels_and_score_equal_the_runtime(score_server, score_onnx):
    client = http.InferenceServerClient(score_server.url)
    config = client.get_model_config("seg")
    assert [(o["name"], o["data_type"]) for o in config["output"]] == [
        ("labels", "TYPE_UINT8"), ("score", "TYPE_FP32")]
    seg = open_segmenter(score_onnx, threads=1)
    rng = np.random.default_rng(0)
    for h, w in [(40, 50), (57, 33)]:
        batch = rng.integers(0, 256, (2, h, w, 3), np.uint8)
        inp = http.InferInput("image", list(batch.shape), "UINT8")
        inp.set_data_from_numpy(batch)
        result = client.infer("seg", [inp])
        ref = seg.run(seg.preprocess(batch))
        assert np.array_equal(result.as_numpy("labels"), ref["labels"])
        assert np.allclose(result.as_numpy("score"), ref["score"], atol=1e-6)
    seg.close()
    client.close()  # an open keep-alive connection delays Triton's exit by its timeout
