"""``fcn-deploy bench`` and the machine it runs on: thread defaults (physical cores, affinity,
cgroup quota), other processes' CPU time and busy-machine warnings, plots, and where it
writes."""
import itertools
import json
import os
import sys

import onnxruntime
import pytest
import torch
from helpers import run

from fcn_deploy.errors import FcnDeployError

TINY = ["--backends", "onnxruntime", "--sizes", "32", "--iters", "2", "--warmup", "0"]
PLOTS_SKIPPED = "plots skipped: matplotlib is not installed (pip install 'fcn-deploy[plot]')"






@pytest.fixture
def torch_threads():
    """bench sets torch's global thread count: give the rest of the session its own back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fast_peak(monkeypatch):
    """Skip the seconds-long GEMM peak of machine_info: these tests are about other fields."""
    from fcn_deploy.benchmarks import machine

    monkeypatch.setattr(machine, "gemm_peak_gflops", lambda *a, **kw: 1.0)


def test_physical_cores_counts_cores_not_hyperthreads():
    from fcn_deploy.benchmarks.machine import physical_cores

    # 2 sockets x 2 cores x 2 hyper-threads: core ids repeat across sockets.
    cpuinfo = "\n\n".join(f"processor\t: {i}\nphysical id\t: {i // 4}\ncore id\t\t: {i % 2}"
                          for i in range(8))
    assert physical_cores(cpuinfo) == 4
    assert physical_cores("processor\t: 0\nmodel name\t: some ARM\n") == os.cpu_count()


def test_default_threads_respect_cpu_affinity_and_the_cgroup_quota():
    from fcn_deploy.benchmarks.machine import default_threads

    # A 64-core host (no hyper-threads) seen from inside containers and tasksets.
    host = "\n\n".join(f"processor\t: {i}\nphysical id\t: 0\ncore id\t\t: {i}" for i in range(64))
    every = set(range(64))
    assert default_threads(host, every, "200000 100000\n") == 2  # docker --cpus=2
    assert default_threads(host, every, "150000 100000\n") == 2  # --cpus=1.5: rounded up
    assert default_threads(host, every, "5000 100000\n") == 1
    assert default_threads(host, {0, 1, 2}, "max 100000\n") == 3  # taskset, --cpuset-cpus
    assert default_threads(host, every, "max 100000\n") == 64  # no quota
    assert default_threads(host, (), "") == 64  # no affinity call, no cpu.max file
    assert default_threads(host, every, "garbage") == 64
    assert 1 <= default_threads() <= len(os.sched_getaffinity(0))  # this machine's own sources


def test_bench_threads_default_to_physical_cores_for_torch_and_onnxruntime(
        onnx_model, tmp_path, monkeypatch, torch_threads, fast_peak):
    from fcn_deploy.benchmarks import bench

    monkeypatch.setattr(bench, "default_threads", lambda: 1)  # differs from the 2 logical CPUs
    # torch's inter-op pool can be sized once per process: record the call instead of making
    # it, so that no later test finds the pool fixed at 1 (the intra-op count is restored).
    interop_before, interop_calls = torch.get_num_interop_threads(), []
    monkeypatch.setattr(torch, "set_num_interop_threads", interop_calls.append)
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
    assert sessions == [(1, 1)] and interop_calls == [1]
    assert torch.get_num_interop_threads() == interop_before
    assert "physical cores, " in result.output and "1 threads used" in result.output


def test_bench_records_other_processes_cpu_and_warns_when_the_machine_is_busy(
        onnx_model, tmp_path, monkeypatch, fast_peak):
    from fcn_deploy.benchmarks import bench
    from fcn_deploy.benchmarks.machine import CpuSample

    cpus, samples = os.cpu_count(), itertools.count()

    def busy_sample():  # others keep every CPU busy; 10 s apart, none of that time ours
        k = next(samples)
        return CpuSample(10.0 * k, 10.0 * k * cpus, 0.0)
    monkeypatch.setattr(bench, "cpu_sample", busy_sample)
    # A low load average: the old rule would have said nothing.
    monkeypatch.setattr(os, "getloadavg", lambda: (0.25, 0.5, 0.5))
    out = tmp_path / "r"
    result = run("bench", onnx_model, "--out", out, "--threads", "1", *TINY)
    assert result.exit_code == 0, result.output
    bench_json = json.loads((out / "bench.json").read_text())
    [row] = bench_json["latency"]
    assert row["other_cpu"] == pytest.approx(cpus) and row["other_cpu_error"] < 0.1
    assert row["load_before"] == row["load_after"] == 0.25  # kept as context
    [warning] = bench_json["warnings"]
    assert warning == (f"latency m.onnx on onnxruntime whole N=1 32x32: other processes used "
                       f"{cpus:.1f} CPU cores during it (limit {max(0.5, cpus / 4):.1f} of "
                       f"{cpus} logical CPUs): the machine was busy, times are inflated")
    assert f"warning: {warning}" in result.output.replace("\n", "")
    assert "## Warnings" in (out / "bench.md").read_text()


def test_the_bench_own_threads_and_a_high_load_average_are_not_a_busy_machine():
    from fcn_deploy.benchmarks.machine import busy_note

    # 2 bench threads on an idle 2-core machine: load average 2.5, other processes 0.05 core.
    idle = {"load_before": 2.5, "load_after": 2.5, "other_cpu": 0.05, "other_cpu_error": 0.01}
    assert busy_note(idle, 2) is None
    assert busy_note({"load_before": 0.1, "load_after": 0.1, "other_cpu": 0.6,
                      "other_cpu_error": 0.01}, 2) is not None  # half a core stolen from 2
    assert busy_note({"other_cpu": 0.6, "other_cpu_error": 0.2}, 2) is None  # within the error
    assert busy_note({"other_cpu": 10.0, "other_cpu_error": 0.01}, 64) is None  # limit 16
    assert "busy" in busy_note({"other_cpu": 17.0, "other_cpu_error": 0.01}, 64)
    assert busy_note({"other_cpu": None, "other_cpu_error": None}, 2) is None  # no /proc/stat


def test_other_cpu_is_system_busy_time_less_our_own(tmp_path):
    from fcn_deploy.benchmarks.machine import CpuSample, cpu_sample, other_cpu

    tick = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"  # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 20 30 1000 50 5 5 10 7 0\ncpu0 100 20 30 1000 50 5 5 10 7 0\n")
    sample = cpu_sample(str(stat))
    assert sample.busy == pytest.approx(170 / tick) and sample.own >= 0  # idle, iowait, guest out
    # 3 busy CPU seconds in 2 s of wall time, 1 of them ours: others used 1 core.
    used = other_cpu(CpuSample(0.0, 10.0, 1.0), CpuSample(2.0, 13.0, 2.0), 2)
    assert used == {"other_cpu": pytest.approx(1.0), "other_cpu_error": pytest.approx(1.5 / tick)}
    # Tick rounding can make ours exceed the system's delta: never below zero.
    assert other_cpu(CpuSample(0, 10, 1), CpuSample(1, 10, 1.5), 2)["other_cpu"] == 0.0


def test_without_proc_stat_rows_record_null_and_never_warn(monkeypatch):
    from fcn_deploy.benchmarks import bench, machine

    monkeypatch.setattr(bench, "cpu_sample", lambda: machine.cpu_sample("/nonexistent/stat"))
    row = bench._with_load(lambda: {"p50_ms": 1.0})
    assert row["other_cpu"] is None and row["other_cpu_error"] is None
    assert machine.busy_note(row, os.cpu_count()) is None
    monkeypatch.undo()
    row = bench._with_load(lambda: {"p50_ms": 1.0})  # this Linux machine's real counters
    assert row["other_cpu"] >= 0 and row["other_cpu_error"] > 0 and "load_before" in row


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
    assert lines[0].startswith(f"error: cannot write {out}: "), lines[0]


def test_bench_creates_no_out_folder_until_it_has_a_report(onnx_model, tmp_path, monkeypatch):
    from fcn_deploy.benchmarks import bench

    def fails(*args, **kwargs):
        raise FcnDeployError("measuring failed")
    monkeypatch.setattr(bench, "run_bench", fails)
    out = tmp_path / "new" / "r"
    result = run("bench", onnx_model, "--out", out, "--threads", "1", *TINY)
    assert result.exit_code == 1 and "measuring failed" in result.output, result.output
    assert not (tmp_path / "new").exists()  # the writability probe created nothing


def test_a_run_under_kernel_limits_says_so(monkeypatch, fast_peak):
    # the variables that make one CPU compute like an older one: its figures are another CPU's
    from fcn_deploy.benchmarks.machine import machine_info
    from fcn_deploy.benchmarks.report import machine_line

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS", raising=False)
    info = machine_info(1)
    assert info["kernel_limits"] == {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    assert "kernels limited by ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2" in machine_line(
        info)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert "kernels limited" not in machine_line(machine_info(1))
