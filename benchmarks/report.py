"""bench.json (every field), bench.md (the tables a reader wants) and PNG plots."""
from __future__ import annotations

import json
from pathlib import Path

from fcn_deploy.atomic import atomic_path, write_texts
from fcn_deploy.runtime.registry import names

PLOTS_SKIPPED = "plots skipped: matplotlib is not installed (pip install 'fcn-deploy[plot]')"

AMORTIZATION_COLUMNS = [
    ("model", "model", "{}"), ("backend", "backend", "{}"), ("image_size", "image", "{}"),
    ("patches", "patches", "{}"), ("fcn_ms", "FCN ms", "{:.1f}"),
    ("patch_sequential_ms", "sequential ms", "{:.1f}"),
    ("patch_batched_ms", "batched ms", "{:.1f}"),
    ("speedup_sequential", "x vs seq", "{:.2f}"), ("speedup_batched", "x vs batched", "{:.2f}"),
    ("flop_ratio", "FLOP ratio", "{:.2f}"),
    ("speedup_over_flop_ratio", "speedup/FLOP ratio", "{:.2f}"),
    ("fcn_gflops_per_s", "FCN GFLOP/s", "{:.0f}"), ("argmax_agreement", "agreement", "{:.2%}"),
    ("max_abs_diff", "max abs diff", "{:.2g}"),
]
LAYER_COLUMNS = [
    ("layer", "layer", "{}"), ("fcn_ms", "FCN ms", "{:.1f}"), ("fcn_gflops_per_s", "FCN GFLOP/s",
                                                             "{:.0f}"),
    ("patch_ms", "patches ms", "{:.1f}"), ("patch_gflops_per_s", "patches GFLOP/s", "{:.0f}"),
    ("fcn_time_share", "FCN time", "{:.0%}"), ("fcn_flop_share", "FCN FLOPs", "{:.0%}"),
]
LATENCY_COLUMNS = [
    ("artifact", "artifact", "{}"), ("backend", "backend", "{}"), ("precision", "precision", "{}"),
    ("size_mb", "size MB", "{:.1f}"), ("mean_iu", "mean IU", "{:.4f}"), ("batch", "batch", "{}"),
    ("input", "input", "{}"), ("mode", "mode", "{}"), ("p50_ms", "p50 ms", "{:.2f}"),
    ("p99_ms", "p99 ms", "{:.2f}"),
    ("images_per_s", "img/s", "{:.1f}"), ("gflops_per_s", "GFLOP/s", "{:.0f}"),
    ("peak_mb", "peak MB", "{:.0f}"), ("load_s", "load s", "{:.2f}"),
    ("context_s", "context s", "{:.2f}"),
    ("first_run_ms", "first run ms", "{:.1f}"),
]
VARIANT_COLUMNS = [
    ("artifact", "artifact", "{}"), ("backend", "backend", "{}"), ("batch", "batch", "{}"),
    ("input", "input", "{}"),
    ("mode", "mode", "{}"), ("whole_p50_ms", "whole/dynamic p50 ms", "{:.2f}"),
    ("p50_ms", "p50 ms", "{:.2f}"), ("speedup", "x vs whole/dynamic", "{:.2f}"),
    ("agreement_vs_whole", "label agreement", "{:.2%}"),
]


def variant_rows(latency: list[dict]) -> list[dict]:
    """Static-shape and tiled rows beside the whole-image (dynamic) row of the same artifact (or
    of an engine built from the same ONNX) and shape, measured in the same run: the speed
    ratio (> 1: the variant is faster)."""
    def key(r):
        return r.get("pair", r["artifact"]), r["batch"], r["height"], r["width"]
    whole = {key(r): r for r in latency if r.get("mode", "whole") == "whole"}
    return [{**{k: r[k] for k in ("artifact", "backend", "batch", "height", "width", "mode",
                                  "p50_ms")},
             "whole_p50_ms": whole[key(r)]["p50_ms"],
             "speedup": whole[key(r)]["p50_ms"] / r["p50_ms"],
             "agreement_vs_whole": r.get("agreement_vs_whole")}
            for r in latency if r.get("mode", "whole") != "whole" and key(r) in whole]


def gflops_text(row: dict) -> str:
    """", 123 GFLOP/s" for a latency row; empty where its FLOPs were not counted (no torch)."""
    value = row.get("gflops_per_s")
    return "" if value is None else f", {value:.0f} GFLOP/s"


def _cell(row: dict, key: str, fmt: str) -> str:
    if key == "input":  # rgb8 graphs take uint8 frames: a quarter of the bytes
        return f"{row['height']}x{row['width']}" + (" rgb8" if row.get("input_format") == "rgb8"
                                                     else "")
    if key == "peak_mb":
        value = next((row[k] for k in ("peak_gpu_mb", "gpu_used_mb", "peak_rss_mb") if k in row),
                     None)
    else:
        value = row.get(key)
    return "-" if value is None else fmt.format(value)


def markdown_table(rows: list[dict], columns) -> str:
    """A GitHub Markdown table of ``rows`` with (key, header, format) ``columns``."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r, k, f) for k, _, f in columns) + " |" for r in rows]
    return "\n".join(lines)


def machine_line(m: dict) -> str:
    """One sentence describing the machine, for the report and the console."""
    cores = f"{m['physical_cores']} physical cores, " if "physical_cores" in m else ""
    parts = [f"{m['cpu']} ({cores}{m['logical_cpus']} logical CPUs, {m['threads']} threads used)",
             "flags " + (", ".join(m["cpu_flags"]) or "none of note")]
    if m.get("kernel_limits"):
        parts.append("kernels limited by " + ", ".join(f"{k}={v}"
                                                       for k, v in m["kernel_limits"].items()))
    if m.get("cpu_fp32_peak_gflops") is not None:
        by = f" ({m['cpu_fp32_peak_by']} GEMM)" if m.get("cpu_fp32_peak_by") else ""
        parts.append(f"measured FP32 peak {m['cpu_fp32_peak_gflops']:.0f} GFLOP/s{by}")
    if m.get("gpu"):
        gpu = f"GPU {m['gpu']} ({m.get('gpu_capability', '?')})"
        if m.get("gpu_fp16_peak_tflops") is not None:
            gpu += (f", measured GEMM peak FP32 {m['gpu_fp32_peak_tflops']:.0f} / FP16 "
                    f"{m['gpu_fp16_peak_tflops']:.0f} TFLOP/s")
        if m.get("cudnn_allow_tf32"):
            gpu += ", cuDNN TF32 on (torch fp32 convolutions run in TF32)"
        parts.append(gpu)
    libs = m["libraries"]
    parts.append(", ".join(f"{k} {v}" for k, v in libs.items() if v))
    return "; ".join(parts)


def headlines(result: dict) -> list[str]:
    """The lines a reader wants first: amortization at 500x500 (or the nearest size) per model
    and backend, and each artifact's batch-1 latency at its largest input."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in result.get("amortization", [])):
        rows = [r for r in result["amortization"] if r["model"] == model]
        size = min({r["image_size"] for r in rows}, key=lambda s: abs(s - 500))
        rows = [r for r in rows if r["image_size"] == size]
        speedups = ", ".join(f"{r['speedup_vs_best']:.1f}x on {r['backend']}" for r in rows)
        lines.append(f"{model} at {size}x{size}: the FCN beats the best patch schedule by "
                     f"{speedups} (FLOP ratio {rows[0]['flop_ratio']:.2f})")
    latency = result.get("latency", [])
    for artifact, backend in dict.fromkeys((r["artifact"], r["backend"]) for r in latency):
        rows = [r for r in latency if (r["artifact"], r["backend"]) == (artifact, backend)
                and r["batch"] == 1 and r.get("mode", "whole") == "whole"]
        if rows:
            r = max(rows, key=lambda r: r["height"] * r["width"])
            iu = f", mean IU {r['mean_iu']:.4f}" if r.get("mean_iu") is not None else ""
            lines.append(f"{artifact} on {backend} ({r['precision']}) "
                         f"at {r['height']}x{r['width']}: "
                         f"p50 {r['p50_ms']:.1f} ms, {r['images_per_s']:.1f} img/s"
                         f"{gflops_text(r)}{iu}")
    fastest = fastest_cpu_line(result.get("latency", []))
    if fastest:
        lines.append(fastest)
    for r in variant_rows(result.get("latency", [])):
        agree = (f", labels agree on {r['agreement_vs_whole']:.2%}"
                 if r["agreement_vs_whole"] is not None else "")
        lines.append(f"{r['artifact']} on {r['backend']} {r['mode']} at N={r['batch']} "
                     f"{r['height']}x{r['width']}: "
                     f"{r['speedup']:.2f}x the whole-image dynamic speed (p50 {r['p50_ms']:.1f} vs "
                     f"{r['whole_p50_ms']:.1f} ms){agree}")
    return lines


def fastest_cpu_line(latency: list[dict]) -> str | None:
    """The fastest ONNX runtime x precision on this CPU (batch 1, whole image, the largest
    size), against onnxruntime FP32 in speed and mean IU; None without CPU ONNX rows."""
    rows = [r for r in latency if r["device"] == "cpu" and r.get("mode", "whole") == "whole"
            and r["batch"] == 1 and r["backend"] in names("onnx", "cpu")]
    if not rows:
        return None
    h, w = max({(r["height"], r["width"]) for r in rows}, key=lambda hw: hw[0] * hw[1])
    rows = [r for r in rows if (r["height"], r["width"]) == (h, w)]
    best = min(rows, key=lambda r: r["p50_ms"])
    line = (f"fastest on this CPU at {h}x{w}: {best['artifact']} in {best['backend']} "
            f"({best['precision']}), p50 {best['p50_ms']:.1f} ms")
    fp32 = [r for r in rows if r["backend"] == "onnxruntime" and r["precision"] == "fp32"]
    if fp32:
        ref = min(fp32, key=lambda r: r["p50_ms"])
        line += f", {ref['p50_ms'] / best['p50_ms']:.2f}x onnxruntime FP32 ({ref['artifact']})"
        if best.get("mean_iu") is not None and ref.get("mean_iu") is not None:
            line += f", mean IU {best['mean_iu'] - ref['mean_iu']:+.4f} vs FP32"
    return line


def layer_sections(amortization: list[dict]) -> list[str]:
    """One per-layer table (eager torch on CPU) per amortization row that has a profile."""
    out = []
    for r in amortization:
        if not r.get("layers"):
            continue
        fcn_ms = sum(x["fcn_ms"] for x in r["layers"])
        fcn_gflop = sum(x["fcn_gflop"] for x in r["layers"])
        rows = [{**x, "fcn_gflops_per_s": 1000 * x["fcn_gflop"] / x["fcn_ms"],
                 "patch_gflops_per_s": 1000 * x["patch_gflop"] / x["patch_ms"],
                 "fcn_time_share": x["fcn_ms"] / fcn_ms,
                 "fcn_flop_share": x["fcn_gflop"] / fcn_gflop} for x in r["layers"]]
        out += [f"### {r['model']} {r['image_size']}x{r['image_size']}, eager torch: where the "
                "time goes (conv and linear layers, one profiled run each)", "",
                markdown_table(rows, LAYER_COLUMNS), ""]
    return out


def markdown_report(result: dict) -> str:
    """bench.md: the machine, the command, the headlines, and one table per section."""
    out = ["# fcn-deploy bench", "", f"Machine: {machine_line(result['machine'])}.", "",
           f"Command: `{result['command']}`", ""]
    if result.get("warnings"):  # first: they qualify every number below
        out += ["## Warnings", ""] + [f"- {w}" for w in result["warnings"]] + [""]
    out += [f"- {line}" for line in headlines(result)] + [""]
    if result.get("amortization"):
        out += ["## Amortization: FCN vs sliding-window patches (batch 1, random weights)", "",
                markdown_table(result["amortization"], AMORTIZATION_COLUMNS), ""]
        out += layer_sections(result["amortization"])
    if result.get("latency"):
        out += ["## Latency", "", markdown_table(result["latency"], LATENCY_COLUMNS), ""]
        variants = variant_rows(result["latency"])
        if variants:
            out += ["## Static shapes and tiling vs the whole image with dynamic shapes", "",
                    markdown_table(variants, VARIANT_COLUMNS), ""]
    if result.get("skipped"):
        out += ["## Not run here", ""] + [f"- {s}" for s in result["skipped"]] + [""]
    if result.get("plots_skipped"):
        out += [result["plots_skipped"], ""]
    return "\n".join(out)


def has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_report(result: dict, out_dir: Path) -> list[Path]:
    """Write bench.json, bench.md and the plots into ``out_dir``; without matplotlib, sets
    ``result["plots_skipped"]`` (a line for the console) and writes no plots."""
    plots = has_matplotlib()
    if not plots:
        result["plots_skipped"] = PLOTS_SKIPPED
    out_dir.mkdir(parents=True, exist_ok=True)
    written = write_texts({out_dir / "bench.json": json.dumps(result, indent=2, default=str),
                           out_dir / "bench.md": markdown_report(result)})
    if not plots:
        return written
    import matplotlib  # the plot extra

    matplotlib.use("Agg")
    if result.get("amortization"):
        written.append(_plot_amortization(result["amortization"], out_dir / "amortization.png"))
    if result.get("latency"):
        written.append(_plot_latency(result["latency"], out_dir / "latency.png"))
    return written


def _plot_amortization(rows: list[dict], path: Path) -> Path:
    import matplotlib.pyplot as plt  # the plot extra

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        for backend in dict.fromkeys(r["backend"] for r in mine):
            rs = sorted((r for r in mine if r["backend"] == backend), key=lambda r: r["image_size"])
            ax.plot([r["image_size"] for r in rs], [r["speedup_vs_best"] for r in rs], "o-",
                    label=f"{model} {backend}: speedup vs best patch schedule")
        rs = sorted({r["image_size"]: r for r in mine}.values(), key=lambda r: r["image_size"])
        ax.plot([r["image_size"] for r in rs], [r["flop_ratio"] for r in rs], "k--", alpha=0.6,
                label=f"{model}: FLOP ratio (patches / FCN)")
    ax.axhline(5, color="grey", lw=0.8, ls=":", label="the paper's 5x")
    ax.set(xlabel="image side (pixels)", ylabel="speedup (x)", yscale="log",
           title="Amortization: whole-image FCN vs patch-by-patch")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def _plot_latency(rows: list[dict], path: Path) -> Path:
    return save_figure(latency_figure(rows), path)


def latency_figure(rows: list[dict]):
    """p50 bars with p99 whiskers on a linear axis from zero (a log axis makes bar lengths lie
    about ratios), each labelled with its p50."""
    import matplotlib.pyplot as plt  # the plot extra

    labels = [f"{r['artifact']} {r['backend']} {r['precision']} {r.get('mode', '')}\n"
              f"N={r['batch']} {r['height']}x{r['width']}" for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    y = list(range(len(rows)))  # positions, not labels: equal labels must not share a bar
    ax.barh(y, [r["p50_ms"] for r in rows],
            xerr=[[0] * len(rows), [r["p99_ms"] - r["p50_ms"] for r in rows]], color="tab:blue")
    for i, r in zip(y, rows):
        ax.text(r["p99_ms"], i, f" {r['p50_ms']:.1f} ms", va="center", fontsize=6)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set(xlabel="ms per batch (p50, whisker to p99)", title="Latency")
    ax.set_xlim(0, 1.2 * max(r["p99_ms"] for r in rows) or 1)  # room for the labels
    ax.tick_params(axis="y", labelsize=6)
    return fig


def save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt  # the plot extra

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
