"""``fcn-deploy export``: checkpoint -> verified FP32 ONNX -> optional FP16 / INT8 Q/DQ ONNX."""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fcn_deploy.atomic import atomic_path, check_outputs
from fcn_deploy.contract.classes import class_names
from fcn_deploy.contract.conventions import CONVENTIONS
from fcn_deploy.contract.hashing import sha256_file
from fcn_deploy.contract.kinds import artifact_kind
from fcn_deploy.contract.metadata import ArtifactMeta, onnx_metadata
from fcn_deploy.contract.sidecar import sidecar_path
from fcn_deploy.data import FirstItems, open_dataset
from fcn_deploy.data.synthetic import SYNTHETIC_CLASSES
from fcn_deploy.data.voc import VOC_CLASSES
from fcn_deploy.errors import CheckpointError, OptionError
from fcn_deploy.models import build_model, random_init_
from fcn_deploy.models.catalog import family_of
from fcn_deploy.models.checkpoint import (
    load_model,
    load_state_dict_file,
    read_metadata,
    refuse_optimizer_state,
)
from fcn_deploy.models.foreign import foreign_convention, refuse_unsupported
from fcn_deploy.models.pretrained import check_fits
from fcn_deploy.models.user_module import load_user_model, model_file, model_name
from fcn_deploy.runtime.tensorrt import DEFAULT_PROFILE
from fcn_deploy.shapes import name_list
from fcn_deploy.tasks.evaluate import adopt_classes, evaluate_onnx, label_agreement
from fcn_deploy.wording import counted

from .onnx_export import check_input_format, check_output, export_onnx
from .options import PRECISIONS, check_int8_options
from .precision import (
    convert_fp16,
    quantize_int8,
    quantized_ops,
    scan_nonfinite,
)
from .quant_report import read_fallback
from .tensorrt_build import build_engine

# The options of the FP16/INT8 conversion (``convert``'s keywords), given once by ExportOptions.
CONVERSION_OPTIONS = ("calib_method", "int8_scheme", "keep_fp32", "keep_fp16", "upsample",
                      "reduce_range")


@dataclass
class ExportOptions:
    """Everything one ``fcn-deploy export`` does, checked in one place on construction (before
    any model is loaded); ``from_cli`` takes the options as typed."""

    out: Path
    checkpoint: Path | None = None
    random_init: bool = False
    model: str | None = None                 # a user's module: FILE.py:factory, pkg.mod:factory
    output_key: str | None = None            # --model: the scores' key of a dict output
    arch: str | None = None                  # a foreign state dict's or --random-init's
    width: float | None = None
    num_classes: int | None = None
    classes: str | None = None               # class names: a named set or a file
    input_convention: str | None = None      # the weights'; a foreign file's must be given
    precision: str = "fp32"
    output: str | None = None                # default logits; an ONNX source keeps its own
    input_format: str | None = None          # float or rgb8 (preprocessing inside the graph)
    simplify: bool = False
    calib_data: str = "synthetic"            # calibration and FP16/INT8 evaluation images
    calib_samples: int = 16
    calib_method: str = "minmax"
    int8_scheme: str = "s8s8"
    reduce_range: bool = False               # INT8: 7-bit weights
    keep_fp32: list[str] = field(default_factory=list)  # node names, --fallback's included
    keep_fp16: list[str] = field(default_factory=list)  # INT8: conv layers run in FP16
    upsample: str = "fp16"
    fallback: Path | None = None             # quant-report's fallback.txt (an input)
    image_size: int = 64
    eval_samples: int = 64                   # 0: no FP16/INT8 vs FP32 evaluation
    engine: Path | None = None               # also build a TensorRT engine here

    def __post_init__(self):
        sources = [s for s, given in (("a CHECKPOINT", self.checkpoint is not None),
                                      ("--random-init", self.random_init),
                                      ("--model", self.model is not None)) if given]
        if not sources:
            raise OptionError("give a CHECKPOINT, --model FILE.py:FACTORY or --random-init "
                              "--arch A")
        if len(sources) > 1:
            raise OptionError(f"give one source: {' or '.join(sources)}, not both")
        self._check_model_options()
        check_precision(self.precision, self.keep_fp16, method=self.calib_method,
                        scheme=self.int8_scheme, upsample=self.upsample)
        if self.reduce_range and self.precision != "int8":
            raise OptionError("--reduce-range applies to --precision int8 only")
        # an FP32 ONNX file to convert: its metadata, read once (None for checkpoints)
        self.onnx_meta = None
        if self.checkpoint is not None and self._source_kind() == "onnx":
            self.onnx_meta = onnx_metadata(self.checkpoint)
            self._check_onnx_source(self.onnx_meta)
        self.output = self.output or "logits"
        self.input_format = self.input_format or "float"
        check_output(self.output)
        check_input_format(self.input_format)
        files = [Path(p) for p in (self.classes, self.model and model_file(self.model))
                 if p and Path(p).is_file()]  # a class-names file, a module's .py or .pt2
        check_outputs([self.checkpoint, self.fallback, *files],
                      [self.out, self.engine, self.engine and sidecar_path(self.engine)])

    def _check_model_options(self) -> None:
        """--model's own options, and the options it makes meaningless."""
        if self.output_key is not None and self.model is None:
            raise OptionError("--output-key applies to --model (a module returning a dict)")
        if self.model is None:
            return
        given = [o for o, v in (("--arch", self.arch), ("--width", self.width)) if v]
        if given:
            raise OptionError(f"--model builds its own module: drop {', '.join(given)}")
        if self.input_convention is None:
            raise OptionError("--model: nothing says which input the module's weights learned; "
                              "pass --input-convention imagenet (RGB / 255, ImageNet mean/std) "
                              "or caffe (BGR 0-255 minus the Caffe VGG mean)")

    def conversion(self) -> dict:
        """The keywords of ``convert`` (FP16/INT8 conversion) among these options."""
        return {k: getattr(self, k) for k in CONVERSION_OPTIONS}

    def _source_kind(self) -> str:
        """A checkpoint or an ONNX file; an engine cannot be exported (no weights to read)."""
        kind = artifact_kind(self.checkpoint)
        if kind == "engine":
            raise OptionError(f"{self.checkpoint} is a TensorRT engine; export takes a "
                              "checkpoint (.safetensors, .pth) or an FP32 fcn-deploy ONNX file "
                              "with --precision fp16|int8")
        return kind

    def _check_onnx_source(self, meta: ArtifactMeta) -> None:
        """An FP32 ONNX file converts to FP16/INT8 (as Polygraphy's convert does); its graph
        fixes the arch, classes, output and input, so options that would change them refuse."""
        src = self.checkpoint
        given = [name for name, value in (("--arch", self.arch), ("--width", self.width),
                                          ("--input-convention", self.input_convention),
                                          ("--classes", self.classes),
                                          ("--num-classes", self.num_classes),
                                          ("--simplify", self.simplify)) if value]
        if given:
            raise OptionError(f"{src} is an ONNX file, which fixes the model: "
                              f"{', '.join(given)} apply to checkpoints only")
        if meta.precision != "fp32":
            raise OptionError(f"{src} is {meta.precision} already; export converts FP32 ONNX "
                              "files to fp16 or int8: give the FP32 one")
        if self.precision == "fp32":
            raise OptionError(f"{src} is an FP32 ONNX file already; give --precision fp16 or "
                              "int8 to convert it (or export the checkpoint again)")
        for option, asked, has in (("--output", self.output, meta.output),
                                   ("--input", self.input_format, meta.input.format)):
            if asked not in (None, has):
                raise OptionError(f"{src} has {option} {has}, fixed at its export; export the "
                                  f"checkpoint with {option} {asked} instead")
        self.output, self.input_format = meta.output, meta.input.format

    @classmethod
    def from_cli(cls, *, keep_fp32: str = "", keep_fp16: str = "", **options) -> ExportOptions:
        """The options as the CLI has them: --keep-fp32/--keep-fp16 comma-separated; the
        --fallback file's names join keep_fp32 once the checks pass."""
        opts = cls(keep_fp32=name_list(keep_fp32),
                   keep_fp16=name_list(keep_fp16), **options)
        if opts.fallback is not None:
            opts.keep_fp32 += read_fallback(opts.fallback)
        return opts


def check_precision(precision: str, keep_fp16: Sequence[str] = (), **int8_options) -> None:
    """OptionError for an unknown precision, FP16 layers of a non-INT8 export, or INT8 options
    (``check_int8_options``' keywords) that are not known."""
    check_int8_options(**int8_options)
    if precision not in PRECISIONS:
        raise OptionError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    if keep_fp16 and precision != "int8":
        raise OptionError("--keep-fp16 applies to INT8 exports")


def run_export(opts: ExportOptions, log: Callable[[str], None] = print) -> dict:
    """Load the model, export it as ``opts`` say, log what was checked and written, then build
    the engine asked for; returns export()'s report."""
    if opts.onnx_meta is not None:
        report = _convert_onnx(opts, log)
    else:
        if opts.model is not None:
            model, meta, sha = load_user_source(opts.model, opts.output_key, opts.num_classes,
                                                opts.input_convention)
        else:
            model, meta, sha = load_source(opts.checkpoint, opts.arch, opts.width,
                                           opts.num_classes, opts.input_convention)
        if opts.classes is not None:
            meta = meta.replace(class_names=class_names(opts.classes, meta.num_classes))
        calibration, eval_set = _images(opts, meta.num_classes, log)
        report = export(model, meta, sha, opts.out, precision=opts.precision,
                        output=opts.output, input_format=opts.input_format,
                        simplify=opts.simplify, calibration=calibration, eval_set=eval_set,
                        **opts.conversion())
    synthetic = opts.calib_data.startswith("synthetic")
    for line in summary_lines(report, f"{opts.image_size}px" if synthetic else opts.calib_data):
        log(line)
    if opts.engine is not None:
        build_engine(opts.out, opts.engine, [DEFAULT_PROFILE], log=log,
                     scan_images=calibration[:4])
    return report


def _convert_onnx(opts: ExportOptions, log) -> dict:
    """An FP32 ONNX file to FP16/INT8: the conversion and checks of any export, after the
    PyTorch parity check that the FP32 file passed at its own export."""
    calibration, eval_set = _images(opts, opts.onnx_meta.num_classes, log)
    report = {"artifact": str(opts.out), "precision": opts.precision, "output": opts.output,
              "input": opts.input_format, "input_convention": opts.onnx_meta.convention,
              "source": str(opts.checkpoint)}
    report.update(convert(opts.checkpoint, opts.out, opts.precision, calibration, eval_set,
                          **opts.conversion()))
    return report


def _images(opts: ExportOptions, num_classes: int, log) -> tuple[list, object]:
    """FP16/INT8 only: calibration images (INT8 ranges, and the NaN/Inf scan of both) and the
    evaluation set (None with --eval-samples 0); a folder without labels, or labels of another
    class count, give label agreement with FP32 only."""
    if opts.precision == "fp32":
        return [], None
    calib = open_dataset(opts.calib_data, "train", opts.image_size, opts.calib_samples, seed=1)
    calibration = [calib[i][0] for i in range(min(opts.calib_samples, len(calib)))]
    if not opts.eval_samples:
        return calibration, None
    eval_set = FirstItems(open_dataset(opts.calib_data, "val", opts.image_size,
                                       opts.eval_samples), opts.eval_samples)
    adopt_classes(eval_set, num_classes)  # a folder without class names takes the model's
    if eval_set.num_classes != num_classes:  # label agreement needs no labels
        log(f"mean IU skipped: the model predicts {num_classes} classes, the data set has "
            f"{eval_set.num_classes}; label agreement with FP32 on its images only")
        eval_set = FirstItems(eval_set, opts.eval_samples, images_only=True,
                              num_classes=num_classes)
    return calibration, eval_set


def default_class_names(num_classes: int) -> list[str]:
    """VOC names for 21 classes, the synthetic names for 7, else class0..classK-1."""
    for names in (VOC_CLASSES, SYNTHETIC_CLASSES):
        if len(names) == num_classes:
            return list(names)
    return [f"class{i}" for i in range(num_classes)]


def load_source(source: Path | None, arch: str | None, width: float | None,
                num_classes: int | None, input_convention: str | None = None):
    """(model, metadata, sha256) from a training checkpoint, a foreign state dict + ``arch``
    (and its input convention), or, with ``source=None``, a randomly initialised ``arch``."""
    found = read_metadata(source) if source is not None else {}
    refuse_optimizer_state(source, found)
    if "arch" in found:
        model, meta = load_model(source)
        _check_arch(source, meta, arch)
        _check_convention(source, meta, input_convention)
        return model, meta, sha256_file(source)
    if arch is None and source is None:
        raise OptionError("--random-init needs --arch")
    if arch is None:
        raise CheckpointError(f"{source} has no fcn-deploy metadata: pass --arch")
    if source is None:
        model = build_model(arch, num_classes or 21, width or 1.0)
        random_init_(model, seed=0)  # the training init's zero score layers: all-zero logits
        return model, _new_meta(model, input_convention or "imagenet"), None
    family, state = family_of(arch), load_state_dict_file(source)
    refuse_unsupported(state, str(source))
    if family.is_classifier(state):
        # Its FCN's score layers start at zero: the export's output would be constant.
        raise CheckpointError(f"{source} is a classifier (torchvision layout), not a trained "
                              f"FCN: train one on it first (fcn-deploy train --arch {arch} "
                              f"--init {source}), then export that checkpoint")
    convention = foreign_convention(source, family, input_convention)
    state = family.foreign_state(arch, state, str(source))
    model = build_model(arch, *_shape_facts(state, source, arch))
    check_fits(model, state, str(source))
    model.load_state_dict(state)
    return model, _new_meta(model, convention), sha256_file(source)


def _new_meta(model, convention: str) -> ArtifactMeta:
    """The metadata of a model fcn-deploy did not train: its facts, the weights' input
    convention (with its mean/std) and default class names."""
    c = CONVENTIONS[convention]
    return ArtifactMeta(arch=model.arch, width=model.width, num_classes=model.num_classes,
                        class_names=default_class_names(model.num_classes), mean=list(c.mean),
                        std=list(c.std), convention=c.name, stride=model.stride)


def load_user_source(spec: str, output_key: str | None, num_classes: int | None,
                     input_convention: str):
    """(model, metadata, sha256 of the module's file) for a user's module ``spec``."""
    model = load_user_model(spec, output_key)
    if num_classes is not None and num_classes != model.num_classes:
        raise OptionError(f"--num-classes {num_classes}, but {spec} returns "
                          f"{model.num_classes} score channels")
    model.arch, model.width = model_name(spec), 1.0
    file = model_file(spec)
    return (model, _new_meta(model, input_convention),
            sha256_file(file) if file is not None else None)


def _check_convention(source: Path, meta: ArtifactMeta, given: str | None) -> None:
    """A checkpoint records its input convention: a contradicting option is a user error."""
    if given is not None and given != meta.convention:
        raise OptionError(f"{source} was trained with input convention {meta.convention} (its "
                          f"metadata); drop --input-convention {given}")


def _check_arch(source: Path, meta: ArtifactMeta, arch: str | None) -> None:
    """A checkpoint names its own arch: an ``arch`` that contradicts it is a user error, not
    something to ignore silently."""
    if arch is not None and arch != meta.arch:
        raise CheckpointError(f"{source} is a checkpoint of {meta.arch} (its metadata) but "
                              f"--arch says {arch}; drop --arch or pass --arch {meta.arch}")


def _shape_facts(state: dict, source, arch: str) -> tuple[int, float]:
    """Class count and width of an FCN state dict of ``arch``, read from tensor shapes."""
    family = family_of(arch)
    width = family.width_of(state)
    if family.score not in state or width is None:
        raise CheckpointError(f"{source} is neither an FCN of {arch} ({family.first_conv[0]} ... "
                              f"{family.score}) nor a torchvision-layout classifier "
                              "(features.N, classifier.N)")
    return state[family.score].shape[0], width


def precision_report(fp32: Path, other: Path, dataset, batch_size: int = 8) -> dict:
    """Label agreement, mean IU change (points) and onnxruntime speed of ``other`` vs ``fp32``."""
    r, labels = {}, {}
    for path in (fp32, other):
        r[path], labels[path] = evaluate_onnx(path, dataset, batch_size)
    ious = r[fp32]["mean_iu"], r[other]["mean_iu"]  # None without labels
    return {"images": len(dataset),
            "argmax_agreement": label_agreement(labels[fp32], labels[other]),
            "mean_iu_fp32": ious[0], "mean_iu": ious[1],
            "delta_mean_iu_points": None if None in ious else 100 * (ious[1] - ious[0]),
            "ms_per_image_fp32": r[fp32]["ms_per_image"], "ms_per_image": r[other]["ms_per_image"],
            "speedup_vs_fp32": r[fp32]["ms_per_image"] / r[other]["ms_per_image"]}


def export(model, meta: ArtifactMeta, sha: str | None, out: Path, *, precision: str = "fp32",
           output: str = "logits", input_format: str = "float", simplify: bool = False,
           calibration: Sequence[np.ndarray] = (), eval_set=None, **conversion) -> dict:
    """Export, verify and (for fp16/int8) convert (``conversion``: the keywords of
    ``convert``); return a report of times and agreements."""
    check_precision(precision, conversion.get("keep_fp16", ()),
                    upsample=conversion.get("upsample", "fp16"))
    report = {"artifact": str(out), "precision": precision, "output": output,
              "input": input_format, "input_convention": meta.convention}
    with tempfile.TemporaryDirectory() as work:
        fp32 = Path(out) if precision == "fp32" else Path(work) / "fp32.onnx"
        t = time.perf_counter()
        verify = export_onnx(model, meta, fp32, output, sha, simplify,
                             input_format=input_format)
        report.update(export_s=time.perf_counter() - t, verify=verify.__dict__)
        if precision == "fp32":
            return report
        report.update(convert(fp32, out, precision, calibration, eval_set, **conversion))
    return report


def convert(fp32: Path, out: Path, precision: str, calibration: Sequence[np.ndarray] = (),
            eval_set=None, *, calib_method: str = "minmax", int8_scheme: str = "s8s8",
            keep_fp32: Sequence[str] = (), keep_fp16: Sequence[str] = (),
            upsample: str = "fp16", reduce_range: bool = False) -> dict:
    """An FP32 ONNX file converted to fp16 or int8 at ``out``, scanned for NaN/Inf before it is
    written and, given ``eval_set``, compared with the FP32 file; returns what was measured."""
    report: dict = {}
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        converted = Path(work) / "converted.onnx"
        if precision == "fp16":
            convert_fp16(fp32, converted, keep_fp32)
        else:
            quantize_int8(fp32, converted, calibration, calib_method, int8_scheme, keep_fp32,
                          keep_fp16=keep_fp16, upsample=upsample, reduce_range=reduce_range)
            report["conv_precision"] = quantized_ops(converted)
        report["convert_s"] = time.perf_counter() - t
        scan_nonfinite(converted, list(calibration)[:4])  # before anything is written to out
        with atomic_path(out) as tmp:
            shutil.move(converted, tmp)
    if eval_set is not None:
        report["vs_fp32"] = precision_report(fp32, Path(out), eval_set)
    return report


def _parity_line(report: dict) -> str:
    """The PyTorch parity check of the FP32 graph, or where the FP32 graph came from."""
    if "source" in report:
        return f"converted {report['source']} (FP32, checked against PyTorch at its export)"
    v = report["verify"]
    floats = [e for e in v["max_abs_error"] if e is not None]
    error = f", max abs error {max(floats):.2e}" if floats else ""  # uint8 labels: none
    what = ("FP32 graph vs PyTorch" if report.get("input", "float") == "float"
            else "FP32 rgb8 graph (uint8 frames in) vs PyTorch on normalized floats")
    return f"{what}: argmax agreement {min(v['argmax_agreement']):.4%}{error} on {v['shapes']}"


def summary_lines(report: dict, images: str) -> list[str]:
    """What an export checked and wrote, one line each, every check named by what it compared
    (the PyTorch parity check runs on the FP32 graph, before any conversion); ``images`` says
    what the evaluation images were (their side, or their folder)."""
    out = report["artifact"]
    seconds = report.get("export_s", 0) + report.get("convert_s", 0)
    convention = CONVENTIONS[report["input_convention"]]
    lines = [_parity_line(report), f"input convention {convention.name}: {convention.summary}",
             f"wrote {out} ({report['precision']}, "
             f"{Path(out).stat().st_size / 1e6:.1f} MB) in {seconds:.1f} s"]
    if "conv_precision" in report:
        c = report["conv_precision"]
        lines.append(f"INT8 conv layers: {len(c['int8'])} of {sum(map(len, c.values()))}"
                     + "".join(f"; {k}: {', '.join(n)}" for k, n in c.items() if k != "int8" and n))
    if "vs_fp32" in report:
        r = report["vs_fp32"]
        iu = ("no labels, so no mean IU" if r["mean_iu"] is None else
              f"mean IU {r['mean_iu']:.4f} vs {r['mean_iu_fp32']:.4f} "
              f"({r['delta_mean_iu_points']:+.2f} points)")
        lines.append(f"{report['precision']} vs fp32 on {counted(r['images'], 'image')}: "
                     f"argmax agreement {r['argmax_agreement']:.4%}, {iu}; onnxruntime CPU "
                     f"{r['ms_per_image']:.1f} vs {r['ms_per_image_fp32']:.1f} ms/img "
                     f"({r['speedup_vs_fp32']:.2f}x, {images})")
    return lines
