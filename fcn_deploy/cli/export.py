"""Making artifacts: export (checkpoint or FP32 ONNX -> verified ONNX, FP16/INT8), quant-report
(per-layer INT8 sensitivity), build (TensorRT engines) and export-triton (model repositories)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional

import typer

from fcn_deploy.atomic import check_outputs
from fcn_deploy.contract.classes import CLASS_SET_NAMES
from fcn_deploy.contract.conventions import CONVENTIONS
from fcn_deploy.contract.kinds import sidecar_path
from fcn_deploy.contract.metadata import INPUT_FORMATS
from fcn_deploy.contract.outputs import OUTPUT_MODES
from fcn_deploy.errors import OptionError
from fcn_deploy.exporters.options import (
    CALIB_METHODS,
    INT8_SCHEMES,
    PRECISIONS,
    TRITON_BACKENDS,
    TRITON_KINDS,
    UPSAMPLE_PRECISIONS,
)
from fcn_deploy.runtime.tensorrt import (
    BACKENDS as TRT_BUILDERS,
    DEFAULT_PROFILE,
    Profile,
    parse_profile,
)
from fcn_deploy.shapes import parse_shape, size_list
from fcn_deploy.wording import counted

from .app import command, console
from .options import DATA_HELP, Arch, Data, ImageSize, calibration_images, open_data


@command
def export(
    checkpoint: Optional[Path] = typer.Argument(None, help="Training checkpoint (.safetensors), "
                                                "a .pth state dict (original FCN layout or a "
                                                "torchvision classifier) with --arch, or an "
                                                "FP32 fcn-deploy ONNX file to convert to "
                                                "--precision fp16|int8."),
    out: Path = typer.Option(..., "--out", "-o", help="ONNX file to write."),
    precision: Literal[PRECISIONS] = typer.Option("fp32", help="fp16: FP32 I/O kept; int8: "
                                                  "Q/DQ nodes."),
    output: Optional[Literal[tuple(OUTPUT_MODES)]] = typer.Option(
                                         None, help="Computed in the graph: logits, probs "
                                         "(softmax), labels (uint8 argmax) or labels+score "
                                         "(uint8 labels + float max probability) [default: "
                                         "logits; an ONNX file keeps its own]."),
    model: Optional[str] = typer.Option(None, help="Your own module: FILE.py:FACTORY or "
                                        "package.module:FACTORY, a callable returning an "
                                        "nn.Module with its weights (needs --input-convention)."),
    output_key: Optional[str] = typer.Option(None, help="--model: the key of the scores in a "
                                             "dict output (e.g. out for torchvision's)."),
    arch: Optional[Arch] = typer.Option(None, help="Architecture of a foreign state dict or "
                                        "--random-init."),
    random_init: bool = typer.Option(False, help="Export an untrained net (benchmarks, tests)."),
    width: Optional[float] = typer.Option(None, help="Width for --random-init (default 1)."),
    num_classes: Optional[int] = typer.Option(None, min=1,
                                              help="Classes for --random-init (default 21); "
                                              "with --model, checked against its output."),
    classes: Optional[str] = typer.Option(None, help="Class names: "
                                          f"{'|'.join(CLASS_SET_NAMES)}, or a FILE with one "
                                          "name per line; checked against the score channels "
                                          "[default: the checkpoint's; VOC for 21 classes]."),
    input_convention: Optional[Literal[tuple(CONVENTIONS)]] = typer.Option(
        None, help="The input the weights learned: imagenet (RGB / 255, ImageNet mean/std) or "
        "caffe (BGR 0-255 minus the Caffe VGG mean: the paper's weights as pytorch-fcn "
        "converted them). Recorded in the artifact and applied by every runtime. Required for "
        "VGG16 FCN state dicts of other tools; fcn-deploy checkpoints carry their own."),
    input_format: Optional[Literal[tuple(INPUT_FORMATS)]] = typer.Option(
                                               None, "--input", help="float (normalized "
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
    calib_method: Literal[CALIB_METHODS] = typer.Option("minmax", help="INT8 ranges."),
    int8_scheme: Literal[INT8_SCHEMES] = typer.Option(
        "s8s8", help="s8s8 (symmetric: the one INT8 file for TensorRT and for CPUs in OpenVINO, "
        "which runs it as fast as onnxruntime runs u8s8) or u8s8 (unsigned activations: only "
        "for onnxruntime on x86 CPUs)."),
    reduce_range: bool = typer.Option(False, help="INT8: 7-bit weights, so onnxruntime and "
                                      "OpenVINO agree on x86 CPUs without VNNI (AVX2 only), "
                                      "where 8-bit weights can saturate int16 sums."),
    keep_fp32: str = typer.Option("", help="Comma-separated node names kept in FP32."),
    keep_fp16: str = typer.Option("", help="INT8: comma-separated conv layers run in FP16."),
    upsample: Literal[UPSAMPLE_PRECISIONS] = typer.Option(
                                 "fp16", help="INT8: upsampling (ConvTranspose) layers in fp16, "
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
    options = dict(locals())  # every option, each written once: in the signature above
    from fcn_deploy.exporters.export import ExportOptions, run_export  # torch, onnx

    run_export(ExportOptions.from_cli(**options), log=console.print)


@command
def quant_report(
    onnx_file: Path = typer.Argument(..., help="An FP32 fcn-deploy ONNX file (logits or labels)."),
    out: Path = typer.Option(..., "--out", "-o",
                             help="Folder for quant_report.json/.md and fallback.txt."),
    data: Data = "synthetic",
    samples: int = typer.Option(64, min=1, help="Synthetic evaluation images."),
    image_size: ImageSize = 64,
    calib_samples: int = typer.Option(16, min=1, help="Calibration images."),
    calib_method: Literal[CALIB_METHODS] = typer.Option("minmax", help="INT8 ranges."),
    int8_scheme: Literal[INT8_SCHEMES] = typer.Option("s8s8"),
    max_drop: float = typer.Option(0.05, min=0, help="A layer goes to the fallback list when its "
                                   "INT8 alone lowers mean IU by more than this (points)."),
):
    """Per-layer INT8 sensitivity: one layer quantized at a time, ranked, with a fallback list."""
    from fcn_deploy.exporters.quant_report import (  # torch, onnx
        check_source,
        markdown,
        write_quant_report,
    )

    meta = check_source(onnx_file, out)  # before the data is read
    report = write_quant_report(
        onnx_file, out, meta, open_data(data, "val", image_size, samples),
        calibration_images(data, image_size, calib_samples), calib_method, int8_scheme,
        max_drop, progress=lambda layer, r: console.print(
            f"{layer}: mean IU {r['delta_mean_iu_points']:+.3f} points, "
            f"agreement {r['agreement']:.4%}"))
    console.print(markdown(report))
    console.print(f"fallback ({counted(len(report['fallback']), 'layer')}): "
                  f"{out / 'fallback.txt'}")


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
                                          "the bucket), so the buckets must nest."),
    max_batch: int = typer.Option(1, min=1, help="Largest batch of each --buckets profile."),
    backend: Literal[("auto", *TRT_BUILDERS)] = typer.Option(
                                "auto", help="auto: tensorrt if installed, else tensorrt-rtx."),
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
    from fcn_deploy.exporters.tensorrt_build import (  # numpy; tensorrt inside
        bucket_profiles,
        build_engine,
    )

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
    scan = calibration_images(calib_data, side, scan_samples) if scan_samples else []
    build_engine(onnx_file, out, profiles, backend, compute_capability or None, timing_cache,
                 workspace, log=console.print, scan_images=scan)


@command
def export_triton(
    artifact: Path = typer.Argument(..., help="An fcn-deploy ONNX file or engine."),
    repo: Path = typer.Option(..., "--repo", help="Triton model repository folder."),
    name: str = typer.Option("fcn", help="Model name in the repository."),
    max_batch_size: int = typer.Option(8, help="Triton max_batch_size (engines: at most the "
                                       "largest profile batch)."),
    instances: int = typer.Option(1, help="Instances per device (instance_group count)."),
    kind: Literal[tuple(TRITON_KINDS)] = typer.Option("gpu", help="Instance kind."),
    labels_ensemble: bool = typer.Option(True, help="For logits models, also write NAME_argmax "
                                         "and the ensemble NAME_labels (uint8 label maps)."),
    force: bool = typer.Option(False, help="Replace models of the same names."),
    backend: Literal[TRITON_BACKENDS] = typer.Option(
        "auto", help="auto (onnxruntime for ONNX files, tensorrt_plan for engines) or python: a "
        "model.py serving the artifact through fcn-deploy's runtime, for servers without those "
        "backends (e.g. PyTriton's tritonserver; use --kind cpu there for ONNX files without "
        "onnxruntime-gpu)."),
):
    """Write a Triton model repository (config.pbtxt, model file, labels) for an artifact."""
    from fcn_deploy.exporters.triton import export_triton as run  # onnx, tritonclient

    written = run(artifact, repo, name, max_batch_size, instances, kind, labels_ensemble, force,
                  backend)
    console.print(f"wrote Triton models {', '.join(p.name for p in written)} to {repo}")
