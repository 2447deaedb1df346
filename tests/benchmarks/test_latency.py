"""The one latency measurement of bench, cpu_backends and the frame loop: contenders timed in
turn round by round, speeds as the median of per-round ratios."""
import json

import pytest
from helpers import export_tiny, run

from fcn_deploy.benchmarks.latency import Contender, in_turn, interleave, ratio_of_rounds


def test_measures_take_turns_round_by_round():
    calls = []
    values = in_turn([lambda: calls.append("a") or 1, lambda: calls.append("b") or 2], 3)
    assert calls == ["a", "b"] * 3 and values == [[1, 1, 1], [2, 2, 2]]


def test_a_busy_round_slows_both_and_leaves_the_ratio():
    ref, other = [10, 30, 10], [20, 60, 20]  # round 2: the machine was busy for both
    assert ratio_of_rounds(ref, other) == pytest.approx(0.5)
    assert ratio_of_rounds(ref, ref) == 1


def test_interleave_splits_the_runs_over_rounds():
    order = []
    contenders = [Contender(lambda k=k: order.append(k) or 1.0, 1.0, {}) for k in "ab"]
    interleave(contenders, warmup=1, iters=5, rounds=3)
    assert order == ["a", "a", "b", "b", "a", "a", "b", "b", "a", "b"]
    assert [len(r) for r in contenders[0].rounds] == [2, 2, 1] and contenders[0].times == [1.0] * 5
    interleave(contenders[:1], warmup=1, iters=2, rounds=3)  # no more rounds than runs
    assert len(contenders[0].rounds) == 3 + 2


def test_bench_rows_of_a_shape_are_timed_in_turn(tmp_path):
    model = export_tiny(tmp_path / "m.onnx")
    out = tmp_path / "r"
    result = run("bench", model, "--out", out, "--sizes", "48", "--iters", "4", "--rounds", "2",
                 "--warmup", "1", "--static")
    assert result.exit_code == 0, result.output
    rows = [r for r in json.loads((out / "bench.json").read_text())["latency"]
            if not r["mode"].startswith("2nd load")]  # a second load is timed alone
    assert [r["mode"] for r in rows if r["backend"] == "onnxruntime"] == ["whole", "static"]
    for row in rows:
        assert row["rounds"] == 2 and len(row["round_p50_ms"]) == 2 and row["iterations"] == 4
    assert rows[0]["speed_vs_first"] == 1
    assert rows[1]["speed_vs_first"] == pytest.approx(ratio_of_rounds(
        rows[0]["round_p50_ms"], rows[1]["round_p50_ms"]))
