"""Options declared once, for every command that takes them: the runtime group (device,
threads, backend, pad, tile, overlap, max memory) and the data group (--data, --image-size,
--samples, --skip-bad), with choices built from the tables that own them so --help lists them
and a bad value is a usage error (exit 2)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from fcn_deploy.errors import OptionError
from fcn_deploy.models.catalog import ARCHS
from fcn_deploy.runtime.registry import DEVICES, backends

from .app import console, state

DATA_HELP = ("'synthetic' (generated cluttered scenes, the default), 'synthetic:objects' (a few "
             "large objects, as in PASCAL VOC), a PASCAL VOC-layout folder, a folder with "
             "images/ and masks/ (same stems, index PNG masks, 255 = void) or a plain folder of "
             "images (no labels: calibration, and label agreement between artifacts)")
BACKEND_HELP = ("Runtime: auto (the first installed here that runs the artifact on --device: "
                "torch for checkpoints, onnxruntime or onnxruntime-cuda for ONNX files, "
                "tensorrt for engines) or " + "; ".join(
                    f"{b.name} ({', '.join(b.kinds)}: {b.summary})"
                    + (f", pip install 'fcn-deploy[{b.extra}]'" if b.extra else "")
                    for b in backends().values()) + ".")

Arch = Literal[tuple(sorted(ARCHS))]
Device = Annotated[Literal[DEVICES], typer.Option(
    help="cpu or cuda: where torch and the ONNX runtimes run (engines run on their GPU).")]
Threads = Annotated[Optional[int], typer.Option(
    min=1, help="CPU threads of the backend (torch, onnxruntime, OpenVINO; default: their own "
    "choice).")]
Backend = Annotated[Literal[("auto", *backends())], typer.Option(help=BACKEND_HELP)]
Pad = Annotated[bool, typer.Option(
    help="Engines: pad images smaller than every profile's minimum (else they are refused).")]
Tile = Annotated[Optional[str], typer.Option(
    help="Segment in overlapping tiles of HxW (or auto: an engine's largest profile), logits "
    "blended; for images larger than the artifact takes. A side that fits one tile is not "
    "tiled.")]
Overlap = Annotated[int, typer.Option(min=0, help="Overlap of neighbouring tiles (px).")]
MaxMemory = Annotated[Optional[str], typer.Option(
    help="Memory one inference may take: 3G, 500M or bytes (powers of 1024). Images whose "
    "estimated need (the artifact's measured activation_bytes_per_pixel) exceeds it, or the "
    "memory available (MemAvailable, the cgroup limit, ulimit -v) when that is less, are "
    "segmented in tiles that fit, said once per image size.")]
Data = Annotated[str, typer.Option(help=DATA_HELP)]
ImageSize = Annotated[int, typer.Option(help="Synthetic image size (pixels, square).")]
Samples = Annotated[int, typer.Option(min=1, help="Synthetic images.")]
SkipBad = Annotated[bool, typer.Option(
    help="Skip and count corrupt or inconsistent samples of a VOC-layout folder instead of "
    "failing.")]


def open_runtime(path: Path, device: str = "cpu", threads: int | None = None, pad: bool = False,
                 backend: str = "auto"):
    """The Segmenter for ``path`` with the runtime options; with --verbose an engine says
    which profile each input shape runs in."""
    from fcn_deploy.runtime import open_segmenter  # numpy: not for --help

    return open_segmenter(path, device=device, threads=threads, pad=pad, backend=backend,
                          log=console.print if state["verbose"] else None)


def memory_limit(max_memory: str | None, tile: str | None = None) -> int | None:
    """--max-memory in bytes (None: the available memory alone); a usage error when it is
    malformed or given with --tile (both would choose the tiles)."""
    from fcn_deploy.runtime.memory import parse_budget  # stdlib only, but not for --help

    if max_memory is None:
        return None
    if tile is not None:
        raise OptionError("--tile and --max-memory both choose the tiles: give one")
    return parse_budget(max_memory)


def open_data(data: str, split: str, image_size: int, samples: int, skip_bad: bool = False,
              seed: int = 0):
    """The data set of the data options; says how many bad samples --skip-bad skipped."""
    from fcn_deploy.data import open_dataset  # numpy, PIL: not for --help

    dataset = open_dataset(data, split, image_size, samples, seed, skip_bad)
    skipped = getattr(dataset, "skipped", [])
    if skipped:
        console.print(f"skipped {len(skipped)} bad samples of {data} ({split}); first: "
                      f"{skipped[0][0]}: {skipped[0][1]}")
    return dataset


def calibration_images(data: str, image_size: int, samples: int) -> list:
    """Up to ``samples`` training images (uint8 HxWx3) for INT8 ranges and the NaN/Inf scan."""
    calib = open_data(data, "train", image_size, samples, seed=1)
    return [calib[i][0] for i in range(min(samples, len(calib)))]
