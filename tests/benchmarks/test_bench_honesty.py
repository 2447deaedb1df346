"""``fcn-deploy bench`` reports honestly: threads, machine load, plots, and where it writes."""
import json
import os
import sys

import onnxruntime
import pytest
import torch
from typer.testing import CliRunner

from fcn_deploy.cli import app

TINY = ["--sizes", "32", "--iters", "2", "--warmup", "0"]
PLOTS_SKIPPED = "plots skipped: matplotlib is not installed (pip install 'fcn-deploy[plot]')"


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("honesty") / "m.onnx"
    result = run("export", "--random-init", "--arch", "fcn32s-alexnet", "--width", "0.0625",
                 "--num-classes", "3", "-o", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def torch_threads():
    """bench sets torch's global thread count: give the rest of the session its own back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_physical_cores_counts_cores_not_hyperthreads():
    from fcn_deploy.benchmarks.machine import physical_cores

    # 2 sockets x 2 cores x 2 hyper-threads: core ids repeat across sockets.
    cpuinfo = "\n\n".join(f"processor\t: {i}\nphysical id\t: {i // 4}\ncore id\t\t: {i % 2}"
                          for i in range(8))
    assert physical_cores(cpuinfo) == 4
    assert physical_cores("processor\t: 0\nmodel name\t: some ARM\n") == os.cpu_count()


def test_bench_threads_default_to_physical_cores_for_torch_and_onnxruntime(
        onnx_model, tmp_path, monkeypatch, torch_threads):
    from fcn_deploy.benchmarks import bench

    monkeypatch.setattr(bench, "physical_cores", lambda: 1)  # differs from the 2 logical CPUs
    sessions = []
    real_session = onnxruntime.InferenceSession

    def spy(path, opts=None, **kw):  # the real session, its thread options noted
        sessions.append((opts.intra_op_num_threads, opts.inter_op_num_threads))
        return real_session(path, opts, **kw)
    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    result = run("bench", onnx_model, "--arch", "fcn32s-alexnet", "--width", "0.0625",
                 "--out", tmp_path / "r", *TINY)
    assert result.exit_code == 0, result.output
    machine = json.loads((tmp_path / "r" / "bench.json").read_text())["machine"]
    assert machine["threads"] == 1 and machine["torch_threads"] == 1
    assert machine["physical_cores"] >= 1 and torch.get_num_threads() == 1
    assert sessions == [(1, 1)]
    assert "physical cores, " in result.output and "1 threads used" in result.output


def test_bench_records_load_and_warns_when_the_machine_is_busy(onnx_model, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (99.0, 50.0, 20.0))
    out = tmp_path / "r"
    result = run("bench", onnx_model, "--out", out, "--threads", "1", *TINY)
    assert result.exit_code == 0, result.output
    bench = json.loads((out / "bench.json").read_text())
    [row] = bench["latency"]
    assert row["load_before"] == row["load_after"] == 99.0
    [warning] = bench["warnings"]
    assert warning.startswith("latency m.onnx whole N=1 32x32: 1-min load average 99.0 before")
    assert f"> {os.cpu_count()} logical CPUs: the machine was busy" in warning
    assert f"warning: {warning}" in result.output.replace("\n", "")
    assert "## Warnings" in (out / "bench.md").read_text()


def test_an_idle_machine_gets_no_warning():
    from fcn_deploy.benchmarks.machine import busy_note

    cpus = os.cpu_count()
    assert busy_note({"load_before": 0.5, "load_after": cpus}, cpus) is None
    assert busy_note({"load_before": None, "load_after": None}, cpus) is None
    assert "busy" in busy_note({"load_before": cpus + 0.5, "load_after": 0.1}, cpus)


def test_latency_plot_is_linear_from_zero_with_value_labels():
    import matplotlib

    matplotlib.use("Agg")
    from fcn_deploy.benchmarks.report import latency_figure

    shape = {"backend": "torch", "precision": "fp32", "batch": 1, "height": 500, "width": 500}
    rows = [{"artifact": "a", "p50_ms": 22.0, "p99_ms": 23.0, **shape},
            {"artifact": "a", "p50_ms": 45.0, "p99_ms": 47.0, **shape}]  # equal labels, 2 bars
    ax = latency_figure(rows).axes[0]
    assert ax.get_xscale() == "linear" and ax.get_xlim()[0] == 0
    assert sorted(p.get_width() for p in ax.patches) == [22.0, 45.0]
    assert {t.get_text() for t in ax.texts} == {" 22.0 ms", " 45.0 ms"}


def test_bench_without_matplotlib_says_plots_were_skipped(onnx_model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    out = tmp_path / "r"
    result = run("bench", onnx_model, "--out", out, "--threads", "1", *TINY)
    assert result.exit_code == 0, result.output
    assert PLOTS_SKIPPED in result.output
    assert PLOTS_SKIPPED in (out / "bench.md").read_text()
    assert not list(out.glob("*.png"))


# Tests run as root, for whom chmod'ed folders stay writable: these fail for root too. A path
# below a regular file cannot be created (ENOTDIR); /proc exists but takes no new files.
@pytest.mark.parametrize("where", ["file/sub", "/proc"])
def test_bench_refuses_an_unwritable_out_before_measuring(onnx_model, tmp_path, where):
    (tmp_path / "file").write_text("x")
    out = tmp_path / where if where == "file/sub" else where
    result = run("bench", onnx_model, "--out", out, "--threads", "1", *TINY)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output  # no latency line: nothing was measured
    assert lines[0].startswith(f"error: cannot write the report to --out {out}: "), lines[0]
