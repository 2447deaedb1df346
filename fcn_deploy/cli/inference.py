"""Running artifacts: predict (images and videos), eval (the paper's metrics per artifact),
info (what an artifact is) and segment-dataset (a folder or VOC split on Ray)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from fcn_deploy.atomic import (
    check_file_output,
    check_folder_output,
    check_outputs,
    refuse_overwrite,
    write_texts,
)
from fcn_deploy.errors import FcnDeployError, OptionError
from fcn_deploy.tasks.info import describe, text_rows
from fcn_deploy.wording import counted, short_names

from .app import command, console, fail_inputs, say, state
from .options import (
    Backend,
    Data,
    Device,
    ImageSize,
    MaxMemory,
    Overlap,
    Pad,
    SkipBad,
    Threads,
    Tile,
    memory_limit,
    open_data,
    open_runtime,
)


@command
def predict(
    artifact: Path = typer.Argument(..., help="Checkpoint, ONNX file or engine to run."),
    inputs: List[Path] = typer.Argument(..., help="Image files, video files (.mp4, .mkv, .avi, "
                                        "...; needs PyAV) or folders of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for label PNGs and overlays."),
    device: Device = "cpu",
    threads: Threads = None,
    backend: Backend = "auto",
    pad: Pad = False,
    tile: Tile = None,
    overlap: Overlap = 64,
    max_memory: MaxMemory = None,
    batch_size: int = typer.Option(1, min=1, help="Consecutive images of one size (or video "
                                   "frames) per batch."),
    overlay: bool = typer.Option(True, "--overlay/--no-overlay", help="Also write overlays: "
                                 "<name>_overlay.png per image, a blend with a legend of the "
                                 "classes; <name>_overlay.<suffix> per video, the blended frames "
                                 "at the same fps and size, no legend (the input's suffix when "
                                 "writable, else .mp4)."),
    labels: bool = typer.Option(True, "--labels/--no-labels", help="Write palette label PNGs: "
                                "<name>.png per image, <name>/000000.png ... per video frame, "
                                "named by its number in the source (a frame lost to corrupt "
                                "data leaves a gap, and is missing from the overlay video)."),
    skip_bad: bool = typer.Option(False, help="Skip and list unreadable images and videos "
                                  "instead of refusing the whole run (nothing is written then)."),
):
    """Write a palette label PNG and a colourised overlay for every input image, and an overlay
    video and per-frame label PNGs for every input video; ends with frames/s and the mean
    time per frame of each stage."""
    from fcn_deploy.media.images import collect_images  # numpy, PIL: not for --help
    from fcn_deploy.media.video import is_video  # numpy: not for --help
    from fcn_deploy.runtime.tiling import parse_tile, predictor  # numpy: not for --help
    from fcn_deploy.tasks.predict_images import (  # numpy, PIL: not for --help
        ImageJob,
        output_paths,
        predict_image_files,
        scan_inputs,
    )
    from fcn_deploy.tasks.predict_video import (  # numpy, PIL; PyAV when a video is opened
        VideoJob,
        check_label_dirs,
        predict_videos,
        scan_videos,
        video_outputs,
    )

    if not (labels or overlay):
        raise OptionError("--no-labels with --no-overlay leaves nothing to write")
    limit = memory_limit(max_memory, tile)
    files = collect_images(inputs, videos=True)
    images = [f for f in files if not is_video(f)]
    videos = [f for f in files if is_video(f)]
    refuse_overwrite([artifact, *files], output_paths(images, out, overlay, labels)
                     + video_outputs(videos, out, overlay, labels))
    check_label_dirs(files, videos, out, labels)
    check_folder_output(out)
    seg = open_runtime(artifact, device, threads, pad, backend)
    size = parse_tile(tile, seg, overlap) if tile else None  # checked before anything loads
    scan, vscan = scan_inputs(images), scan_videos(videos, out, overlay)
    bad = scan.bad + vscan.bad
    if bad and not skip_bad:
        kinds = "images or videos" if videos else "images"
        raise FcnDeployError(f"{len(bad)} of {len(files)} inputs are not readable {kinds}, "
                             f"nothing written (--skip-bad segments the others): {bad[0][1]}")
    _input_notes(artifact, seg.meta, scan)
    segment = predictor(seg, size, overlap, limit, lambda line: say(escape(line)))
    opts = dict(run=segment, out=out, names=seg.meta.class_names, overlay=overlay, labels=labels,
                log=say)
    created = not out.exists()
    try:
        with seg:
            out.mkdir(parents=True, exist_ok=True)  # only once the artifact has loaded
            failed = predict_image_files(ImageJob(**opts), scan, batch_size, seg.backend)
            failed += predict_videos(VideoJob(batch_size=batch_size, **opts), vscan.good,
                                     seg.backend)
    except BaseException:  # a run that stops (out of memory, Ctrl-C) leaves no empty folder
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    if bad:
        console.print(f"skipped {counted(len(bad), 'unreadable input')}:")
    for f, reason in bad:
        say(f"skipped: {reason}")
    fail_inputs(failed, len(files))


def _input_notes(artifact: Path, meta, scan) -> None:
    """Say once what the user may not expect of the images in ``scan`` (an InputScan): dropped
    alpha, a conversion to 8-bit RGB (a line per kind: 16-bit, float, CMYK, ...), a model of
    synthetic scenes."""
    from fcn_deploy.data.synthetic import SYNTHETIC_CLASSES  # numpy, PIL: not for --help
    from fcn_deploy.media.images import alpha_note, conversion_note  # numpy, PIL

    if scan.alpha:
        console.print(alpha_note([f.name for f in scan.alpha]))
    for conversion, files in scan.converted.items():
        console.print(conversion_note(conversion, [f.name for f in files]))
    if list(meta.class_names) == SYNTHETIC_CLASSES:
        console.print(f"note: {artifact.name} knows only fcn-deploy's synthetic scenes "
                      f"({', '.join(SYNTHETIC_CLASSES)}); on photos its labels mean nothing")


@command
def eval(
    artifacts: List[Path] = typer.Argument(..., help="Checkpoints, ONNX files and/or engines; "
                                           "the first that runs is the reference for label "
                                           "agreement."),
    data: Data = "synthetic",
    split: str = typer.Option("val"),
    image_size: ImageSize = 64,
    samples: int = typer.Option(64, min=1, help="Synthetic evaluation images."),
    batch_size: int = typer.Option(8, min=1),
    skip_bad: SkipBad = False,
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON."),
    device: Device = "cpu",
    threads: Threads = None,
    backend: Backend = "auto",
    pad: Pad = False,
    max_memory: MaxMemory = None,
):
    """The paper's four metrics per artifact, with size, label agreement and time per image.
    An artifact that cannot run here (an engine without its GPU) is listed as not run."""
    from fcn_deploy.tasks.evaluate import evaluate_artifacts  # numpy: not for --help

    limit = memory_limit(max_memory)
    check_file_output(json_out, "--json")
    check_outputs(artifacts, [json_out])
    dataset = open_data(data, split, image_size, samples, skip_bad)
    # Opened, not loaded: missing files, sidecars or class mismatches fail before any evaluation.
    segmenters = [(path, name, open_runtime(path, device, threads, pad, backend))
                  for path, name in zip(artifacts, short_names(artifacts))]
    results, not_run = evaluate_artifacts(segmenters, dataset, batch_size, limit,
                                          lambda line: say(escape(line)))
    if json_out:
        write_texts({json_out: json.dumps({"results": results, "not_run": not_run}, indent=2)})
    if not results:
        raise FcnDeployError("nothing ran: " + "; ".join(n["reason"] for n in not_run))
    console.print(_eval_table(results))
    names = {str(path): name for path, name, _ in segmenters}
    for n in not_run:
        console.print(f"not run: {names[n['artifact']]} ({n['backend']}): {n['reason']}")
    if not_run:
        raise FcnDeployError(f"{len(not_run)} of {len(artifacts)} artifacts did not run: "
                             + ", ".join(names[n["artifact"]] for n in not_run))


def _eval_table(results: dict) -> Table:
    """eval's results, one row per artifact that ran."""
    table = Table("artifact", "arch", "backend", "precision", "size MB", "pixel acc", "mean acc",
                  "mean IU", "f.w. IU", "agree vs 1st", "ms/img")
    for r in results.values():
        table.add_row(r["name"], r["arch"], r["backend"], r["precision"],
                      f"{r['size_mb']:.1f}",
                      *("-" if r[k] is None else f"{r[k]:.4f}"  # no labels
                        for k in ("pixel_acc", "mean_acc", "mean_iu", "fwavacc")),
                      f"{r['agreement_vs_first']:.4%}", f"{r['ms_per_image']:.1f}")
    return table


@command
def info(artifact: Path = typer.Argument(..., help="A checkpoint, ONNX file or engine."),
         as_json: bool = typer.Option(False, "--json", help="Print one JSON object, the same "
                                      "keys for every kind of artifact (docs/cli.md).")):
    """Print what an artifact is: architecture, classes, precision, inputs and outputs."""
    record = describe(artifact)
    if as_json:
        print(json.dumps(record, indent=2))
        return
    table = Table("field", "value", show_header=False)
    for field, text in text_rows(record):
        table.add_row(field, text)
    console.print(table)


@command
def segment_dataset(
    artifact: Path = typer.Argument(..., help="Checkpoint, ONNX file or engine to run."),
    inputs: List[Path] = typer.Argument(..., help="A VOC-layout folder (scored against its masks) "
                                        "or image files and folders."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the label PNGs (<name>.png)."),
    workers: int = typer.Option(2, min=1, help="Ray actors, one Segmenter each."),
    batch_size: int = typer.Option(4, min=1, help="Images per Ray batch."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (default: a local one)."),
    threads: Optional[int] = typer.Option(None, min=1, help="Threads per actor, for backends "
                                          "that take them [default: 1]."),
    backend: Backend = "auto",
    split: str = typer.Option("val", help="Split of a VOC-layout folder."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the summary as JSON."),
    tile: Tile = None,
    overlap: Overlap = 64,
    max_memory: MaxMemory = None,
):
    """Segment a folder or VOC split with Ray Data; resumable; metrics when masks exist.
    Exits 1 when any image failed, after writing the others and listing the failures."""
    from fcn_deploy.tasks.segment_dataset import segment_dataset as run  # numpy; ray inside

    limit = memory_limit(max_memory, tile)
    check_file_output(json_out, "--json")
    check_outputs([artifact, *inputs], [json_out])
    summary = run(artifact, inputs, out, workers, batch_size, address, threads, split,
                  log=lambda line: console.print(escape(line)), tile=tile, overlap=overlap,
                  quiet=not state["verbose"], backend=backend, max_memory=limit)
    console.print(f"{counted(summary['images'], 'image')}: {summary['processed']} processed, "
                  f"{summary['skipped']} skipped (labels already there), "
                  f"{summary['failed']} failed; "
                  f"{summary['images_per_s']:.1f} img/s with {counted(workers, 'worker')} "
                  f"(+{summary['ray_start_s']:.1f} s Ray start)")
    if "metrics" in summary:
        console.print("pixel acc {pixel_acc:.4f}, mean acc {mean_acc:.4f}, mean IU {mean_iu:.4f}, "
                      "f.w. IU {fwavacc:.4f}".format(**summary["metrics"]))
    if json_out:
        write_texts({json_out: json.dumps(summary, indent=2)})
    if summary["failed"]:
        raise FcnDeployError(f"{summary['failed']} of {summary['images']} images failed (listed "
                             "above); the others' label maps were written")
