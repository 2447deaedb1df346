"""CPU runtimes x precisions interleaved in one run: real tiny ONNX files in onnxruntime and
OpenVINO, the reference row, the quality columns and the report."""
import json
import statistics

import numpy as np
import pytest
from helpers import export_tiny

from fcn_deploy.benchmarks.cpu_backends import cpu_backends, markdown, write_results
from fcn_deploy.data import open_dataset
from fcn_deploy.errors import FcnDeployError
from fcn_deploy.runtime.ort_segmenter import OrtSegmenter

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cpu-backends")
    return [export_tiny(folder / "m.onnx"),
            export_tiny(folder / "m_int8.onnx", "--precision", "int8", "--calib-samples", 2,
                        "--eval-samples", 0)]


def test_every_backend_and_precision_against_onnxruntime_fp32(files, tmp_path):
    data = open_dataset("synthetic", "val", 48, 4)
    result = cpu_backends(files, [(48, 64), (40, 40)], threads=1, rounds=2, iters=1,
                          backends=("onnxruntime", "openvino"), data=data, log=lambda line: None)
    rows = result["rows"]
    assert [(r["height"], r["backend"], r["precision"]) for r in rows][:4] == [
        (48, "onnxruntime", "fp32"), (48, "openvino", "fp32"),
        (48, "onnxruntime", "int8 s8s8"), (48, "openvino", "int8 s8s8")]
    assert len(rows) == 8 and all(len(r["per_round_ms"]) == 2 for r in rows)
    reference = rows[0]
    assert reference["speed_vs_reference"] == 1.0 and reference["exact_agreement"] is None
    for row in rows[1:4]:
        ratios = [r / t for r, t in zip(reference["per_round_ms"], row["per_round_ms"])]
        assert row["speed_vs_reference"] == pytest.approx(statistics.median(ratios))
        assert row["p50_ms"] == pytest.approx(statistics.median(row["per_round_ms"]))
    assert rows[1]["agreement"] == 1.0  # FP32 labels are identical in both runtimes
    assert 0 <= reference["mean_iu"] <= 1
    for row in rows[2:4]:  # INT8: against FP32 labels and the file's exact arithmetic
        assert 0.5 < row["agreement"] <= 1 and 0.5 < row["exact_agreement"] <= 1
        assert row["mean_iu_change"] == pytest.approx(row["mean_iu"] - reference["mean_iu"])
    assert all(r["gflops_per_s"] > 0 and r["of_peak"] > 0 for r in rows)
    written = write_results(result, tmp_path)
    assert [p.name for p in written] == ["cpu_backends.json", "cpu_backends.md"]
    assert len(json.loads(written[0].read_text())["rows"]) == 8
    assert "| 48 | 64 | m_int8.onnx | openvino | int8 s8s8 |" in markdown(result)


def test_without_an_fp32_file_there_is_no_reference_and_backends_are_checked(files):
    with pytest.raises(FcnDeployError, match="needs an FP32 ONNX file"):
        cpu_backends(files[1:], [(32, 32)], threads=1, rounds=1, iters=1, log=lambda line: None)
    with pytest.raises(FcnDeployError, match="unknown backend 'tvm'"):
        cpu_backends(files, [(32, 32)], threads=1, backends=("tvm",), log=lambda line: None)


def test_exact_reference_runs_the_graph_unoptimized(files):
    # FP32: optimizations only fuse and reorder, so the unoptimized run gives the same logits.
    x = np.random.default_rng(0).normal(size=(1, 3, 40, 56)).astype(np.float32)
    with OrtSegmenter(files[0]) as fast, OrtSegmenter(files[0], optimize=False) as plain:
        np.testing.assert_allclose(plain.infer(x), fast.infer(x), atol=1e-4)
