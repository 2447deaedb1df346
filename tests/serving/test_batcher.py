"""The server's Batcher without a server: jobs from several instances within the window run
as one padded batch per bucket; bad images fail at submit, alone."""
import threading

import numpy as np
import pytest

from fcn_deploy.serving.buckets import BadImageError, Bucket
from fcn_deploy.serving.server import Batcher, Instance


def fake_run(calls):
    def run(batch):
        calls.append(batch.shape)
        return {"labels": batch[..., 0].copy()}
    return run


def test_jobs_of_different_sizes_from_two_instances_share_one_batch():
    calls = []
    batcher = Batcher(fake_run(calls), [Bucket(64, 64, 8)], np.uint8([0, 0, 0]), 8, expect=2,
                      window_s=5.0)  # long window: the second job always arrives within it
    a, b = np.full((30, 40, 3), 1, np.uint8), np.full((64, 64, 3), 2, np.uint8)
    results = {}
    threads = [threading.Thread(target=lambda k, im: results.update(
        {k: batcher.submit([im]).result(10)}), args=(k, im)) for k, im in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    batcher.close()
    assert calls == [(2, 64, 64, 3)]
    assert results["a"][0]["labels"].shape == (30, 40) and (results["a"][0]["labels"] == 1).all()
    assert (results["b"][0]["labels"] == 2).all()
    assert (batcher.images, batcher.batches) == (2, 1)


def test_a_bad_image_fails_at_submit_and_the_batcher_keeps_running():
    calls = []
    batcher = Batcher(fake_run(calls), [Bucket(16, 16, 4)], np.uint8([0, 0, 0]), 4, expect=1)
    with pytest.raises(BadImageError, match="larger than every bucket"):
        batcher.submit([np.zeros((17, 4, 3), np.uint8)])
    out = Instance(batcher, ["labels"])([{"image": np.ones((2, 8, 8, 3), np.uint8)}])
    batcher.close()
    assert out[0]["labels"].shape == (2, 8, 8) and calls == [(2, 16, 16, 3)]


def test_runtime_errors_reach_every_waiting_job():
    def broken(batch):
        raise RuntimeError("the runtime broke")
    batcher = Batcher(broken, [], np.uint8([0, 0, 0]), 4, expect=1)
    with pytest.raises(RuntimeError, match="the runtime broke"):
        batcher.submit([np.zeros((4, 4, 3), np.uint8)]).result(10)
    batcher.close()
