"""Camera frames to label maps, measured in one run with the variants interleaved round by
round (the machine is shared: ratios within a round are what count).

Per round: the model alone (``Segmenter.timer``, like ``bench``) for every artifact; the frame
loop run sequentially (depth 1: decode, infer, argmax, write one frame after another, as
``predict`` did) and pipelined (``predict``'s decode/infer/write stages overlapped). Beside
them: the host time per frame of each step the in-graph preprocessing and argmax remove, and
the bytes per frame that cross to the device for float32 NCHW and uint8 NHWC input.
"""
from __future__ import annotations

import functools
import json
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from fcn_deploy.atomic import write_texts
from fcn_deploy.contract.preprocess import normalize
from fcn_deploy.media.images import collect_images, decode_image, write_labels
from fcn_deploy.runtime.factory import open_segmenter
from fcn_deploy.tasks.predict_images import DEPTH, ImageJob, batches, predict_images, scan_inputs

from .latency import in_turn
from .machine import machine_info
from .report import machine_line, markdown_table

# Sizes for the bytes-per-frame table: VGA, 720p, 1080p, 4K.
BYTES_SIZES = ((480, 640), (720, 1280), (1080, 1920), (2160, 3840))


def frame_loop(artifacts: list[Path], frames: Path, threads: int, rounds: int = 3,
               model_iters: int = 8, log=print,
               backends: tuple[str, ...] = ("onnxruntime",)) -> dict:
    """The measurements above for ONNX ``artifacts`` in each of ``backends`` on the images in
    folder ``frames``."""
    files = collect_images([frames])
    groups = batches(scan_inputs(files).good, 1)
    h, w = decode_image(files[0])[0].shape[:2]
    segs = [open_segmenter(a, threads=threads, backend=b) for a in artifacts for b in backends]
    with tempfile.TemporaryDirectory() as work, ExitStack() as stack:
        for seg in segs:
            stack.enter_context(seg)
        keys, measures = [], []
        for seg in segs:  # every (artifact, backend, mode) in turn, round by round
            for mode, measure in _measures(seg, groups, (h, w), model_iters, Path(work)):
                keys.append((seg.path.name, seg.backend, mode))
                measures.append(measure)
        values = in_turn(measures, rounds)
    rows = dict(zip(keys, values))
    for key, fps in rows.items():
        log(f"{' '.join(key)}: {', '.join(f'{v:.2f}' for v in fps)} frames/s in {rounds} rounds")
    return {"machine": machine_info(threads), "frames": len(files), "height": h, "width": w,
            "threads": threads, "rounds": rounds,
            "rows": [{"artifact": a, "backend": b, "mode": m, "convention": _input(segs, a),
                      "frames_per_s": statistics.median(v), "per_round": v}
                     for (a, b, m), v in rows.items()],
            "host_ms": host_ms(files[:8], segs[0].meta), "bytes": bytes_per_frame()}


def _measures(seg, groups, hw: tuple[int, int], model_iters: int, work: Path) -> list:
    """(mode, a callable giving one round's frames/s) of the model alone, the sequential loop
    and the pipelined loop of ``seg``."""
    def alone() -> float:
        timed = seg.timer((1, 3, *hw))
        return 1000 / statistics.median(timed() for _ in range(model_iters))

    def loop(mode: str, depth: int) -> float:
        out = Path(tempfile.mkdtemp(dir=work, prefix=f"{mode}-{seg.path.stem}-"))
        job = ImageJob(run=seg.predict, out=out, names=seg.meta.class_names, overlay=False,
                       log=lambda line: None)
        return predict_images(job, groups, depth=depth)[1].frames_per_second
    return [("model alone", alone), ("sequential loop", functools.partial(loop, "sequential", 1)),
            ("pipelined loop", functools.partial(loop, "pipelined", DEPTH))]


def _input(segs, name: str) -> str:
    seg = next(s for s in segs if s.path.name == name)
    return f"{seg.meta.input.format}, {seg.output}"


def host_ms(files: list[Path], meta) -> dict:
    """Median host milliseconds per frame of each step, single-threaded: JPEG decode, the
    float path's normalization (an rgb8 graph does it inside), the argmax of logits (a
    labels graph does it inside), and the label PNG."""
    steps: dict[str, list[float]] = {"decode": [], "normalize": [], "argmax": [], "label PNG": []}
    k = meta.num_classes
    with tempfile.TemporaryDirectory() as work:
        for f in files:
            start = time.perf_counter()
            image = decode_image(f)[0]
            steps["decode"].append(time.perf_counter() - start)
            start = time.perf_counter()
            normalize(image[None], **meta.normalization)
            steps["normalize"].append(time.perf_counter() - start)
            logits = np.random.default_rng(0).standard_normal((1, k, *image.shape[:2]),
                                                              dtype=np.float32)
            start = time.perf_counter()
            labels = logits.argmax(1).astype(np.uint8)[0]
            steps["argmax"].append(time.perf_counter() - start)
            start = time.perf_counter()
            write_labels(Path(work), f.stem, labels)
            steps["label PNG"].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(v) for name, v in steps.items()}


def bytes_per_frame() -> list[dict]:
    """Input bytes per frame: float32 N x 3 x H x W against uint8 N x H x W x 3."""
    return [{"size": f"{h}x{w}", "float32_nchw": 12 * h * w, "uint8_nhwc": 3 * h * w,
             "ratio": 4.0} for h, w in BYTES_SIZES]


def markdown(result: dict) -> str:
    """The report: machine, frames/s per artifact and mode, host ms, bytes per frame."""
    alone = {(r["artifact"], r["backend"]): r["frames_per_s"] for r in result["rows"]
             if r["mode"] == "model alone"}
    for r in result["rows"]:
        r["vs_model"] = r["frames_per_s"] / alone[r["artifact"], r["backend"]]
    lines = [f"# Frame loop: {result['frames']} frames of {result['height']}x{result['width']}",
             "", machine_line(result["machine"]), "",
             f"Median of {result['rounds']} interleaved rounds, CPU, "
             f"{result['threads']} threads, batch 1, label PNGs written, no overlays.", "",
             markdown_table(result["rows"], [
                 ("artifact", "artifact", "{}"), ("backend", "backend", "{}"),
                 ("convention", "input, output", "{}"),
                 ("mode", "mode", "{}"), ("frames_per_s", "frames/s", "{:.2f}"),
                 ("vs_model", "vs model alone", "{:.0%}")]),
             "", "Host work per frame (ms, one thread, median): "
             + ", ".join(f"{k} {v:.1f}" for k, v in result["host_ms"].items()), "",
             markdown_table(result["bytes"], [
                 ("size", "frame", "{}"), ("float32_nchw", "float32 NCHW bytes", "{:,}"),
                 ("uint8_nhwc", "uint8 NHWC bytes", "{:,}"), ("ratio", "ratio", "{:.0f}x")])]
    return "\n".join(lines) + "\n"


def write_results(result: dict, out: Path) -> list[Path]:
    """``frame_loop.json`` and ``frame_loop.md`` in ``out``, each written atomically."""
    text = markdown(result)  # first: it adds each row's ratio to the model alone
    return write_texts({out / "frame_loop.json": json.dumps(result, indent=2),
                        out / "frame_loop.md": text})


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", type=Path, nargs="+", help="ONNX files to compare")
    parser.add_argument("--frames", type=Path, required=True, help="folder of frames")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="onnxruntime",
                        help="ONNX runtimes to compare: onnxruntime,openvino")
    parser.add_argument("--out", type=Path, required=True, help="folder for the report")
    args = parser.parse_args()
    report = frame_loop(args.artifacts, args.frames, args.threads, args.rounds,
                        backends=tuple(args.backends.split(",")))
    for written in write_results(report, args.out):
        print(f"wrote {written}")
    print(markdown(report))
