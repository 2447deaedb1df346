import random
import threading
import time

import pytest

from fcn_deploy.errors import FcnDeployError
from fcn_deploy.runtime.pipeline import FrameResult, PipelineStats, Stage, run_pipeline


def sleeper(seconds, fn=lambda x: x):
    def stage(x):
        time.sleep(seconds)
        return fn(x)
    return stage


def test_results_keep_input_order_behind_a_pool_with_random_delays():
    rng = random.Random(0)
    delays = [rng.uniform(0, 0.005) for _ in range(40)]
    seen, threads = [], set()

    def serial(x):
        seen.append(x)
        threads.add(threading.current_thread().name)
        return x + 1

    def jittery(i):
        time.sleep(delays[i])
        return i * 2

    stages = [Stage("pool", jittery, workers=4), Stage("serial", serial)]
    results = list(run_pipeline(range(40), stages, depth=8))
    assert [r.index for r in results] == list(range(40))
    assert [r.item for r in results] == list(range(40))
    assert [r.value for r in results] == [i * 2 + 1 for i in range(40)]
    assert all(r.ok and set(r.seconds) == {"pool", "serial"} for r in results)
    # The single-worker stage (one inference session, one video writer) sees input order.
    assert seen == [i * 2 for i in range(40)]
    assert len(threads) == 1 and threads.pop().startswith("serial")


def test_the_source_is_pulled_lazily_within_the_depth():
    depth, pulled, at_yield = 3, [0], []

    def source():
        for i in range(12):
            pulled[0] += 1
            yield i

    for yielded, _ in enumerate(run_pipeline(source(), [Stage("s", sleeper(0.002))], depth)):
        at_yield.append((pulled[0], yielded))
    assert all(n <= depth + yielded for n, yielded in at_yield)
    assert at_yield[0] == (depth, 0)  # the window fills before the first result
    assert len(at_yield) == 12


def test_stages_overlap():
    stages = [Stage(name, sleeper(0.02)) for name in ("decode", "infer", "post")]
    start = time.perf_counter()
    results = list(run_pipeline(range(10), stages))
    wall = time.perf_counter() - start
    assert len(results) == 10 and all(r.ok for r in results)
    assert wall < 0.45  # sequential would be 0.6 s; overlapped about 0.24 s


def test_a_failed_item_is_reported_and_the_others_go_on():
    post_calls = []

    def decode(i):
        if i == 3:
            raise ValueError("corrupt frame")
        return i

    def post(x):
        post_calls.append(x)
        return -x

    results = list(run_pipeline(range(6), [Stage("decode", decode, 2), Stage("post", post)]))
    bad = results[3]
    assert not bad.ok and bad.value is None
    assert bad.error.startswith("decode: ") and "corrupt frame" in bad.error
    assert set(bad.seconds) == {"decode"}
    assert post_calls == [0, 1, 2, 4, 5]
    assert [r.value for r in results if r.ok] == [0, -1, -2, -4, -5]


def test_an_uncaught_stage_error_propagates():
    def lookup(i):
        if i == 2:
            raise KeyError(i)
        return i

    with pytest.raises(KeyError):
        list(run_pipeline(range(10), [Stage("lookup", lookup)], catch=(ValueError,)))


def test_a_source_error_propagates():
    def camera():
        yield from range(3)
        raise RuntimeError("camera lost")

    with pytest.raises(RuntimeError, match="camera lost"):
        list(run_pipeline(camera(), [Stage("s", lambda x: x)]))


def test_closing_early_stops_the_workers():
    calls = []

    def slow(i):
        calls.append(i)
        time.sleep(0.01)
        return i

    results = run_pipeline(range(100), [Stage("slow", slow), Stage("tail", lambda x: x, 2)])
    for count, _ in enumerate(results, 1):
        if count == 2:
            break
    results.close()
    done = len(calls)
    time.sleep(0.1)
    assert len(calls) == done < 20
    assert not [t for t in threading.enumerate() if t.name.startswith(("slow", "tail"))]


@pytest.mark.parametrize("depth, workers, match", [(0, 1, "depth"), (4, 0, "worker")])
def test_bad_depth_or_workers_are_refused(depth, workers, match):
    with pytest.raises(FcnDeployError, match=match):
        run_pipeline(range(3), [Stage("s", lambda x: x, workers)], depth)


def test_stats_summary():
    stats = PipelineStats()
    stats.started = time.perf_counter() - 2.0
    for i in range(4):
        seconds = {"decode": 0.01} if i == 1 else {"decode": 0.01, "infer": 0.08}
        stats.add(FrameResult(i, i, error="decode: bad" if i == 1 else None, seconds=seconds))
    assert stats.frames == 4 and stats.failed == 1
    assert stats.mean_ms() == pytest.approx({"decode": 10.0, "infer": 80.0})
    assert stats.summary() == ("4 frames in 2.0 s: 2.0 frames/s, 1 failed; "
                               "per frame: decode 10.0 ms, infer 80.0 ms")
