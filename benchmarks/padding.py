"""Bucketed batching (what ``serve --buckets`` runs) against one-by-one inference, per image
size class: the share of labels that agree, with serve's PaddingGuard (sizes whose labels
padding changes run unpadded) and with every image padded; images/s both ways; and the padding
overhead (pixels run / image pixels).

``python -m fcn_deploy.benchmarks.padding ARTIFACT --buckets 128,256,512 -o DIR`` writes
``padding.json`` and ``padding.md``. The images are the synthetic scenes cropped to a few
distinct sizes per class, each size repeated, as a camera fleet sends them, in executions of
``--max-batch`` images; the guard's learning (the first images of a size also run padded) is
in its time and pixels.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fcn_deploy.atomic import check_outputs, write_texts
from fcn_deploy.data import open_dataset
from fcn_deploy.runtime.factory import open_segmenter
from fcn_deploy.serving.buckets import (
    PaddingGuard,
    bucket_for,
    fill_colour,
    parse_buckets,
    run_bucketed,
)

from .report import machine_line, markdown_table

CLASSES = ((40, 128), (128, 256), (256, 512))  # (smallest, largest) side
COLUMNS = [("sizes", "sizes", "{}"), ("images", "images", "{}"),
           ("agreement_guarded", "agree, guarded", "{:.3%}"),
           ("worst_size_guarded", "worst size, guarded", "{:.3%}"),
           ("agreement_padded", "agree, all padded", "{:.3%}"),
           ("worst_size_padded", "worst size, all padded", "{:.3%}"),
           ("padded_sizes", "sizes padded after learning", "{}"),
           ("one_by_one_per_s", "one-by-one img/s", "{:.1f}"),
           ("guarded_per_s", "guarded img/s", "{:.1f}"),
           ("padded_per_s", "all padded img/s", "{:.1f}"),
           ("overhead_guarded", "pixels run, guarded", "{:.2f}x"),
           ("overhead_padded", "pixels run, all padded", "{:.2f}x")]


def class_images(data: str, lo: int, hi: int, sizes: int, per_size: int,
                 seed: int = 0) -> list[np.ndarray]:
    """``per_size`` scenes at each of ``sizes`` random H x W sizes with sides in [lo, hi)."""
    rng = np.random.default_rng([seed, lo])
    shapes = [tuple(rng.integers(lo, hi, 2)) for _ in range(sizes)]
    scenes = open_dataset(data, "val", hi, sizes * per_size, seed)
    return [scenes[k][0][:h, :w] for k, (h, w) in
            enumerate(s for s in shapes for _ in range(per_size))]


def _timed(fn) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def measure(seg, images: list[np.ndarray], buckets, max_batch: int) -> dict:
    """One size class served in executions of ``max_batch`` images, in a shuffled order:
    agreement with one-by-one, images/s and pixels run, with serve's guard (its learning runs
    included) and with every image padded."""
    run = lambda batch: {"labels": seg.predict(batch)}  # noqa: E731
    fill = fill_colour(seg.meta)
    order = np.random.default_rng(1).permutation(len(images))
    images = [images[i] for i in order]
    alone, one_s = _timed(lambda: [run(im[None])["labels"][0] for im in images])
    pixels = sum(im.shape[0] * im.shape[1] for im in images)
    row = {"sizes": len({im.shape[:2] for im in images}), "images": len(images),
           "one_by_one_per_s": len(images) / one_s}
    for name in ("guarded", "padded"):
        ran = []

        def counted(batch):
            ran.append(batch.shape[0] * batch.shape[1] * batch.shape[2])
            return run(batch)

        guard = PaddingGuard(counted, fill) if name == "guarded" else None
        out, s = _timed(lambda: [o for k in range(0, len(images), max_batch) for o in run_bucketed(
            counted, images[k:k + max_batch], buckets, fill, max_batch, guard)])
        same = [(o["labels"] == a).mean() for o, a in zip(out, alone)]
        row[f"agreement_{name}"] = float(np.mean(same))
        row[f"worst_size_{name}"] = min(float(np.mean([x for x, im in zip(same, images)
                                                       if im.shape == size.shape]))
                                        for size in images)
        row[f"overhead_{name}"] = sum(ran) / pixels
        row[f"{name}_per_s"] = len(images) / s
        if guard is not None:
            row["padded_sizes"] = sum(
                guard(*size, bucket_for(*size, buckets, max_batch)) for size in
                {im.shape[:2] for im in images})
    return row


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifact", type=Path)
    p.add_argument("--data", default="synthetic:objects")
    p.add_argument("--buckets", default="128,256,512")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--sizes", type=int, default=4, help="distinct sizes per class")
    p.add_argument("--per-size", type=int, default=32, help="images of each size")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("-o", "--out", type=Path, required=True)
    a = p.parse_args(argv)
    from .machine import machine_info  # numpy; torch when installed

    files = [a.out / "padding.json", a.out / "padding.md"]
    check_outputs([a.artifact], files)
    buckets = parse_buckets(a.buckets, a.max_batch)
    rows = []
    with open_segmenter(a.artifact, threads=a.threads) as seg:
        for lo, hi in CLASSES:
            images = class_images(a.data, lo, hi, a.sizes, a.per_size)
            rows.append({"class": f"{lo}-{hi - 1} px", **measure(seg, images, buckets,
                                                                  a.max_batch)})
            print(json.dumps(rows[-1]), flush=True)
    result = {"artifact": str(a.artifact), "buckets": a.buckets, "max_batch": a.max_batch,
              "data": a.data, "machine": machine_info(a.threads or 1), "rows": rows}
    md = (f"# Bucketed batching vs one-by-one: {a.artifact}, buckets {a.buckets}, max batch "
          f"{a.max_batch}, {a.data}\n\n{machine_line(result['machine'])}\n\n"
          + markdown_table(rows, [("class", "size class", "{}"), *COLUMNS]) + "\n")
    write_texts(dict(zip(files, [json.dumps(result, indent=1), md])))
    print(md)


if __name__ == "__main__":
    main()
