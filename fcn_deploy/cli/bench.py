"""Measuring: bench (amortization vs the patch baseline, latency of every artifact on every
backend) and load-test (a Triton endpoint under concurrent clients)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from fcn_deploy.benchmarks.options import AMORTIZATION_BACKENDS
from fcn_deploy.models.catalog import families
from fcn_deploy.runtime.registry import names
from fcn_deploy.shapes import int_list, size_list

from .app import command, console
from .options import DATA_HELP, Arch, Device


@command
def bench(
    artifacts: List[Path] = typer.Argument(None, help="Checkpoints, ONNX files and/or engines to "
                                           "time."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for bench.json, bench.md and plots."),
    amortization: bool = typer.Option(False, help="FCN vs sliding-window patches for classifiers."),
    amort_models: str = typer.Option("alexnet,vgg16", help="Classifiers (torchvision layout, "
                                     f"random weights) of {', '.join(families())}; NAME:S/S "
                                     "limits one to its own sizes, e.g. alexnet,vgg16:500."),
    amort_sizes: str = typer.Option("224,500,1000", help="Square image sides for --amortization."),
    amort_backends: str = typer.Option("torch,onnxruntime",
                                       help=f"Of {', '.join(AMORTIZATION_BACKENDS)}: torch-frozen "
                                       "is TorchScript with weights packed once, torch-fp16 "
                                       "runs on CUDA, onnxruntime on the CPU."),
    amort_batch: int = typer.Option(32, min=1, help="Patches per batch in the batched baseline."),
    amort_profile: bool = typer.Option(False, help="Eager torch on CPU: time every conv and "
                                       "linear layer of the FCN and of the batched patches."),
    arch: Optional[Arch] = typer.Option(None, help="Also time an untrained torch model of this "
                                        "arch."),
    width: float = typer.Option(1.0, help="Width of the --arch model."),
    sizes: str = typer.Option("256,500",
                              help="Input sizes for latency: S or HxW, comma-separated."),
    batches: str = typer.Option("1", help="Batch sizes for latency, comma-separated."),
    warmup: int = typer.Option(3, min=0, help="Untimed runs before timing each shape."),
    iters: Optional[int] = typer.Option(None, min=1,
                                        help="Timed runs per shape (default: --seconds)."),
    seconds: float = typer.Option(2.0, min=0, help="Time budget of each row, split over the "
                                  "rounds (at least 3 runs)."),
    rounds: int = typer.Option(3, min=1, help="Every row of a shape (each artifact, backend and "
                               "variant) is timed in turn, round by round; speed_vs_first is "
                               "the median of per-round ratios to the shape's first row."),
    torch_modes: str = typer.Option("fp32", help="For checkpoints: fp32|fp16 with -cl "
                                    "(channels_last), -compile, -graph (CUDA graph), "
                                    "e.g. fp32,fp32-compile."),
    device: Device = "cpu",
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads for torch and "
                                          "onnxruntime (default: physical cores, at most "
                                          "the CPUs allowed by affinity and cgroup quota)."),
    cuda_graph: bool = typer.Option(False, help="Engines: replay a captured CUDA graph per shape."),
    data: Optional[str] = typer.Option(None, help="Evaluate mean IU per artifact on this data: "
                                       + DATA_HELP),
    samples: int = typer.Option(64, min=1, help="Synthetic evaluation images for --data."),
    image_size: int = typer.Option(64, help="Synthetic evaluation image size for --data."),
    static: bool = typer.Option(False, help="ONNX files: also time a copy with the input fixed "
                                "at each shape (static vs dynamic shapes)."),
    tile: Optional[str] = typer.Option(None, help="Also time tiled inference of a synthetic "
                                       "image per shape: tiles HxW, a side, or auto."),
    overlap: int = typer.Option(64, min=0, help="Tile overlap (px) for --tile."),
    backends: Optional[str] = typer.Option(None, help="Runtimes for ONNX files, side by side, "
                                           f"of {', '.join(names('onnx'))} [default: every "
                                           "one installed here that runs on --device]."),
    runtime_cache: Optional[Path] = typer.Option(None, help="TensorRT-RTX engines: folder of "
                                                 "kernel caches (ENGINE.rtxcache, read, then "
                                                 "updated); a second load with it is timed too."),
):
    """Amortization vs the patch baseline, and latency of every artifact on every backend here."""
    options = dict(locals())  # every option, each written once: in the signature above
    from fcn_deploy.benchmarks.bench import BenchConfig, run_bench  # numpy; torch for some rows
    from fcn_deploy.benchmarks.report import headlines, machine_line, write_report  # matplotlib

    result = run_bench(BenchConfig.from_cli(**options), "fcn-deploy " + " ".join(sys.argv[1:]),
                       log=console.print)
    files = write_report(result, out)
    if result.get("plots_skipped"):
        console.print(result["plots_skipped"], markup=False)  # keep "[plot]" literal
    console.print(f"machine: {machine_line(result['machine'])}")
    for line in result["skipped"]:
        console.print(f"not run: {line}")
    console.print(f"report: {out / 'bench.md'} ({', '.join(f.name for f in files)})")
    for line in headlines(result):
        console.print(f"  {line}")


@command
def load_test(
    url: str = typer.Argument(..., help="Triton HTTP endpoint, e.g. localhost:8000."),
    model: str = typer.Option(..., "--model", "-m", help="Model name (one UINT8 image input, "
                              "a labels output: serve's model or export-triton's NAME_labels "
                              "of an rgb8 artifact)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for load.json and load.md."),
    sizes: str = typer.Option("256,375x500,500", help="Image sizes, S or HxW, cycled."),
    concurrency: str = typer.Option("1,2,4,8,16", help="Concurrent clients per level."),
    requests: int = typer.Option(64, min=1, help="Requests per level (at most)."),
    seconds: float = typer.Option(30.0, min=0.1, help="Time limit per level."),
):
    """Drive a Triton endpoint at each concurrency with a mix of image sizes, as perf_analyzer
    would: throughput, p50/p90/p99 latency and errors per level."""
    from fcn_deploy.benchmarks.load import load_test as run  # numpy, tritonclient when it runs

    run(url, model, out, size_list(sizes, "--sizes"), int_list(concurrency, "--concurrency"),
        requests, seconds, log=console.print)
