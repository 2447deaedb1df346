"""The ``fcn-deploy`` command line: pretrain, train, eval, predict, info, export, export-triton,
build, bench, serve, load-test, segment-dataset, quant-report, reproduce."""
from __future__ import annotations

import enum
import functools
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from . import __version__
from .atomic import atomic_path, check_outputs, refuse_overwrite
from .contract.archs import ARCHS
from .contract.kinds import require_onnx, sidecar_path
from .contract.metadata import onnx_metadata
from .errors import DataError, FcnDeployError, OptionError
from .runtime.tensorrt import DEFAULT_PROFILE, Profile, parse_profile
from .shapes import parse_shape, size_list
from .tasks.info import describe, text_rows
from .wording import counted, short_names

# click's exception base, whether typer uses click or its own copy of it (typer >= 0.24).
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class _OneLineErrors(TyperGroup):
    """Usage errors (a bad option value, a missing argument) as one ``error:`` line, exit 2,
    instead of click's usage box, like every other error of the CLI."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _ClickException as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `fcn-deploy`: the help text
                e.show()
                sys.exit(e.exit_code)
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            print(f"error: {' '.join(e.format_message().split())}{hint}", file=sys.stderr)
            sys.exit(e.exit_code)
        except typer.Abort:
            print("error: aborted", file=sys.stderr)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,  # plain help: rich.markdown alone costs ~0.1 s
                  cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]},
                  help="FCN semantic segmentation from PyTorch to ONNX/TensorRT, with benchmarks.")
console = Console()
if not console.is_terminal:  # logs and pipes: room for the wide tables instead of 80 columns
    console = Console(width=160)
Arch = enum.Enum("Arch", {name: name for name in sorted(ARCHS)}, type=str)
_state = {"verbose": False}

DATA_HELP = ("'synthetic' (generated cluttered scenes, the default), 'synthetic:objects' (a few "
             "large objects, as in PASCAL VOC) or a PASCAL VOC-layout folder")
DEVICE_HELP = ("cpu or cuda (checkpoints: torch device; ONNX: onnxruntime provider; "
               "engines: always cuda).")
PAD_HELP = "Engines: pad images smaller than every profile's minimum (else they are refused)."
THREADS_HELP = "CPU threads for onnxruntime or OpenVINO (default: their own choice)."
BACKEND_HELP = ("Runtime for ONNX files: onnxruntime or openvino (CPU; pip install "
                "'fcn-deploy[openvino]'). Checkpoints run in torch, engines in TensorRT.")
SKIP_HELP = ("Skip and count corrupt or inconsistent samples of a VOC-layout folder "
             "instead of failing.")


# Optional packages -> the extra that installs them (pyproject.toml).
EXTRAS = {"torch": "torch", "onnx": "torch", "onnxconverter_common": "torch",
          "safetensors": "torch", "matplotlib": "plot", "ray": "ray", "tritonclient": "triton",
          "onnxslim": "simplify", "tensorrt_rtx": "trt", "cuda": "gpu"}


def _print_version(value: bool) -> None:
    if value:
        print(f"fcn-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks on errors, "
                                      "and the engine profile each input shape runs in."),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")):
    _state["verbose"] = verbose


def command(fn):
    """Register ``fn`` as a subcommand whose user errors print one line and exit 1; Ctrl-C
    exits 130 (128 + SIGINT, the shell's convention)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ModuleNotFoundError as e:
            extra = EXTRAS.get((e.name or "").partition(".")[0])
            if extra is None or _state["verbose"]:
                raise
            print(f"error: {fn.__name__.replace('_', '-')} needs {e.name}, which is not installed "
                  f"here: pip install 'fcn-deploy[{extra}]'", file=sys.stderr)
            raise typer.Exit(1) from None
        except BrokenPipeError:  # `fcn-deploy info --json | head`: the reader has gone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error
            raise typer.Exit(1) from None
        except (FcnDeployError, ValueError, OSError) as e:
            if _state["verbose"]:
                raise
            print(f"error: {e}", file=sys.stderr)
            # a bad option value is a usage error: 2, as click gives for the ones it checks
            raise typer.Exit(2 if isinstance(e, OptionError) else 1) from None
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
    return app.command()(run)


@command
def train(
    arch: Arch = typer.Option(Arch("fcn32s-vgg16"), help="Architecture (from the model registry)."),
    out: Path = typer.Option(..., "--out", "-o",
                             help="Checkpoint to write (.safetensors), every epoch."),
    width: float = typer.Option(0.125, help="Channel width multiplier (1 = the paper's VGG16)."),
    data: str = typer.Option("synthetic", help=DATA_HELP),
    image_size: int = typer.Option(64, help="Synthetic image size (pixels, square)."),
    samples: int = typer.Option(512, help="Synthetic training images per epoch."),
    crop: Optional[int] = typer.Option(None, help="Random square crop for batching VOC images."),
    epochs: int = typer.Option(8, min=1),
    batch_size: int = typer.Option(8, min=1),
    optimizer: str = typer.Option("adam", help="adam (trains from scratch reliably) or sgd "
                                  "(momentum, the paper's choice for fine-tuning pretrained "
                                  "trunks)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (linear warm-up, cosine "
                                       "decay); default 1e-3 for adam, 1e-2 for sgd."),
    momentum: float = typer.Option(0.9, help="SGD momentum."),
    weight_decay: Optional[float] = typer.Option(None, help="Default 0 for adam, 5e-4 for sgd."),
    warmup_epochs: float = typer.Option(0.3),
    learn_upsample: str = typer.Option("intermediate", help="Which upsamplers learn: intermediate "
                                       "(the paper: all but the last), all, none."),
    init: Optional[Path] = typer.Option(None, help="Initialise from a checkpoint: a coarser FCN "
                                        "(staged 32s->16s->8s) or a torchvision-layout "
                                        "VGG16/AlexNet."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last epoch."),
    skip_bad: bool = typer.Option(False, help=SKIP_HELP),
    seed: int = typer.Option(0),
):
    """Train an FCN; a checkpoint with its metadata is written atomically after every epoch."""
    from fcn_deploy.models.checkpoint import optimizer_path  # torch
    from fcn_deploy.tasks.train import TrainConfig, train as run_train  # torch

    if out.is_dir():
        raise FcnDeployError(f"--out {out} is a folder; give the checkpoint file to write")
    # before the epochs, not after the first one; --resume continues a run in place
    check_outputs([init], [out, optimizer_path(out)])
    dataset = _open_data(data, "train", image_size, samples, skip_bad, seed)
    cfg = TrainConfig(arch=arch.value, width=width, epochs=epochs, batch_size=batch_size,
                      optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay,
                      warmup_epochs=warmup_epochs, crop=crop, learn_upsample=learn_upsample,
                      seed=seed)
    run_train(cfg, dataset, out, init=init, resume=resume, log=console.print)
    console.print(f"checkpoint: {out}")


@command
def pretrain(
    out: Path = typer.Option(..., "--out", "-o", help="Classifier checkpoint to write "
                             "(.safetensors, torchvision VGG16 layout)."),
    width: float = typer.Option(0.125, help="Channel width multiplier (1 = VGG16)."),
    samples: int = typer.Option(1024, min=1, help="Training patches (rendered once)."),
    val_samples: int = typer.Option(256, min=1, help="Val patches for the accuracy."),
    epochs: int = typer.Option(4, min=1),
    batch_size: int = typer.Option(16, min=1),
    lr: float = typer.Option(1e-3, help="Peak Adam learning rate (warm-up, cosine decay)."),
    seed: int = typer.Option(0),
):
    """Pretrain a VGG16 classifier on synthetic scene patches (the paper's ImageNet VGG16):
    trained with batch norm, folded into a plain VGG16 for `train --init`."""
    from fcn_deploy.tasks.pretrain import PretrainConfig, pretrain_classifier  # torch

    if out.is_dir():
        raise FcnDeployError(f"--out {out} is a folder; give the checkpoint file to write")
    cfg = PretrainConfig(width=width, samples=samples, val_samples=val_samples, epochs=epochs,
                         batch_size=batch_size, lr=lr, seed=seed)
    result = pretrain_classifier(cfg, out, console.print)
    console.print(f"classifier: {out} (val accuracy {result['val_acc']:.3f}, "
                  f"{result['train_s']:.0f} s); next: fcn-deploy train --init {out}")


@command
def eval(
    artifacts: List[Path] = typer.Argument(..., help="Checkpoints, ONNX files and/or engines; "
                                           "the first that runs is the reference for label "
                                           "agreement."),
    data: str = typer.Option("synthetic", help=DATA_HELP),
    split: str = typer.Option("val"),
    image_size: int = typer.Option(64, help="Synthetic image size."),
    samples: int = typer.Option(64, help="Synthetic evaluation images."),
    batch_size: int = typer.Option(8, min=1),
    skip_bad: bool = typer.Option(False, help=SKIP_HELP),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON."),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
    threads: Optional[int] = typer.Option(None, min=1, help=THREADS_HELP),
    backend: str = typer.Option("onnxruntime", help=BACKEND_HELP),
    pad: bool = typer.Option(False, help=PAD_HELP),
):
    """The paper's four metrics per artifact, with size, label agreement and time per image.
    An artifact that cannot run here (an engine without its GPU) is listed as not run."""
    from fcn_deploy.tasks.evaluate import evaluate, label_agreement  # numpy: not for --help

    check_outputs(artifacts, [json_out])
    dataset = _open_data(data, split, image_size, samples, skip_bad)
    # Opened, not loaded: missing files, sidecars or class mismatches fail before any evaluation.
    segmenters = [(path, _segmenter(path, device, threads, pad, backend)) for path in artifacts]
    for path, seg in segmenters:
        _check_classes(seg.meta, dataset, path)
    results, not_run, reference = {}, [], None
    names = dict(zip(map(str, artifacts), short_names(artifacts)))
    for path, seg in segmenters:
        labels: list = []
        try:
            with seg:
                r = evaluate(seg.predict, dataset, seg.meta.num_classes, batch_size,
                             f"eval {names[str(path)]}", labels)
        except DataError:
            raise  # the data's fault, not the artifact's
        except FcnDeployError as e:  # the others' results still count, as in bench
            not_run.append({"artifact": str(path), "backend": seg.backend, "reason": str(e)})
            continue
        reference = labels if reference is None else reference  # the first that ran
        results[str(path)] = {"name": names[str(path)], "arch": seg.meta.arch,
                              "backend": seg.backend,
                              "precision": seg.precision, "size_mb": path.stat().st_size / 1e6, **r,
                              "agreement_vs_first": label_agreement(labels, reference)}
    if json_out:
        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps({"results": results, "not_run": not_run}, indent=2))
    if not results:
        raise FcnDeployError("nothing ran: " + "; ".join(n["reason"] for n in not_run))
    console.print(_eval_table(results))
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
                      *(f"{r[k]:.4f}" for k in ("pixel_acc", "mean_acc", "mean_iu", "fwavacc")),
                      f"{r['agreement_vs_first']:.4%}", f"{r['ms_per_image']:.1f}")
    return table


def _open_data(data: str, split: str, image_size: int, samples: int, skip_bad: bool, seed: int = 0):
    from .data import open_dataset  # numpy, PIL: not for --help

    dataset = open_dataset(data, split, image_size, samples, seed, skip_bad)
    skipped = getattr(dataset, "skipped", [])
    if skipped:
        console.print(f"skipped {len(skipped)} bad samples of {data} ({split}); first: "
                      f"{skipped[0][0]}: {skipped[0][1]}")
    return dataset


def _calibration_images(data: str, image_size: int, samples: int) -> list:
    """Up to ``samples`` training images (uint8 HxWx3) for INT8 ranges and the NaN/Inf scan."""
    calib = _open_data(data, "train", image_size, samples, False, seed=1)
    return [calib[i][0] for i in range(min(samples, len(calib)))]


def _check_classes(meta: dict, dataset, path: Path) -> None:
    if meta.num_classes != dataset.num_classes:
        raise FcnDeployError(f"{path} predicts {meta.num_classes} classes but the data set has "
                             f"{dataset.num_classes}")


@command
def predict(
    artifact: Path = typer.Argument(..., help="Checkpoint, ONNX file or engine to run."),
    inputs: List[Path] = typer.Argument(..., help="Image files, video files (.mp4, .mkv, .avi, "
                                        "...; needs PyAV) or folders of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for label PNGs and overlays."),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
    threads: Optional[int] = typer.Option(None, min=1, help=THREADS_HELP),
    backend: str = typer.Option("onnxruntime", help=BACKEND_HELP),
    pad: bool = typer.Option(False, help=PAD_HELP),
    tile: Optional[str] = typer.Option(None, help="Segment in overlapping tiles of HxW (or auto: "
                                       "an engine's largest profile), logits blended; for images "
                                       "larger than the artifact takes."),
    overlap: int = typer.Option(64, min=0, help="Overlap of neighbouring tiles (px)."),
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
    from fcn_deploy.tasks.predict_images import (  # numpy, PIL: not for --help  # numpy, PIL
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

    from .runtime.tiling import parse_tile, predictor  # numpy: not for --help

    if not (labels or overlay):
        raise OptionError("--no-labels with --no-overlay leaves nothing to write")
    files = collect_images(inputs, videos=True)
    images = [f for f in files if not is_video(f)]
    videos = [f for f in files if is_video(f)]
    refuse_overwrite([artifact, *files], output_paths(images, out, overlay, labels)
                     + video_outputs(videos, out, overlay, labels))
    check_label_dirs(files, videos, out, labels)
    _out_folder(out)
    seg = _segmenter(artifact, device, threads, pad, backend)
    size = parse_tile(tile, seg, overlap) if tile else None  # checked before anything loads
    scan, vscan = scan_inputs(images), scan_videos(videos, out, overlay)
    bad = scan.bad + vscan.bad
    if bad and not skip_bad:
        kinds = "images or videos" if videos else "images"
        raise FcnDeployError(f"{len(bad)} of {len(files)} inputs are not readable {kinds}, "
                             f"nothing written (--skip-bad segments the others): {bad[0][1]}")
    _input_notes(artifact, seg.meta, scan)
    opts = dict(run=predictor(seg, size, overlap), out=out, names=seg.meta.class_names,
                overlay=overlay, labels=labels, log=_say)
    with seg:
        out.mkdir(parents=True, exist_ok=True)  # only once the artifact has loaded
        failed = predict_image_files(ImageJob(**opts), scan, batch_size, seg.backend)
        failed += predict_videos(VideoJob(batch_size=batch_size, **opts), vscan.good,
                                 seg.backend)
    if bad:
        console.print(f"skipped {counted(len(bad), 'unreadable input')}:")
    for f, reason in bad:
        _say(f"skipped: {reason}")
    _fail(failed, len(files))


def _fail(failed: list[str], inputs: int) -> None:
    """List the inputs that failed mid-run (``failed: ...``), then exit 1."""
    for line in failed:
        _say(f"failed: {line}")
    if failed:
        others = "; the others were written" if inputs > len(failed) else ""
        raise FcnDeployError(f"{len(failed)} of {inputs} inputs failed (listed above){others}")


def _say(line: str) -> None:
    """Print one log line unwrapped (a summary line stays one line in a narrow log)."""
    console.print(line, soft_wrap=True)


def _input_notes(artifact: Path, meta, scan) -> None:
    """Say once what the user may not expect of the images in ``scan`` (an InputScan): dropped
    alpha, a conversion to 8-bit RGB (a line per kind: 16-bit, float, CMYK, ...), a model of
    synthetic scenes."""
    from fcn_deploy.media.images import alpha_note, conversion_note  # numpy, PIL: not for --help

    from .data.synthetic import SYNTHETIC_CLASSES  # numpy, PIL: not for --help

    if scan.alpha:
        console.print(alpha_note([f.name for f in scan.alpha]))
    for conversion, files in scan.converted.items():
        console.print(conversion_note(conversion, [f.name for f in files]))
    if list(meta.class_names) == SYNTHETIC_CLASSES:
        console.print(f"note: {artifact.name} knows only fcn-deploy's synthetic scenes "
                      f"({', '.join(SYNTHETIC_CLASSES)}); on photos its labels mean nothing")


def _out_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FcnDeployError(f"--out {out} is a file; give a folder")


def _segmenter(path: Path, device: str, threads: Optional[int], pad: bool = False,
               backend: str = "onnxruntime"):
    """The Segmenter for ``path``: torch on ``device``, an ONNX file in ``backend``."""
    from fcn_deploy.runtime.factory import open_segmenter  # numpy: not for --help

    return open_segmenter(path, device=device, threads=threads, pad=pad, backend=backend,
                          log=console.print if _state["verbose"] else None)


@command
def export(
    checkpoint: Optional[Path] = typer.Argument(None, help="Training checkpoint (.safetensors), "
                                                "a .pth state dict (original FCN layout or a "
                                                "torchvision classifier) with --arch, or an "
                                                "FP32 fcn-deploy ONNX file to convert to "
                                                "--precision fp16|int8."),
    out: Path = typer.Option(..., "--out", "-o", help="ONNX file to write."),
    precision: str = typer.Option("fp32", help="fp32, fp16 (FP32 I/O kept) or int8 (Q/DQ)."),
    output: Optional[str] = typer.Option(None, help="Computed in the graph: logits, probs "
                                         "(softmax), labels (uint8 argmax) or labels+score "
                                         "(uint8 labels + float max probability) [default: "
                                         "logits; an ONNX file keeps its own]."),
    arch: Optional[Arch] = typer.Option(None, help="Architecture of a foreign state dict or "
                                        "--random-init."),
    random_init: bool = typer.Option(False, help="Export an untrained net (benchmarks, tests)."),
    width: Optional[float] = typer.Option(None, help="Width for --random-init (default 1)."),
    num_classes: Optional[int] = typer.Option(None, min=1,
                                              help="Classes for --random-init (default 21)."),
    input_format: Optional[str] = typer.Option(None, "--input", help="float (normalized "
                                               "float32 N x 3 x H x W; the runtime normalizes) "
                                               "or rgb8 (uint8 N x H x W x 3 RGB frames; cast, "
                                               "normalization and transpose inside the graph, "
                                               "in FP32) [default: float; an ONNX file keeps "
                                               "its own]."),
    simplify: bool = typer.Option(False, help="Run onnxslim, then verify again."),
    calib_data: str = typer.Option("synthetic", help="INT8 calibration and FP16/INT8 evaluation "
                                   "data: " + DATA_HELP),
    calib_samples: int = typer.Option(16, min=1, help="Calibration images (INT8 ranges; the "
                                      "first 4 also feed the NaN/Inf scan of FP16/INT8 graphs)."),
    calib_method: str = typer.Option("minmax", help="minmax, entropy or percentile."),
    int8_scheme: str = typer.Option("s8s8", help="s8s8 (symmetric: the one INT8 file for "
                                    "TensorRT and for CPUs in OpenVINO, which runs it as fast "
                                    "as onnxruntime runs u8s8) or u8s8 (unsigned activations: "
                                    "only for onnxruntime on x86 CPUs)."),
    reduce_range: bool = typer.Option(False, help="INT8: 7-bit weights, so onnxruntime and "
                                      "OpenVINO agree on x86 CPUs without VNNI (AVX2 only), "
                                      "where 8-bit weights can saturate int16 sums."),
    keep_fp32: str = typer.Option("", help="Comma-separated node names kept in FP32."),
    keep_fp16: str = typer.Option("", help="INT8: comma-separated conv layers run in FP16."),
    upsample: str = typer.Option("fp16", help="INT8: upsampling (ConvTranspose) layers in fp16, "
                                 "or int8 with per-tensor weight scales."),
    fallback: Optional[Path] = typer.Option(None, help="File of layer names kept in FP32 (one per "
                                            "line), e.g. the fallback.txt of quant-report."),
    image_size: int = typer.Option(64, help="Synthetic calibration/evaluation image size."),
    eval_samples: int = typer.Option(64, min=0,
                                     help="Evaluation images for FP16/INT8 vs FP32 (0: skip)."),
    engine: Optional[Path] = typer.Option(None, help="Also build a TensorRT engine here (backend "
                                          "auto, profile 1x3x64x64:1x3x512x512:4x3x1024x1024)."),
):
    """Export to ONNX (dynamic N/H/W, metadata), verified against PyTorch; optionally FP16/INT8.
    An FP32 ONNX file converts to FP16/INT8 the same way, from the metadata it carries."""
    from .exporters.export import ExportOptions, run_export  # torch, onnx

    opts = ExportOptions.from_cli(
        checkpoint=checkpoint, out=out, precision=precision, output=output,
        input_format=input_format, arch=arch,
        random_init=random_init, width=width, num_classes=num_classes, simplify=simplify,
        calib_data=calib_data, calib_samples=calib_samples, calib_method=calib_method,
        int8_scheme=int8_scheme, keep_fp32=keep_fp32, keep_fp16=keep_fp16, upsample=upsample,
        fallback=fallback, image_size=image_size, eval_samples=eval_samples, engine=engine,
        reduce_range=reduce_range)
    run_export(opts, log=console.print)


@command
def export_triton(
    artifact: Path = typer.Argument(..., help="An fcn-deploy ONNX file or engine."),
    repo: Path = typer.Option(..., "--repo", help="Triton model repository folder."),
    name: str = typer.Option("fcn", help="Model name in the repository."),
    max_batch_size: int = typer.Option(8, help="Triton max_batch_size (engines: at most the "
                                       "largest profile batch)."),
    instances: int = typer.Option(1, help="Instances per device (instance_group count)."),
    kind: str = typer.Option("gpu", help="Instance kind: gpu or cpu."),
    labels_ensemble: bool = typer.Option(True, help="For logits models, also write NAME_argmax "
                                         "and the ensemble NAME_labels (uint8 label maps)."),
    force: bool = typer.Option(False, help="Replace models of the same names."),
    backend: str = typer.Option("auto", help="auto (onnxruntime for ONNX files, tensorrt_plan "
                                "for engines) or python: a model.py serving the artifact "
                                "through fcn-deploy's runtime, for servers without those "
                                "backends (e.g. PyTriton's tritonserver; use --kind cpu there "
                                "for ONNX files without onnxruntime-gpu)."),
):
    """Write a Triton model repository (config.pbtxt, model file, labels) for an artifact."""
    from .exporters.triton import export_triton as run_export_triton  # onnx, tritonclient

    written = run_export_triton(artifact, repo, name, max_batch_size, instances, kind,
                                labels_ensemble, force, backend)
    console.print(f"wrote Triton models {', '.join(p.name for p in written)} to {repo}")


@command
def serve(
    artifact: Path = typer.Argument(..., help="ONNX file (CPU or GPU), engine or checkpoint "
                                    "(GPU, needs torch) to serve."),
    name: Optional[str] = typer.Option(None, help="Triton model name (default: the file's "
                                       "stem, other characters than A-Z a-z 0-9 . _ - as _)."),
    host: str = typer.Option("0.0.0.0", help="Address the endpoints listen on."),
    http_port: int = typer.Option(8000, min=1, max=65535, help="HTTP/REST port."),
    grpc_port: int = typer.Option(8001, min=1, max=65535, help="gRPC port."),
    metrics_port: int = typer.Option(8002, min=1, max=65535, help="Prometheus metrics port."),
    max_batch: int = typer.Option(8, min=1, help="Most images run as one batch (engines: at "
                                  "most each profile's batch)."),
    buckets: Optional[str] = typer.Option(None, help="Shape buckets HxW,... (ONNX files, "
                                          "checkpoints): requests of different sizes are "
                                          "padded to the smallest bucket holding them and "
                                          "batched together; engines use their profiles. "
                                          "Without: each size is its own batch."),
    instances: int = typer.Option(2, min=1, help="Triton model instances: requests in flight "
                                  "at once, batched together across sizes."),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
    threads: Optional[int] = typer.Option(None, min=1, help=THREADS_HELP),
    backend: str = typer.Option("onnxruntime", help=BACKEND_HELP),
):
    """Serve an artifact with Triton Inference Server (PyTriton) until Ctrl-C or SIGTERM:
    input `image` (uint8 H x W x 3 RGB), outputs `labels` (uint8 H x W) and, for
    labels+score artifacts, `score` (float32 H x W)."""
    from .serving import server  # numpy; pytriton when it starts

    opts = server.ServeOptions(name=name or server.model_name(artifact), host=host,
                               http_port=http_port, grpc_port=grpc_port,
                               metrics_port=metrics_port, max_batch=max_batch,
                               instances=instances)
    server.check_name(opts.name)
    if not _state["verbose"]:  # --verbose: tritonserver's lines on the console
        opts.log_file = server.default_log_file(opts)
    seg = _serve_segmenter(artifact, device, threads, backend)
    bucket_list = _serve_buckets(seg, buckets, max_batch)
    server.check_ports(host, [http_port, grpc_port, metrics_port])
    _require_pytriton()
    server.serve(seg, opts, bucket_list, log=lambda line: print(line, flush=True),
                 verbose=_state["verbose"])


def _serve_segmenter(artifact: Path, device: str, threads: Optional[int], backend: str):
    """serve's Segmenter; an engine pads images smaller than its profiles (buckets do)."""
    return _segmenter(artifact, device, threads, pad=True, backend=backend)


def _serve_buckets(seg, text: Optional[str], max_batch: int) -> list:
    """--buckets, or an engine's profiles; [] (each size its own batch) without either."""
    from .serving.buckets import parse_buckets  # numpy: not for --help
    from .serving.server import engine_buckets  # numpy: not for --help

    profiles = engine_buckets(seg, max_batch)
    if text is not None and profiles:
        raise OptionError("--buckets is for ONNX files and checkpoints; an engine's buckets "
                          "are its profiles")
    return parse_buckets(text, max_batch) if text is not None else profiles


def _require_pytriton() -> None:
    """One error line, before anything starts, where the serve extra is not installed."""
    import importlib.util  # only serve asks

    if importlib.util.find_spec("pytriton") is None:
        raise FcnDeployError("serve needs nvidia-pytriton, which is not installed here: "
                             "pip install 'fcn-deploy[serve]'")


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
    from .benchmarks import load  # numpy, tritonclient when it runs
    from .benchmarks.machine import machine_info  # numpy; torch when installed
    from .shapes import int_list, size_list  # parsing only

    check_outputs([], [out / "load.json", out / "load.md"])
    hw = size_list(sizes, "--sizes")
    levels = int_list(concurrency, "--concurrency")
    endpoint = load.Endpoint.probe(url, model)
    rows = load.sweep(endpoint, load.mixed_images(hw), levels, requests, seconds,
                      log=console.print)
    result = {"url": url, "model": model, "sizes": [f"{h}x{w}" for h, w in hw],
              "requests": requests, "seconds": seconds, "rows": rows,
              "machine": machine_info(threads=max(levels))}
    for path in load.write_report(result, out):
        console.print(f"wrote {path}")
    failed = sum(r["errors"] for r in rows)
    if failed:
        raise FcnDeployError(f"{counted(failed, 'request')} failed "
                             f"(first: {rows[0]['first_error'] or ''})")


@command
def segment_dataset(
    artifact: Path = typer.Argument(..., help="Checkpoint, ONNX file or engine to run."),
    inputs: List[Path] = typer.Argument(..., help="A VOC-layout folder (scored against its masks) "
                                        "or image files and folders."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the label PNGs (<name>.png)."),
    workers: int = typer.Option(2, min=1, help="Ray actors, one Segmenter each."),
    batch_size: int = typer.Option(4, min=1, help="Images per Ray batch."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (default: a local one)."),
    threads: Optional[int] = typer.Option(1, min=1, help="onnxruntime/OpenVINO threads per "
                                          "actor."),
    backend: str = typer.Option("onnxruntime", help=BACKEND_HELP),
    split: str = typer.Option("val", help="Split of a VOC-layout folder."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the summary as JSON."),
    tile: Optional[str] = typer.Option(None, help="Segment each image in overlapping tiles of "
                                       "HxW (or auto), as predict --tile does."),
    overlap: int = typer.Option(64, min=0, help="Overlap of neighbouring tiles (px)."),
):
    """Segment a folder or VOC split with Ray Data; resumable; metrics when masks exist.
    Exits 1 when any image failed, after writing the others and listing the failures."""

    from fcn_deploy.tasks.segment_dataset import segment_dataset as run_segment  # numpy; ray inside

    if json_out is not None and json_out.is_dir():
        raise FcnDeployError(f"--json {json_out} is a folder")
    check_outputs([artifact, *inputs], [json_out])
    summary = run_segment(artifact, inputs, out, workers, batch_size, address, threads, split,
                          log=lambda line: console.print(escape(line)), tile=tile,
                          overlap=overlap, quiet=not _state["verbose"], backend=backend)
    console.print(f"{counted(summary['images'], 'image')}: {summary['processed']} processed, "
                  f"{summary['skipped']} skipped (labels already there), "
                  f"{summary['failed']} failed; "
                  f"{summary['images_per_s']:.1f} img/s with {counted(workers, 'worker')} "
                  f"(+{summary['ray_start_s']:.1f} s Ray start)")
    if "metrics" in summary:
        m = summary["metrics"]
        console.print("pixel acc {pixel_acc:.4f}, mean acc {mean_acc:.4f}, mean IU {mean_iu:.4f}, "
                      "f.w. IU {fwavacc:.4f}".format(**m))
    if json_out:
        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
    if summary["failed"]:
        raise FcnDeployError(f"{summary['failed']} of {summary['images']} images failed (listed "
                             "above); the others' label maps were written")


QUANT_REPORT_FILES = ("quant_report.json", "quant_report.md", "fallback.txt")


@command
def quant_report(
    onnx_file: Path = typer.Argument(..., help="An FP32 fcn-deploy ONNX file (logits or labels)."),
    out: Path = typer.Option(..., "--out", "-o",
                             help="Folder for quant_report.json/.md and fallback.txt."),
    data: str = typer.Option("synthetic", help="Evaluation data: " + DATA_HELP),
    samples: int = typer.Option(64, min=1, help="Synthetic evaluation images."),
    image_size: int = typer.Option(64, help="Synthetic image size."),
    calib_samples: int = typer.Option(16, min=1, help="Calibration images."),
    calib_method: str = typer.Option("minmax", help="minmax, entropy or percentile."),
    int8_scheme: str = typer.Option("s8s8", help="s8s8 or u8s8."),
    max_drop: float = typer.Option(0.05, min=0, help="A layer goes to the fallback list when its "
                                   "INT8 alone lowers mean IU by more than this (points)."),
):
    """Per-layer INT8 sensitivity: one layer quantized at a time, ranked, with a fallback list."""
    from .exporters.quant_report import markdown, quant_report as run_report  # torch, onnx

    _out_folder(out)
    check_outputs([onnx_file], [out / name for name in QUANT_REPORT_FILES])
    meta = onnx_metadata(require_onnx(onnx_file, "quant-report"))
    if meta.precision != "fp32":
        raise FcnDeployError(f"{onnx_file} is {meta.precision}; "
                             "quant-report needs the FP32 ONNX")
    dataset = _open_data(data, "val", image_size, samples, False)
    _check_classes(meta, dataset, onnx_file)
    calibration = _calibration_images(data, image_size, calib_samples)
    report = run_report(onnx_file, calibration, dataset, calib_method, int8_scheme, max_drop,
                        progress=lambda layer, r: console.print(
                            f"{layer}: mean IU {r['delta_mean_iu_points']:+.3f} points, "
                            f"agreement {r['agreement']:.4%}"))
    out.mkdir(parents=True, exist_ok=True)
    texts = (json.dumps(report, indent=2), markdown(report),
             "".join(f"{layer}\n" for layer in report["fallback"]))
    for name, text in zip(QUANT_REPORT_FILES, texts):
        with atomic_path(out / name) as tmp:
            tmp.write_text(text)
    console.print(markdown(report))
    console.print(f"fallback ({counted(len(report['fallback']), 'layer')}): {out / 'fallback.txt'}")


@command
def build(
    onnx_file: Path = typer.Argument(..., help="An fcn-deploy ONNX file (fp32, fp16 or int8)."),
    out: Path = typer.Option(..., "--out", "-o",
                             help="Engine file to write (a .json sidecar goes beside it)."),
    min_shape: Optional[str] = typer.Option(None, "--min", help="Smallest input, NxCxHxW (trtexec "
                                            "syntax); --min/--opt/--max default to "
                                            f"{DEFAULT_PROFILE}."),
    opt_shape: Optional[str] = typer.Option(None, "--opt", help="Shape to tune for."),
    max_shape: Optional[str] = typer.Option(None, "--max", help="Largest input."),
    profile: List[str] = typer.Option([], help="A profile MIN:OPT:MAX (repeatable), e.g. "
                                      "1x3x256x256:1x3x512x512:1x3x640x640."),
    buckets: Optional[str] = typer.Option(None, help="Profiles from image sizes, e.g. "
                                          "512,768x1024: one per bucket (min 1x1, opt and max at "
                                          "the bucket)."),
    max_batch: int = typer.Option(1, min=1, help="Largest batch of each --buckets profile."),
    backend: str = typer.Option("auto", help="auto (tensorrt if installed, else tensorrt-rtx), "
                                "tensorrt or tensorrt-rtx."),
    compute_capability: List[str] = typer.Option([], help="TensorRT-RTX targets, e.g. SM86 "
                                                 "(repeatable), or CURRENT (this machine's GPU); "
                                                 "default SM75, SM80, SM86, SM89, SM120."),
    timing_cache: Optional[Path] = typer.Option(None, help="Timing cache to read and update."),
    workspace: Optional[int] = typer.Option(None, min=1, help="Workspace memory limit (MiB)."),
    scan_samples: int = typer.Option(4, min=0, help="Images for the NaN/Inf scan of the engine "
                                     "(runs where a GPU it was built for is present; 0: off)."),
    calib_data: str = typer.Option("synthetic", help="Scan images: " + DATA_HELP),
):
    """Compile a TensorRT engine; precision comes from the graph (FP16 weights, Q/DQ nodes)."""
    from .exporters.tensorrt_build import bucket_profiles, build_engine  # numpy; tensorrt inside

    # the timing cache is read and updated by design: not an output here
    check_outputs([onnx_file, sidecar_path(onnx_file)], [out, sidecar_path(out)])
    explicit = [min_shape, opt_shape, max_shape]
    profiles = [parse_profile(p) for p in profile]
    if any(explicit):
        if not all(explicit):
            raise OptionError("give --min, --opt and --max together")
        profiles.insert(0, Profile(*(parse_shape(s) for s in explicit)))
    if buckets is not None:
        profiles += bucket_profiles(size_list(buckets, "--buckets"), max_batch)
    profiles = profiles or [DEFAULT_PROFILE]
    side = max(profiles[0].opt[2:])  # synthetic scan images; scan_engine crops them to the opt
    scan = _calibration_images(calib_data, side, scan_samples) if scan_samples else []
    build_engine(onnx_file, out, profiles, backend, compute_capability or None, timing_cache,
                 workspace, log=console.print, scan_images=scan)





@command
def bench(
    artifacts: List[Path] = typer.Argument(None, help="Checkpoints, ONNX files and/or engines to "
                                           "time."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for bench.json, bench.md and plots."),
    amortization: bool = typer.Option(False, help="FCN vs sliding-window patches for classifiers."),
    amort_models: str = typer.Option("alexnet,vgg16", help="Classifiers (torchvision layout, "
                                     "random weights); NAME:S/S limits one to its own sizes, "
                                     "e.g. alexnet,vgg16:500."),
    amort_sizes: str = typer.Option("224,500,1000", help="Square image sides for --amortization."),
    amort_backends: str = typer.Option("torch,onnxruntime",
                                       help="torch, torch-frozen (TorchScript, weights "
                                       "packed once), torch-fp16 (CUDA), onnxruntime (CPU)."),
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
    seconds: float = typer.Option(2.0, min=0, help="Time budget per shape (at least 3 runs)."),
    torch_modes: str = typer.Option("fp32", help="For checkpoints: fp32|fp16 with -cl "
                                    "(channels_last), -compile, -graph (CUDA graph), "
                                    "e.g. fp32,fp32-compile."),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
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
    backends: Optional[str] = typer.Option(None, help="Runtimes for ONNX files, side by side: "
                                           "onnxruntime,openvino [default: every one installed "
                                           "here that runs on --device]."),
    runtime_cache: Optional[Path] = typer.Option(None, help="TensorRT-RTX engines: folder of "
                                                 "kernel caches (ENGINE.rtxcache, read, then "
                                                 "updated); a second load with it is timed too."),
):
    """Amortization vs the patch baseline, and latency of every artifact on every backend here."""
    from .benchmarks.bench import BenchConfig, run_bench  # numpy; torch for the rows needing it
    from .benchmarks.report import headlines, machine_line, write_report  # plots: matplotlib

    cfg = BenchConfig.from_cli(
        artifacts=artifacts, out=out, amortization=amortization, amort_models=amort_models,
        amort_sizes=amort_sizes, amort_backends=amort_backends, amort_batch=amort_batch,
        amort_profile=amort_profile,
        arch=arch, width=width, sizes=sizes, batches=batches, warmup=warmup, iters=iters,
        seconds=seconds, torch_modes=torch_modes, device=device, threads=threads,
        cuda_graph=cuda_graph, data=data, samples=samples, image_size=image_size,
        static=static, tile=tile, overlap=overlap, runtime_cache=runtime_cache,
        backends=backends)
    result = run_bench(cfg, "fcn-deploy " + " ".join(sys.argv[1:]), log=console.print)
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
def reproduce(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for report.md, report.json, the "
                             "figure and the checkpoints."),
    seeds: Optional[int] = typer.Option(None, min=1, help="Seeds per stage, 0, 1, ... "
                                        "[default: 2]"),
    epochs: Optional[str] = typer.Option(None, help="Epochs of FCN-32s, FCN-16s, FCN-8s "
                                         "[default: 6,2,2]."),
    image_size: Optional[int] = typer.Option(None, min=32, help="Synthetic scene side "
                                             "[default: 192]."),
    train_samples: Optional[int] = typer.Option(None, min=1, help="Training scenes per epoch "
                                                "[default: 384]."),
    val_samples: Optional[int] = typer.Option(None, min=1, help="Val scenes [default: 96]."),
    pretrain_samples: Optional[int] = typer.Option(None, min=1, help="Classifier training "
                                                   "patches [default: 1024]."),
    pretrain_epochs: Optional[int] = typer.Option(None, min=1, help="Classifier epochs "
                                                  "[default: 4]."),
    amort_size: Optional[int] = typer.Option(None, help="Amortization image side "
                                             "[default: 500, the paper's]."),
):
    """The paper's experiments on the synthetic scenes: classifier -> FCN-32s -> 16s -> 8s,
    boundaries, upsampling variants, amortization; writes report.md/report.json/figure4.png."""
    from fcn_deploy.tasks.paper_report import write_report  # torch
    from fcn_deploy.tasks.reproduce import PaperConfig, run_reproduction  # torch

    if out.is_file():
        raise FcnDeployError(f"--out {out} is a file; give a folder")
    cfg = PaperConfig.from_cli(epochs=epochs, seeds=seeds, image_size=image_size,
                               train_samples=train_samples, val_samples=val_samples,
                               pretrain_samples=pretrain_samples,
                               pretrain_epochs=pretrain_epochs, amort_size=amort_size)
    result = run_reproduction(cfg, out, "fcn-deploy " + " ".join(sys.argv[1:]), console.print)
    for path in write_report(result, out):
        console.print(f"wrote {path}")


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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
