"""The reproduction's report: report.json (every figure), report.md (the tables beside the
paper's), the stages' predictions side by side (the paper's Figure 4) and mean IU near
boundaries (PNG)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fcn_deploy.atomic import atomic_path, write_texts
from fcn_deploy.benchmarks.report import (
    AMORTIZATION_COLUMNS,
    has_matplotlib,
    machine_line,
    markdown_table,
    save_figure,
)
from fcn_deploy.data.synthetic import SYNTHETIC_CLASSES
from fcn_deploy.media.images import colorize, with_legend

from .paper_verdict import NAMES as STAGE_NAMES, share, verdict_lines, verdicts

METRICS = ("pixel_acc", "mean_acc", "mean_iu", "fwavacc")
# Long, Shelhamer, Darrell (CVPR 2015), Table 2: PASCAL VOC 2011 val, in percent.
PAPER_STAGES = {"fcn32s-vgg16": (89.1, 73.3, 59.4, 81.4), "fcn16s-vgg16": (90.0, 75.7, 62.4, 83.0),
                "fcn8s-vgg16": (90.3, 75.9, 62.7, 83.2)}
# Section 3.1: AlexNet classifies one 227x227 patch in 1.2 ms, the FCN a 500x500 image (a 10x10
# grid of outputs) in 22 ms: 100 x 1.2 / 22, "more than 5 times faster".
PAPER_AMORTIZATION = 5.45
FIGURE = "figure4.png"
BOUNDARY_FIGURE = "boundary.png"


def stage_summary(stages: list[dict]) -> list[dict]:
    """Per architecture: the metrics' means over seeds, their spread (max - min) and the mean
    IU gain over the previous stage (mean and spread of the per-seed gains)."""
    out, previous = [], None
    for arch in dict.fromkeys(r["arch"] for r in stages):
        rows = {r["seed"]: r for r in stages if r["arch"] == arch}
        row = {"arch": arch, "seeds": len(rows)}
        for k in METRICS + ("train_s",):
            values = [r[k] for r in rows.values()]
            row[k], row[f"{k}_spread"] = float(np.mean(values)), float(np.ptp(values))
        if previous is not None:
            gains = [r["mean_iu"] - previous[s]["mean_iu"] for s, r in rows.items()]
            row["gain"], row["gain_spread"] = float(np.mean(gains)), float(np.ptp(gains))
        row["boundary"] = _mean_bands([r["boundary"] for r in rows.values()])
        out.append(row)
        previous = rows
    return out


def _mean_bands(per_seed: list[list[dict]]) -> list[dict]:
    return [{"band_px": rows[0]["band_px"],
             **{k: float(np.mean([r[k] for r in rows])) for k in ("mean_iu", "pixel_acc")}}
            for rows in zip(*per_seed)]


def _batches(cfg: dict) -> str:
    k = cfg.get("mosaic", 1)  # runs before mosaics have none
    if k == 1:
        return f"batch {cfg['batch_size']}"
    side = k * cfg["image_size"]
    return f"batch {cfg['batch_size']} of {k}x{k} mosaics ({side}x{side} px, drawn every epoch)"


def _jobs(result: dict) -> str:
    jobs = result.get("seed_jobs", {"jobs": 1})  # runs before seed jobs have none
    if jobs["jobs"] == 1:
        return ""
    threads = f"{jobs['threads']} thread" + "s" * (jobs["threads"] > 1)
    return f", {jobs['jobs']} trained at once ({threads} each)"


def markdown_report(result: dict) -> str:
    """report.md: the machine and time, then one section per experiment (``result["summary"]``:
    ``stage_summary`` of its stages)."""
    summary = result["summary"]
    cfg = result["config"]
    out = ["# The paper's findings on the synthetic scenes", "",
           f"Machine: {machine_line(result['machine'])}.", "",
           f"Command: `{result['command']}`; total {result['total_s'] / 60:.1f} min.", "",
           f"Data: {cfg['train_samples']} training and {cfg['val_samples']} val scenes of "
           f"{cfg['image_size']}x{cfg['image_size']} px, style `{cfg['style']}`; width "
           f"{cfg['width']}; epochs {_per_stage(cfg['epochs'])} and Adam's peak learning rate "
           f"{_per_stage(cfg['lr'])} (cosine decay) for "
           f"{'/'.join(STAGE_NAMES[a] for a in cfg['epochs'])}; {_batches(cfg)}; "
           f"seeds {cfg['seeds']}{_jobs(result)}.", "", _trunk(cfg, result["pretrain"]), ""]
    out += _stage_section(result["stages"], summary)
    out += _convergence_section(result["pretrain"], result["stages"])
    out += _boundary_section(summary, BOUNDARY_FIGURE in result.get("figures", []))
    out += _upsampling_section(result["upsampling"])
    out += _amortization_section(result)
    out += ["## Verdict", "", *(f"- {line}" for line in verdict_lines(result["verdicts"])), ""]
    return "\n".join(out)


def _trunk(cfg: dict, pretrain: dict) -> str:
    """The Trunk line: the classifier this run pretrained, or the file it was given."""
    how = (f"pretrained on {cfg['pretrain']['samples']} scene patches of "
           f"{cfg['pretrain']['patch_size']} px for {cfg['pretrain']['epochs']} epochs: val "
           f"accuracy {pretrain['val_acc']:.3f}")
    source = (f"given: `{pretrain['file']}` (sha256 {pretrain['sha256'][:12]}), {how} where it "
              "was made" if "file" in pretrain else f"{how}, {pretrain['train_s']:.0f} s")
    return (f"Trunk: a VGG16 classifier (batch norm, folded away after training), {source}; "
            "convolutionalized into FCN-32s (its 7-way layer becomes score_fr: same classes).")


def _per_stage(values: dict) -> str:
    return "/".join(f"{v:g}" for v in values.values())


def _stage_section(stages: list[dict], summary: list[dict]) -> list[str]:
    lines = ["## Skip architecture (staged: 32s -> 16s -> 8s)", "",
             "| stage | pixel acc | mean acc | mean IU | f.w. IU | gain (spread) | train s | "
             "paper mean IU |", "|---|---|---|---|---|---|---|---|"]
    for r in summary:
        gain = f"{r['gain']:+.3f} ({r['gain_spread']:.3f})" if "gain" in r else "-"
        cells = [f"{r[k]:.3f} ± {r[k + '_spread'] / 2:.3f}" for k in METRICS]
        lines.append(f"| {STAGE_NAMES.get(r['arch'], r['arch'])} | " + " | ".join(cells)
                     + f" | {gain} | {r['train_s']:.0f} | {PAPER_STAGES[r['arch']][2] / 100:.3f} |")
    first, last = summary[0], summary[-1]
    part = share(first["mean_iu"], last["mean_iu"])
    lines += ["", f"Values: mean ± half the range over {first['seeds']} seed(s); gain: mean IU "
              "over the previous stage, mean of the per-seed gains (their range). "
              f"{STAGE_NAMES[first['arch']]} reaches "
              f"{'-' if part is None else f'{part:.0%}'} of "
              f"{STAGE_NAMES[last['arch']]}'s mean IU (the paper: "
              f"{PAPER_STAGES[first['arch']][2] / PAPER_STAGES[last['arch']][2]:.0%}).", "",
              "Per seed:", "", "| stage | seed | init | epochs | mean IU | pixel acc | train s |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {STAGE_NAMES.get(r['arch'], r['arch'])} | {r['seed']} | {r['init']} | "
              f"{r['epochs']} | {r['mean_iu']:.4f} | {r['pixel_acc']:.4f} | {r['train_s']:.0f} |"
              for r in stages]
    return lines + ["", f"![predictions]({FIGURE})", ""]


def _convergence_section(pretrain: dict, stages: list[dict]) -> list[str]:
    lines = ["## Convergence: val figure after each epoch", "",
             "| model | seed | after each epoch | last epoch's change |", "|---|---|---|---|"]
    where = ", where it was made" if "file" in pretrain else ""
    rows = [(f"classifier (val accuracy{where})", "-", pretrain["curve"])]
    rows += [(f"{STAGE_NAMES.get(r['arch'], r['arch'])} (mean IU)", r["seed"], r["curve"])
             for r in stages]
    for name, seed, curve in rows:
        change = f"{curve[-1] - curve[-2]:+.3f}" if len(curve) > 1 else "-"
        lines.append(f"| {name} | {seed} | {' '.join(f'{v:.3f}' for v in curve)} | {change} |")
    return lines + [""]


def _boundary_section(summary: list[dict], plot: bool) -> list[str]:
    bands = [b["band_px"] for b in summary[0]["boundary"]]
    lines = ["## Boundaries: mean IU (pixel accuracy) within k px of a ground-truth edge", "",
             "| stage | " + " | ".join(f"k = {b}" for b in bands) + " | whole image |",
             "|---" * (len(bands) + 2) + "|"]
    for r in summary:
        cells = [f"{b['mean_iu']:.3f} ({b['pixel_acc']:.3f})" for b in r["boundary"]]
        lines.append(f"| {STAGE_NAMES.get(r['arch'], r['arch'])} | " + " | ".join(cells)
                     + f" | {r['mean_iu']:.3f} ({r['pixel_acc']:.3f}) |")
    return lines + [""] + [f"![boundaries]({BOUNDARY_FIGURE})", ""] * plot


def _upsampling_section(rows: list[dict]) -> list[str]:
    if not rows:
        return ["## Upsampling", "", "Not run: `fcn-deploy reproduce --upsampling-variants` "
                "trains FCN-16s with every upsampler learned and with none learned as well.", ""]
    what = {"intermediate": "intermediate learned, final fixed bilinear (the paper)",
            "all": "all learned", "none": "all fixed bilinear"}
    lines = [f"## Upsampling ({STAGE_NAMES.get(rows[0]['arch'], rows[0]['arch'])}, seed "
             f"{rows[0]['seed']}, from the same FCN-32s)", "",
             "| upsamplers | mean IU | pixel acc | boundary mean IU (k = "
             f"{rows[0]['boundary'][0]['band_px']}) | train s |", "|---|---|---|---|---|"]
    lines += [f"| {what.get(r['variant'], r['variant'])} | {r['mean_iu']:.4f} | "
              f"{r['pixel_acc']:.4f} | {r['boundary'][0]['mean_iu']:.4f} | {r['train_s']:.0f} |"
              for r in rows]
    return lines + [""]


def _amortization_section(result: dict) -> list[str]:
    lines = ["## Amortization: the whole-image FCN vs patch by patch (random weights, batch 1)",
             "", markdown_table(result["amortization"], AMORTIZATION_COLUMNS), "",
             f"The paper: AlexNet at 500x500, {PAPER_AMORTIZATION:.2f}x (1.2 ms per 227x227 "
             "patch, 22 ms for the 10x10 output grid, on a GPU)."]
    lines += [f"- not run: {s}" for s in result.get("skipped", [])]
    lines += [f"- warning: {w}" for w in result.get("warnings", [])]
    return lines + [""]


def prediction_figure(images: np.ndarray, truth: np.ndarray, labels: dict) -> Image.Image:
    """Rows of image | ground truth | one column per stage, titled, with a class legend."""
    h, w = images.shape[1:3]
    columns = ["image", "ground truth"] + [STAGE_NAMES.get(a, a) for a in labels]
    font, title, gap = ImageFont.load_default(), 16, 4
    canvas = Image.new("RGB", (len(columns) * (w + gap), title + len(images) * (h + gap)),
                       "white")
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(columns):
        draw.text((c * (w + gap) + 2, 2), name, fill="black", font=font)
    for r, image in enumerate(images):
        tiles = [image, colorize(truth[r])] + [colorize(lab[r]) for lab in labels.values()]
        for c, tile in enumerate(tiles):
            canvas.paste(Image.fromarray(tile), (c * (w + gap), title + r * (h + gap)))
    return with_legend(canvas, [(k, name, None) for k, name in enumerate(SYNTHETIC_CLASSES)])


def boundary_figure(summary: list[dict]):
    """Mean IU against the trimap band width, one line per stage, the whole image at right."""
    import matplotlib.pyplot as plt  # the plot extra

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in summary:
        bands = [b["band_px"] for b in r["boundary"]]
        ax.plot(bands + [2 * bands[-1]], [b["mean_iu"] for b in r["boundary"]] + [r["mean_iu"]],
                "o-", label=STAGE_NAMES.get(r["arch"], r["arch"]))
    ax.set_xscale("log", base=2)
    ticks = [b["band_px"] for b in summary[0]["boundary"]]
    ax.set_xticks(ticks + [2 * ticks[-1]], [str(t) for t in ticks] + ["whole"])
    ax.set(xlabel="band around ground-truth edges (px)", ylabel="mean IU",
           title="Where the skips help: mean IU near boundaries")
    ax.legend()
    return fig


def write_report(result: dict, out_dir: Path, reference: dict | None = None) -> list[Path]:
    """report.json (without the figure's arrays), report.md ending with the verdicts (against
    ``reference``, paper_verdict.load_reference, where given) and the figures, atomically; the
    boundary plot needs matplotlib (the plot extra) and is left out without it."""
    figure = result.pop("figure_labels")
    image = prediction_figure(figure["images"], figure["truth"], figure["labels"])
    result["summary"] = stage_summary(result["stages"])
    result["verdicts"] = verdicts(result["stages"], result["summary"], reference,
                                  result["config"])
    plot = has_matplotlib()
    result["figures"] = [FIGURE] + [BOUNDARY_FIGURE] * plot
    written = write_texts({out_dir / "report.json": json.dumps(result, indent=2, default=str),
                           out_dir / "report.md": markdown_report(result)})
    with atomic_path(out_dir / FIGURE) as tmp:
        image.save(tmp, format="PNG")
    written.append(out_dir / FIGURE)
    if plot:
        import matplotlib  # the plot extra

        matplotlib.use("Agg")
        written.append(save_figure(boundary_figure(result["summary"]), out_dir / BOUNDARY_FIGURE))
    return written
