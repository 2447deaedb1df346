"""The model.py serve writes (serving/triton_model.py), with a stand-in pb_utils: requests of
any size in one execute run as one padded batch per bucket; each bad one gets its own
one-line error (HTTP 400) and never fails its batch-mates."""
import numpy as np
import pytest
from google.protobuf import json_format, text_format
from pb_utils_stub import MetricFamily, Tensor, TritonError, load_model

from fcn_deploy.runtime.factory import open_segmenter
from fcn_deploy.runtime.memory import HEADROOM, estimate_peak
from fcn_deploy.serving.buckets import Bucket
from fcn_deploy.serving.server import ServeOptions, write_repository

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")


@pytest.fixture(scope="module")
def seg(tiny_onnx):
    seg = open_segmenter(tiny_onnx, threads=1).load()
    yield seg
    seg.close()


def served(monkeypatch, tmp_path, seg, **options):
    """model.py of the repository serve writes for ``seg`` (buckets 32x48, 64x96), loaded."""
    opts = ServeOptions(name="m", max_batch=4, instances=1, threads=1, **options)
    repo = write_repository(tmp_path, seg, opts, [Bucket(32, 48, 4), Bucket(64, 96, 4)])
    config = text_format.Parse((repo / "m" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert config.input[0].allow_ragged_batch  # Triton batches requests of any size
    config = json_format.MessageToDict(config, preserving_proto_field_name=True)
    return load_model(monkeypatch, repo / "m" / "1" / "model.py", config)


@pytest.fixture
def model(monkeypatch, tmp_path, seg):
    model = served(monkeypatch, tmp_path, seg)
    yield model
    model.finalize()


def request(*shape):
    rng = np.random.default_rng(sum(shape))
    return {"image": Tensor("image", rng.integers(0, 256, shape, np.uint8))}


def test_mixed_sizes_share_bucketed_batches_and_bad_requests_fail_alone(model, seg):
    good = [request(2, 32, 48, 3), request(1, 30, 40, 3), request(1, 64, 96, 3)]
    bad = [request(1, 0, 32, 3), request(1, 65, 97, 3)]
    batches, run = [], model.run
    model.run = lambda b: batches.append(b.shape) or run(b)
    counted = dict(MetricFamily.counts)
    responses = model.execute([good[0], bad[0], good[1], bad[1], good[2]])
    key = ("fcn_deploy_failed_requests", (("model", "m"),))  # serve's summary reads it
    assert MetricFamily.counts[key] - counted.get(key, 0) == 2
    padded = model.pads(30, 40, Bucket(32, 48, 4))  # measured once, on noise images
    assert sorted(batches) == ([(1, 64, 96, 3), (3, 32, 48, 3)] if padded else
                               [(1, 30, 40, 3), (1, 64, 96, 3), (2, 32, 48, 3)])
    for response, req in zip([responses[0], responses[2], responses[4]], good):
        image = req["image"].as_numpy()
        assert response.error is None
        agree = (response.outputs["labels"] == seg.predict(image)).mean()
        assert agree == 1.0 or padded and agree >= 0.999
    for response, needle in zip([responses[1], responses[3]],
                                ["0x32 is empty", "65x97 is larger than every bucket"]):
        assert response.error.code == TritonError.INVALID_ARG and needle in str(response.error)
        assert "\n" not in str(response.error)


def test_a_batch_the_runtime_fails_is_retried_request_by_request(model):
    run = model.run
    model.run = lambda b: run(b) if b.shape[1] != 64 else 1 / 0
    responses = model.execute([request(1, 32, 48, 3), request(1, 64, 96, 3)])
    assert responses[0].error is None and responses[0].outputs["labels"].shape == (1, 32, 48)
    assert responses[1].error.code == TritonError.INTERNAL
    assert str(responses[1].error) == "ZeroDivisionError: division by zero"


def test_an_image_beyond_the_memory_budget_is_refused_and_big_batches_run_in_parts(
        monkeypatch, tmp_path, seg):
    need = estimate_peak(seg.meta, 1, 64, 96)  # measured at export
    assert need
    model = served(monkeypatch, tmp_path, seg, max_memory=int(need / HEADROOM / 2))
    batches, whole = [], model.whole
    model.whole = lambda b: batches.append(b.shape) or whole(b)
    big, small = request(1, 64, 96, 3), request(3, 32, 48, 3)  # 3 x 1/4 of the big one's need
    responses = model.execute([big, small])
    assert responses[0].error.code == TritonError.INVALID_ARG
    assert "image 64x96 needs" in str(responses[0].error)
    assert "more than this server's memory budget (--max-memory" in str(responses[0].error)
    assert responses[1].error is None
    assert np.array_equal(responses[1].outputs["labels"], seg.predict(small["image"].as_numpy()))
    assert batches == [(1, 32, 48, 3), (2, 32, 48, 3)]  # halves within the budget
    model.finalize()
