import json
import re

import pytest
from helpers import run

from fcn_deploy.benchmarks.bench import parse_torch_mode
from fcn_deploy.benchmarks.latency import model_flops, run_timings, summarize
from fcn_deploy.benchmarks.machine import cpu_info, gemm_peak_gflops
from fcn_deploy.contract.metadata import ArtifactMeta
from fcn_deploy.errors import FcnDeployError

AMORTIZATION_KEYS = {"model", "image_size", "patch_size", "stride", "patches", "fcn_ms",
                     "patch_sequential_ms", "patch_batched_ms", "speedup_sequential",
                     "speedup_batched", "flop_ratio", "max_abs_diff", "argmax_agreement"}
LATENCY_KEYS = {"artifact", "backend", "precision", "batch", "height", "width", "p50_ms", "p90_ms",
                "p99_ms", "mean_ms", "images_per_s", "mean_iu", "gflops_per_s", "size_mb"}



def test_percentiles_and_throughput():
    s = summarize([float(v) for v in range(1, 101)], batch=4)
    assert s["p50_ms"] == pytest.approx(50.5) and s["p90_ms"] == pytest.approx(90.1)
    assert s["p99_ms"] == pytest.approx(99.01) and s["mean_ms"] == pytest.approx(50.5)
    assert s["images_per_s"] == pytest.approx(4000 / 50.5) and s["iterations"] == 100


def test_fixed_count_and_time_budget():
    calls = []
    assert len(run_timings(lambda: calls.append(1) or 1.0, warmup=2, iters=5)) == 5
    assert len(calls) == 7
    # A zero budget still gives the minimum count.
    assert len(run_timings(lambda: 1.0, warmup=0, seconds=0.0, min_iters=3)) == 3


def test_flops_are_counted_from_the_metadata_without_weights():
    meta = ArtifactMeta(arch="fcn8s-vgg16", width=1.0, num_classes=21,
                        class_names=[f"c{i}" for i in range(21)], mean=[0.5] * 3, std=[0.5] * 3)
    # Full-width FCN-8s at 500x500: 363 GFLOP (multiply-adds counted as 2).
    assert model_flops(meta, (1, 3, 500, 500)) / 1e9 == pytest.approx(363.06, abs=0.01)
    assert model_flops(meta, (2, 3, 500, 500)) == 2 * model_flops(meta, (1, 3, 500, 500))


def test_machine_facts():
    info = cpu_info()
    assert info["logical_cpus"] >= 1 and isinstance(info["cpu_flags"], list)
    assert 1 < gemm_peak_gflops(n=256, seconds=0.05) < 1e6


def test_torch_modes():
    assert parse_torch_mode("fp16-cl-graph") == {"fp16": True, "channels_last": True,
                                                 "cuda_graph": True}
    assert parse_torch_mode("fp32-compile") == {"fp16": False, "compile": True}
    for bad in ("int8", "fp32-fast"):
        with pytest.raises(FcnDeployError, match="unknown torch mode"):
            parse_torch_mode(bad)


def test_bench_writes_json_markdown_and_plots(onnx_model, tmp_path):
    out = tmp_path / "report"
    result = run("bench", onnx_model, "--arch", "fcn32s-alexnet", "--width", "0.0625", "--out", out,
                 "--sizes", "64,48x80", "--batches", "1,2", "--iters", "2", "--warmup", "1",
                 "--data", "synthetic", "--samples", "4", "--image-size", "48", "--amortization",
                 "--backends", "onnxruntime",
                 "--amort-models", "alexnet:224", "--amort-sizes", "1000", "--amort-batch", "4")
    assert result.exit_code == 0, result.output
    assert "report:" in result.output
    bench = json.loads((out / "bench.json").read_text())
    assert ({"cpu", "cpu_flags", "threads", "cpu_fp32_peak_gflops", "libraries"}
            <= set(bench["machine"]))
    assert [r["backend"] for r in bench["amortization"]] == ["torch", "onnxruntime"]
    for row in bench["amortization"]:
        assert AMORTIZATION_KEYS <= set(row) and row["patches"] == 1
    assert len(bench["latency"]) == 8  # (torch model, ONNX) x 2 batches x 2 sizes
    for row in bench["latency"]:
        assert LATENCY_KEYS <= set(row) and row["p50_ms"] > 0 and row["iterations"] == 2
        assert row["load_s"] > 0 and row["first_run_ms"] > 0
    onnx_rows = [r for r in bench["latency"] if r["backend"] == "onnxruntime"]
    assert onnx_rows[0]["mean_iu"] is not None and onnx_rows[0]["size_mb"] > 0
    # The random --arch model predicts 21 classes: no mean IU on 7-class data, and it says so.
    torch_rows = [r for r in bench["latency"] if r["backend"] == "torch"]
    assert torch_rows[0]["mean_iu"] is None
    assert any("21 classes" in line for line in bench["skipped"])
    assert {(r["batch"], r["height"], r["width"]) for r in onnx_rows} == {
        (1, 64, 64), (1, 48, 80), (2, 64, 64), (2, 48, 80)}
    md = (out / "bench.md").read_text()
    assert "## Amortization" in md and "## Latency" in md and "p50 ms" in md
    for png in ("amortization.png", "latency.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, needle", [
    (["--sizes", "500,abc"], "malformed size"),
    (["--sizes", "500x"], "malformed size"),
    (["--batches", "0"], "--batches"),
    (["--torch-modes", "fp8"], "unknown torch mode"),
    (["--device", "tpu"], "'tpu' is not one of"),
    (["--amortization", "--amort-models", "mobilenet"], "unknown amortization model"),
    (["--amortization", "--amort-models", "vgg16:big"], "malformed amortization model"),
    (["--amortization", "--amort-backends", "tvm"], "unknown amortization backend"),
    (["--amortization", "--amort-backends", "torch-fp16"], "needs --device cuda"),
    (["--tile", "abc"], "malformed tile"),
    (["--tile", "48", "--overlap", "64"], "larger than the overlap"),
    (["--runtime-cache", "/etc/passwd"], "is a file; give a folder"),
    (["--backends", "tvm"], "unknown backend"),
])
def test_bench_bad_input_is_one_line_and_writes_nothing(onnx_model, tmp_path, args, needle):
    out = tmp_path / "report"
    result = run("bench", onnx_model, "--out", out, "--iters", "1", *args)
    assert result.exit_code == (1 if "is a file" in needle else 2), result.output  # 2: usage
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.output
    assert not out.exists()


def test_static_shape_and_tiled_variants_beside_the_whole_image(onnx_model, tmp_path):
    out = tmp_path / "report"
    result = run("bench", onnx_model, "--out", out, "--sizes", "64x96", "--iters", "2",
                 "--warmup", "1", "--static", "--tile", "48", "--overlap", "8",
                 "--backends", "onnxruntime")
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "bench.json").read_text())["latency"]
    assert [r["mode"] for r in rows] == ["whole", "static", "tiled 48x48+8"]
    assert all(r["height"] == 64 and r["width"] == 96 and r["p50_ms"] > 0 for r in rows)
    assert 0 <= rows[2]["agreement_vs_whole"] <= 1
    md = (out / "bench.md").read_text()
    assert "## Static shapes and tiling vs the whole image" in md
    assert ("static at N=1 64x96:" in result.output
            and "the whole-image dynamic speed" in result.output)


def test_static_engine_pairs_with_the_dynamic_engine_of_the_same_onnx():
    from fcn_deploy.benchmarks.report import variant_rows

    shape = {"batch": 1, "height": 500, "width": 500}
    shape["backend"] = "tensorrt"
    rows = [{"artifact": "dyn.engine", "mode": "whole", "pair": "ab12", "p50_ms": 3.0, **shape},
            {"artifact": "fixed.engine", "mode": "static", "pair": "ab12", "p50_ms": 2.0, **shape},
            {"artifact": "other.engine", "mode": "static", "pair": "cd34", "p50_ms": 1.0, **shape}]
    [row] = variant_rows(rows)
    assert row["artifact"] == "fixed.engine" and row["speedup"] == pytest.approx(1.5)


def test_bench_missing_artifact_and_file_as_out(onnx_model, tmp_path):
    result = run("bench", tmp_path / "nope.onnx", "--out", tmp_path / "r")
    assert result.exit_code == 1 and "does not exist" in result.output
    (tmp_path / "taken").write_text("x")
    result = run("bench", onnx_model, "--out", tmp_path / "taken")
    assert result.exit_code == 1 and "is a file" in result.output


def test_amortization_sizes_below_the_patch_are_listed_not_fatal(onnx_model, tmp_path):
    result = run("bench", "--out", tmp_path / "r", "--amortization",
                 "--amort-models", "alexnet:100", "--amort-backends", "torch")
    assert result.exit_code == 0, result.output
    bench = json.loads((tmp_path / "r" / "bench.json").read_text())
    assert bench["amortization"] == [] and "smaller than the 224x224 patch" in bench["skipped"][0]


TYPED = {"arch": "fcn32s-alexnet", "sizes": "64", "batches": "1", "torch_modes": "fp32",
         "amort_models": "alexnet", "amort_sizes": "224", "amort_backends": "torch"}


@pytest.mark.parametrize("options, needle", [
    ({"batches": "1,0"}, "--batches '1,0': give positive integers"),
    ({"amort_sizes": "224,x"}, "malformed --amort-sizes '224,x'"),
    ({"sizes": " , "}, "--sizes is empty"),
    ({"device": "tpu"}, "unknown device 'tpu'; choose cpu or cuda"),
    ({"arch": None}, "nothing to measure"),
    ({"artifacts": ["missing.onnx"]}, "missing.onnx does not exist"),
    ({"torch_modes": "fp8", "data": "/nonexistent"}, "unknown torch mode"),  # data opens last
])
def test_bench_config_from_cli_checks_every_option_before_opening_data(tmp_path, options, needle):
    from fcn_deploy.benchmarks.bench import BenchConfig

    with pytest.raises(FcnDeployError, match=re.escape(needle)):
        BenchConfig.from_cli(**{**TYPED, "out": tmp_path / "r", **options})
    assert not (tmp_path / "r").exists()


def test_bench_config_from_cli_parses_the_options_as_typed(tmp_path):
    from fcn_deploy.benchmarks.bench import BenchConfig

    cfg = BenchConfig.from_cli(**{**TYPED, "arch": "fcn8s-vgg16", "sizes": "64,48x80",
                                  "batches": "1,2", "torch_modes": "fp32,,fp16-cl",
                                  "amort_models": "alexnet:224/500,vgg16"},
                               data="synthetic", samples=3, image_size=32, out=tmp_path / "r")
    assert cfg.random_arch == "fcn8s-vgg16" and cfg.sizes == [(64, 64), (48, 80)]
    assert cfg.batches == [1, 2] and cfg.torch_modes == ["fp32", "fp16-cl"]
    assert cfg.amortization_jobs() == [("alexnet", [224, 500]), ("vgg16", [224])]
    assert len(cfg.data) == 3 and not (tmp_path / "r").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(FcnDeployError, match="is a file; give a folder"):
        BenchConfig.from_cli(**TYPED, out=tmp_path / "file")


def test_onnx_files_run_in_every_cpu_backend_side_by_side(onnx_model, tmp_path):
    pytest.importorskip("openvino")
    out = tmp_path / "report"
    result = run("bench", onnx_model, "--out", out, "--sizes", "64", "--iters", "2",
                 "--warmup", "1", "--data", "synthetic", "--samples", "2", "--image-size", "48")
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "bench.json").read_text())["latency"]
    assert [(r["backend"], r["mode"]) for r in rows] == [
        ("onnxruntime", "whole"), ("openvino", "whole"),
        ("openvino", "2nd load, compiled-model cache")]
    assert rows[0]["mean_iu"] == rows[1]["mean_iu"]  # the same labels in both runtimes
    assert all(r["load_s"] > 0 for r in rows)  # the cold load and the cached one
    assert "fastest on this CPU at 64x64:" in result.output
    only = run("bench", onnx_model, "--out", tmp_path / "r2", "--sizes", "64", "--iters", "1",
               "--backends", "onnxruntime")
    assert only.exit_code == 0, only.output
    assert {r["backend"] for r in json.loads((tmp_path / "r2" / "bench.json").read_text())[
        "latency"]} == {"onnxruntime"}
