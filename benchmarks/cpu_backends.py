"""CPU runtimes x precisions of one graph, measured in one run with every combination
interleaved round by round (the machine is shared: ratios within a round are what count).

For each input size: per round, a few timed runs of every (ONNX file, backend); the row's p50
is the median over all rounds, its speed the median of per-round ratios to onnxruntime FP32.
Beside them: achieved GFLOP/s against the measured FP32 peak, and with ``--data`` each
combination's mean IU, its label agreement with onnxruntime FP32 on the same images, and for
INT8 files the agreement with the file's exact Q/DQ arithmetic.
"""
from __future__ import annotations

import json
import statistics
from contextlib import ExitStack
from pathlib import Path

from fcn_deploy.atomic import write_texts
from fcn_deploy.errors import FcnDeployError
from fcn_deploy.runtime.factory import open_segmenter
from fcn_deploy.runtime.ort_segmenter import OrtSegmenter
from fcn_deploy.runtime.registry import choose, installed
from fcn_deploy.tasks.evaluate import evaluate, label_agreement

from .latency import Contender, interleave, model_flops, ratio_of_rounds
from .machine import machine_info, set_torch_threads
from .report import machine_line, markdown_table

REFERENCE = ("onnxruntime", "fp32")


def cpu_backends(files: list[Path], sizes: list[tuple[int, int]], threads: int,
                 rounds: int = 5, iters: int = 3, backends: tuple[str, ...] | None = None,
                 data=None, log=print) -> dict:
    """The measurements above for ONNX ``files`` (one graph, several precisions) in each of
    ``backends`` (default: every one installed here) at batch 1 and each H x W of ``sizes``."""
    backends = backends or tuple(installed("onnx", "cpu"))
    for backend in backends:
        choose("onnx", "cpu", backend)
    set_torch_threads(threads)  # the FP32 peak below is measured on torch's pool
    # opened (metadata only) and checked before the slow loads
    segs = [open_segmenter(f, threads=threads, backend=b) for f in files for b in backends]
    ref = _reference(segs)
    with ExitStack() as stack:
        for seg in segs:
            stack.enter_context(seg)
        rows = [row for size in sizes for row in _timed(segs, ref, size, rounds, iters, log)]
        quality = _quality(segs, ref, data, threads) if data is not None else {}
    machine = machine_info(threads)
    peak = machine.get("cpu_fp32_peak_gflops")
    for row in rows:
        row.update(quality.get((row["file"], row["backend"]), {}))
        flops = model_flops(ref.meta, (1, 3, row["height"], row["width"]))
        row["gflops_per_s"] = flops / row["p50_ms"] / 1e6 if flops else None
        row["of_peak"] = row["gflops_per_s"] / peak if flops and peak else None
    return {"machine": machine, "threads": threads, "rounds": rounds, "iters": iters,
            "files": [str(f) for f in files], "rows": rows}


def _label(seg) -> tuple[str, str]:
    return seg.backend, seg.precision


def _reference(segs: list):
    """onnxruntime running the FP32 file: what every row is compared with."""
    for seg in segs:
        if _label(seg) == REFERENCE:
            return seg
    raise FcnDeployError("comparing CPU backends needs an FP32 ONNX file and onnxruntime")


def _timed(segs: list, ref, size: tuple[int, int], rounds: int, iters: int, log) -> list[dict]:
    shape = (1, 3, *size)
    # the first run allocates and (OpenVINO) specializes the shape: the warm-up
    contenders = [Contender.start(seg, shape) for seg in segs]
    interleave(contenders, warmup=1, iters=iters * rounds, rounds=rounds)
    per_round = [c.round_p50s for c in contenders]
    log(f"{size[0]}x{size[1]}, {rounds} rounds: " + ", ".join(
        f"{' '.join(_label(s))} {statistics.median(t):.0f} ms" for s, t in zip(segs, per_round)))
    ref_times = per_round[segs.index(ref)]
    return [{"file": seg.path.name, "backend": seg.backend, "precision": seg.precision,
             "height": size[0], "width": size[1],
             "p50_ms": statistics.median(times), "per_round_ms": times,
             "speed_vs_reference": ratio_of_rounds(ref_times, times)}
            for seg, times in zip(segs, per_round)]


def _quality(segs: list, ref, data, threads: int) -> dict:
    """Mean IU of every combination on ``data``, its label agreement with the reference, and
    for INT8 files with the file's exact Q/DQ arithmetic (onnxruntime, optimizations off)."""
    labels, scores = {}, {}
    for seg in segs:
        labels[seg], scores[seg] = _labels(seg, data)
    exact = {s.path: _labels(OrtSegmenter(s.path, threads=threads, optimize=False), data)[0]
             for s in segs if s.meta.precision == "int8"}
    return {(s.path.name, s.backend): {
        "mean_iu": scores[s], "mean_iu_change": scores[s] - scores[ref],
        "agreement": label_agreement(labels[s], labels[ref]),
        "exact_agreement": (label_agreement(labels[s], exact[s.path]) if s.path in exact
                            else None)} for s in segs}


def _labels(seg, data) -> tuple[list, float]:
    """``seg``'s label batches on ``data`` and its mean IU."""
    out: list = []
    with seg:
        score = evaluate(seg.predict, data, seg.meta.num_classes, labels_out=out,
                         description=f"eval {seg.path.name} {seg.backend}")["mean_iu"]
    return out, score


COLUMNS = [
    ("height", "H", "{}"), ("width", "W", "{}"), ("file", "file", "{}"),
    ("backend", "backend", "{}"),
    ("precision", "precision", "{}"), ("p50_ms", "p50 ms", "{:.1f}"),
    ("speed_vs_reference", "speed vs ORT FP32", "{:.2f}x"),
    ("gflops_per_s", "GFLOP/s", "{:.0f}"), ("of_peak", "of FP32 peak", "{:.0%}"),
    ("mean_iu", "mean IU", "{:.4f}"), ("mean_iu_change", "mean IU vs FP32", "{:+.4f}"),
    ("agreement", "labels = ORT FP32", "{:.2%}"),
    ("exact_agreement", "labels = exact INT8", "{:.3%}"),
]


def markdown(result: dict) -> str:
    """The report: machine, then one row per size x backend x precision."""
    peak = result["machine"].get("cpu_fp32_peak_gflops")
    return "\n".join([
        "# CPU backends side by side", "", machine_line(result["machine"]) + ".", "",
        f"Batch 1; median of {result['rounds']} interleaved rounds of {result['iters']} runs "
        f"each; speed: median of per-round ratios to onnxruntime FP32; FP32 peak "
        f"{peak:.0f} GFLOP/s." if peak else "", "",
        markdown_table(result["rows"], COLUMNS), ""])


def write_results(result: dict, out: Path) -> list[Path]:
    """``cpu_backends.json`` and ``cpu_backends.md`` in ``out``, each written atomically."""
    return write_texts({out / "cpu_backends.json": json.dumps(result, indent=2),
                        out / "cpu_backends.md": markdown(result)})


if __name__ == "__main__":
    import argparse

    from fcn_deploy.data import open_dataset
    from fcn_deploy.shapes import size_list

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+",
                        help="ONNX files of one graph (FP32 and other precisions)")
    parser.add_argument("--sizes", default="500", help="S or HxW, comma-separated")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=3, help="timed runs per round")
    parser.add_argument("--backends", default=None, help="default: every one installed")
    parser.add_argument("--data", default=None, help="e.g. synthetic:objects, for mean IU")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=192)
    parser.add_argument("--out", type=Path, required=True, help="folder for the report")
    args = parser.parse_args()
    try:
        dataset = (open_dataset(args.data, "val", args.image_size, args.samples)
                   if args.data else None)
        report = cpu_backends(args.files, size_list(args.sizes, "--sizes"), args.threads,
                              args.rounds, args.iters,
                              tuple(args.backends.split(",")) if args.backends else None,
                              dataset)
    except FcnDeployError as e:  # bad input: one line, nothing written
        raise SystemExit(f"error: {e}") from None
    for written in write_results(report, args.out):
        print(f"wrote {written}")
    print(markdown(report))
