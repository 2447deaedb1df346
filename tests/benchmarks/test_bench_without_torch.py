"""``fcn-deploy bench`` in the runtime-only install: ONNX latency rows without PyTorch."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import run

from fcn_deploy.benchmarks.machine import gemm_peak_gflops

# Runs the CLI in a fresh interpreter where `import torch` fails as if it were not installed
# (a meta-path finder refuses torch and its submodules), with the machine section's GEMM peak
# made small; the last stdout line is JSON: each run's exit code and whether torch got loaded.
NO_TORCH = textwrap.dedent("""
    import importlib.abc, json, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())
    from fcn_deploy.benchmarks import machine

    real_peak = machine.gemm_peak_gflops
    machine.gemm_peak_gflops = (lambda device="cpu", dtype=None, n=0, seconds=0.0,
                                library="torch": real_peak(device, dtype, 128, 0.01, library))
    from fcn_deploy.cli import app

    codes = []
    for args in json.loads(sys.argv[1]):
        try:
            app(args, prog_name="fcn-deploy")
        except SystemExit as e:
            codes.append(e.code)
    print(json.dumps({"codes": codes, "torch_loaded": "torch" in sys.modules}))
""")


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    from fcn_deploy.data.synthetic import SYNTHETIC_CLASSES

    out = tmp_path_factory.mktemp("no_torch") / "m.onnx"
    result = run("export", "--random-init", "--arch", "fcn32s-alexnet", "--width", "0.0625",
                 "--num-classes", len(SYNTHETIC_CLASSES), "-o", out)  # --data synthetic's
    assert result.exit_code == 0, result.output
    return out


def test_bench_times_onnx_without_torch_and_refuses_torch_rows_up_front(onnx_model, tmp_path):
    bench = ["bench", str(onnx_model), "--sizes", "32", "--iters", "2", "--warmup", "0",
             "--threads", "1", "--backends", "onnxruntime"]
    runs = [bench + ["--out", str(tmp_path / "amort"), "--amortization"],
            bench + ["--out", str(tmp_path / "r"), "--data", "synthetic", "--samples", "2",
                     "--image-size", "32"]]
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, json.dumps(runs)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout.strip().splitlines()[-1])
    assert status == {"codes": [1, 0], "torch_loaded": False}, proc.stdout + proc.stderr
    # --amortization needs torch: one line, before anything was measured or written.
    assert ("error: bench needs torch, which is not installed here: "
            "pip install 'fcn-deploy[torch]'") in proc.stderr
    assert "amortization" not in proc.stdout and not (tmp_path / "amort").exists()
    result = json.loads((tmp_path / "r" / "bench.json").read_text())
    [row] = result["latency"]
    assert row["backend"] == "onnxruntime" and row["p50_ms"] > 0 and row["mean_iu"] is not None
    assert row["gflop"] is None and row["gflops_per_s"] is None  # not counted, not guessed
    machine = result["machine"]
    assert machine["cpu_fp32_peak_by"] == "numpy" and machine["cpu_fp32_peak_gflops"] > 0
    assert machine["torch_threads"] is None and machine["libraries"]["torch"] is None
    assert "(numpy GEMM)" in (tmp_path / "r" / "bench.md").read_text()
    assert "m.onnx on onnxruntime (fp32) at 32x32: p50" in proc.stdout
    assert "GFLOP/s," not in proc.stdout.split("report:")[-1]  # the headline has no FLOP rate


def test_numpy_measures_the_cpu_peak():
    assert 0.1 < gemm_peak_gflops(n=128, seconds=0.02, library="numpy") < 1e6
    with pytest.raises(ValueError, match="CPU peak only"):
        gemm_peak_gflops("cuda", library="numpy")
