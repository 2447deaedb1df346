"""ONNX export: dynamic N/H/W, self-describing metadata, verified against PyTorch before kept.

The graph is the network itself (normalized float NCHW in, preprocessing in the metadata;
or, with ``--input rgb8``, uint8 NHWC frames in and the preprocessing as the graph's first
nodes, /preprocess/...) and its output head (logits, probabilities, uint8 labels, or labels
with their score: models/heads.py). Crops trace to shape-derived Slices, so one file serves
every batch size and every H, W >= 1. We use the TorchScript exporter
(``dynamo=False``): on FCN-8s it exports in under a second where the dynamo path takes ~17 s
(width 0.125, this CPU) and needs onnxscript.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch.export import Dim

from fcn_deploy import __version__
from fcn_deploy.atomic import atomic_path
from fcn_deploy.contract.kinds import require_file
from fcn_deploy.contract.metadata import INPUT_FORMATS, ArtifactMeta, from_props, input_spec
from fcn_deploy.contract.preprocess import normalize
from fcn_deploy.errors import (
    ArtifactError,
    ExportError,
    FcnDeployError,
    OptionError,
    message_line,
)
from fcn_deploy.models.heads import OUTPUT_MODES, PER_CLASS, OutputHead, RGB8Input

OPSET = 17
# Odd sizes and a batch of 2 catch crops or reshapes pinned to the trace shape.
VERIFY_SHAPES = ((1, 3, 97, 131), (2, 3, 333, 500), (1, 3, 512, 512))
# rgb8 graphs are for camera frames: verified at a 720p frame too.
RGB8_VERIFY_SHAPES = ((1, 3, 97, 131), (2, 3, 333, 500), (1, 3, 720, 1280))
# Nodes of the in-graph preprocessing: FP16 and INT8 conversions leave them in FP32.
PREPROCESS_PREFIX = "/preprocess/"
MIN_ARGMAX_AGREEMENT = 0.9999
# Square input sides (px) whose peak memory growth gives activation_bytes_per_pixel.
MEASURE_SIDES = (256, 512)
# One inference in a fresh process: peak RSS growth (VmHWM, reset after the session loads).
_MEASURE = """
import json, sys
import numpy as np, onnxruntime as ort
path, side, rgb8 = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "rgb8"
def status(key):
    line = next(x for x in open("/proc/self/status") if x.startswith(key + ":"))
    return int(line.split()[1]) * 1024
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = status("VmRSS")
x = np.ones((1, side, side, 3), np.uint8) if rgb8 else np.ones((1, 3, side, side), np.float32)
out = session.run(None, {"input": x})[0]
labels = out if out.dtype == np.uint8 else out.argmax(1).astype(np.uint8)
print(json.dumps(status("VmHWM") - base))
"""
# Logits that move less than this (relative to their size) over every pixel of every
# verification input are constant: float noise, not a function of the input.
CONSTANT_SPREAD = 1e-6


@dataclass
class VerifyReport:
    """Agreement of onnxruntime with PyTorch on each verification shape."""

    shapes: list = field(default_factory=list)
    max_abs_error: list = field(default_factory=list)
    argmax_agreement: list = field(default_factory=list)
    seconds: float = 0.0
    # Largest max - min of one class's PyTorch logit over all inputs and pixels, and the
    # largest |logit|: zero spread means the output does not depend on the input.
    logit_spread: float = 0.0
    logit_scale: float = 0.0

    @property
    def worst_agreement(self) -> float:
        return min(self.argmax_agreement)

    @property
    def constant(self) -> bool:
        return self.logit_spread <= CONSTANT_SPREAD * max(1.0, self.logit_scale)


def check_input_format(input_format: str) -> None:
    """OptionError for an input convention ``export --input`` does not know."""
    if input_format not in INPUT_FORMATS:
        raise OptionError(f"unknown input {input_format!r}; choose {', '.join(INPUT_FORMATS)}")


def check_output(output: str) -> None:
    """OptionError for an output mode ``export --output`` does not know."""
    if output not in OUTPUT_MODES:
        raise OptionError(f"unknown output {output!r}; choose {', '.join(OUTPUT_MODES)}")


def exported_metadata(meta: ArtifactMeta, output: str, stride: int,
                      source_sha256: str | None, input_format: str = "float") -> ArtifactMeta:
    """What an FP32 ONNX export of a model with ``meta`` carries: the model's facts, the graph's
    input convention (any H, W >= 1: the geometry has no upper limit) and output mode."""
    return ArtifactMeta(arch=meta.arch, width=meta.width, num_classes=meta.num_classes,
                        class_names=meta.class_names, mean=meta.mean, std=meta.std,
                        convention=meta.convention,
                        input=input_spec(input_format, meta.convention),
                        stride=stride, output=output, fcn_deploy_version=__version__,
                        source_sha256=source_sha256)


def preprocess_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the in-graph preprocessing nodes (rgb8 graphs; none in float graphs)."""
    return [n.name for n in model.graph.node if n.name.startswith(PREPROCESS_PREFIX)]


def write_metadata(model: onnx.ModelProto, metadata: ArtifactMeta) -> None:
    """Replace the model's metadata_props with ``metadata``."""
    del model.metadata_props[:]
    for key, value in metadata.to_props().items():
        model.metadata_props.add(key=key, value=value)


def append_metadata(path: str | Path, metadata: ArtifactMeta) -> None:
    """Add metadata_props to an ONNX file without loading its weights.

    Serialized protobuf messages merge when concatenated and repeated fields append, so the
    bytes of a ModelProto holding only metadata_props extend the file's own. This keeps a
    537 MB FCN-8s from being parsed and re-serialized (two more copies in memory).
    """
    extra = onnx.ModelProto()
    write_metadata(extra, metadata)
    with open(path, "ab") as f:
        f.write(extra.SerializeToString())


def metadata_of(model: onnx.ModelProto, path: str | Path) -> ArtifactMeta:
    """fcn-deploy metadata of an already loaded ONNX model read from ``path``."""
    return from_props({p.key: p.value for p in model.metadata_props}, path)


def load_onnx(path: str | Path, load_weights: bool = True) -> onnx.ModelProto:
    """Parse an ONNX file with a one-line error for missing or corrupt files."""
    path = require_file(path)
    try:
        return onnx.load(str(path), load_external_data=load_weights)
    except Exception as e:  # protobuf raises DecodeError, RuntimeWarning, ... for garbage
        raise ArtifactError(f"{path} is not a readable ONNX model: {e}") from e


def export_onnx(model: nn.Module, meta: ArtifactMeta, out: str | Path, output: str = "logits",
                source_sha256: str | None = None, simplify: bool = False,
                verify_shapes=None, input_format: str = "float") -> VerifyReport:
    """Export ``model`` to ``out`` with dynamic N/H/W, verify it, and only then keep it.
    ``input_format`` rgb8: uint8 NHWC frames in, the preprocessing inside the graph."""
    check_output(output)
    check_input_format(input_format)
    rgb8 = input_format == "rgb8"
    # The wrapper must be in eval mode too: the exporter restores the wrapper's mode on exit,
    # which would otherwise switch the model's dropout back on.
    net = OutputHead(model, output, RGB8Input(**meta.normalization) if rgb8 else None).eval()
    names = OUTPUT_MODES[output]
    dynamic = {"input": {0: "N", 1: "H", 2: "W"} if rgb8 else {0: "N", 2: "H", 3: "W"},
               **{n: {0: "N", 2: "H", 3: "W"} if n in PER_CLASS else {0: "N", 1: "H", 2: "W"}
                  for n in names}}
    dummy = torch.zeros(1, 64, 64, 3, dtype=torch.uint8) if rgb8 else torch.zeros(1, 3, 64, 64)
    with atomic_path(out) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            # chosen on purpose, above
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            # a user's module that reads sizes into Python: the verification below refuses it
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            traced = (
                (lambda: _export_program(net, dummy, tmp, names, dynamic))
                if getattr(model, "needs_dynamo", False) else
                (lambda: torch.onnx.export(
                    net, (dummy,), str(tmp), input_names=["input"], output_names=list(names),
                    dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)))
            _guarded(traced, lambda line: (
                f"torch.onnx.export failed on a {_dims(dummy.shape)} input ({line}): the model "
                "must take any N, H and W and use ONNX-exportable ops"))
        if simplify:
            onnx.save(_simplify(onnx.load(str(tmp))), str(tmp))
        written = exported_metadata(meta, output, model.stride, source_sha256, input_format)
        written.activation_bytes_per_pixel = measure_activation_bytes(tmp, input_format)
        append_metadata(tmp, written)
        onnx.checker.check_model(str(tmp))
        shapes = verify_shapes or (RGB8_VERIFY_SHAPES if rgb8 else VERIFY_SHAPES)
        report = verify(tmp, model, output, shapes, meta=written)
        _refuse_constant(report, out)
        if report.worst_agreement < MIN_ARGMAX_AGREEMENT:
            raise ExportError(f"onnxruntime and PyTorch agree on only {report.worst_agreement:.4%} "
                              f"of argmax labels (need {MIN_ARGMAX_AGREEMENT:.2%}); "
                              f"not writing {out}")
    return report


def measure_activation_bytes(path: str | Path, input_format: str = "float") -> int | None:
    """Bytes per input pixel one onnxruntime (CPU) inference of ``path`` takes beyond the
    loaded session, measured: the growth of peak RSS between ``MEASURE_SIDES`` images.

    Each size runs once in a fresh process (both at once) that loads the session, resets its
    peak RSS (``/proc/self/clear_refs``), then builds the input, runs it and takes the argmax
    as ``predict`` does; (growth at 512 - growth at 256) / (512^2 - 256^2) cancels the
    constant part (thread pools, code pages). Repeat runs agree within ~1%. None where it
    cannot be measured (no Linux /proc, the run failed): runtimes then treat it as unknown.
    """
    procs = [subprocess.Popen([sys.executable, "-c", _MEASURE, str(path), str(side), input_format],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for side in MEASURE_SIDES]
    growth = []
    for proc in procs:
        out, _ = proc.communicate()
        try:
            growth.append(json.loads(out))
        except ValueError:
            growth.append(None)
    if None in growth or any(p.returncode for p in procs):
        return None
    small, large = MEASURE_SIDES
    per_pixel = (growth[1] - growth[0]) / (large**2 - small**2)
    return max(round(per_pixel), 1)


def _refuse_constant(report: VerifyReport, out) -> None:
    """A net whose logits ignore the input (e.g. zero score layers, the training init) agrees
    with any correct runtime trivially, in every output mode: refuse to call that verified."""
    if report.constant:
        raise ExportError(f"the model's output is constant (no logit moves more than "
                          f"{report.logit_spread:.1e} over the verification inputs: untrained "
                          f"zero score layers?); verification would prove nothing; not writing "
                          f"{out}")


def static_copy(src: str | Path, out: str | Path, shape: tuple[int, int, int, int]) -> None:
    """``src`` with its input fixed at ``shape`` (NCHW): runtimes then fold every shape
    computation (the crops' Shape/Slice chains) into constants, as a static export would."""
    model = load_onnx(src)
    meta = metadata_of(model, src)
    n, _, h, w = shape
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        sizes = (meta.input.shape(n, h, w) if value.name == "input"
                 else (n, meta.num_classes, h, w) if len(dims) == 4 else (n, h, w))
        for dim, size in zip(dims, sizes):
            dim.dim_value = size  # replaces the symbolic N/H/W
    spec = dataclasses.replace(meta.input, height=[h, h], width=[w, w])
    write_metadata(model, meta.replace(static_shape=list(shape), input=spec))
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp))


def _simplify(proto: onnx.ModelProto) -> onnx.ModelProto:
    try:
        import onnxslim  # the simplify extra
    except ImportError as e:
        raise ExportError("--simplify needs onnxslim: pip install onnxslim") from e
    return onnxslim.slim(proto)


def verify(path: str | Path, model: nn.Module, output: str = "logits",
           shapes=VERIFY_SHAPES, seed: int = 0, meta: ArtifactMeta | None = None) -> VerifyReport:
    """Run ``path`` in onnxruntime and ``model`` (with its output head) in PyTorch on random
    inputs of ``shapes`` (NCHW): argmax agreement of the labels, the largest float difference,
    and how much PyTorch's logits vary (whatever the output mode). An rgb8 graph (``meta``)
    gets random uint8 frames; PyTorch gets them through the float path (numpy normalize)."""
    import onnxruntime as ort  # 0.2-0.3 s: only when an export is verified

    start = time.perf_counter()
    head = OutputHead(model, output).eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen, report = torch.Generator().manual_seed(seed), VerifyReport()
    low = high = None  # per-class logit range over every input and pixel so far
    for shape in shapes:
        feed, x = _verify_input(shape, gen, meta)
        with torch.no_grad():
            logits = _guarded(lambda: model(x), _fails_at("the module itself", shape), last=True)
            ref = head.from_logits(logits)
        low = logits.amin((0, 2, 3)) if low is None else low.minimum(logits.amin((0, 2, 3)))
        high = logits.amax((0, 2, 3)) if high is None else high.maximum(logits.amax((0, 2, 3)))
        report.logit_scale = max(report.logit_scale, float(logits.abs().max()))
        ref = [t.numpy() for t in (ref if isinstance(ref, tuple) else (ref,))]
        got = _guarded(lambda: session.run(None, {"input": feed}), _fails_at("onnxruntime", shape),
                       last=True)
        if got[0].shape != ref[0].shape:
            raise ExportError(f"the exported graph returns {_dims(got[0].shape)} for a "
                              f"{_dims(shape)} input, PyTorch {_dims(ref[0].shape)}: {FIXED}")
        floats = [float(np.abs(g - r).max()) for g, r in zip(got, ref) if g.dtype != np.uint8]
        report.shapes.append(list(shape))
        report.argmax_agreement.append(float((_labels(got) == _labels(ref)).mean()))
        report.max_abs_error.append(max(floats) if floats else None)
    report.logit_spread = float((high - low).max()) if low is not None else 0.0
    report.seconds = time.perf_counter() - start
    return report


# What a graph that fails or changes shape at another input size was traced from.
FIXED = ("the module fixes a size at export (a reshape or view with constant sizes, a size "
         "read into Python); fcn-deploy exports take any N, H and W: make it size-agnostic")


def _dims(shape) -> str:
    return "x".join(map(str, shape))


def _guarded(run, describe, last: bool = False):
    """``run()``; an error that is not fcn-deploy's own (torch, onnxruntime and a user's module
    raise any type) as one ExportError line: ``describe`` of its message's first (or last)
    line."""
    try:
        return run()
    except FcnDeployError:
        raise
    except Exception as e:
        raise ExportError(describe(message_line(e, last))) from e


def _fails_at(who: str, shape):
    """``_guarded``'s description of ``who`` failing at a verification size."""
    return lambda line: f"{who} fails on a {_dims(shape)} input ({line}): {FIXED}"


def _export_program(net: nn.Module, dummy: torch.Tensor, out: Path, names, dynamic: dict) -> None:
    """A ``torch.export`` program's graph through the dynamo exporter (the TorchScript tracer
    would fix its symbolic sizes), with the dynamic axes named as the TorchScript path names
    them. The example batch is 2: torch.export fixes a dimension traced at 0 or 1."""
    try:
        import onnxscript  # noqa: F401  the dynamo exporter's dependency: the pt2 extra
    except ImportError as e:
        raise ExportError("exporting a .pt2 program needs onnxscript: pip install "
                          "'fcn-deploy[pt2]'") from e
    example = dummy.expand(2, *dummy.shape[1:]).contiguous()
    axes = dynamic["input"]
    program = torch.onnx.export(net, (example,), input_names=["input"], output_names=list(names),
                                dynamic_shapes=({axis: Dim.AUTO for axis in axes},),
                                dynamo=True, verbose=False)
    program.save(str(out))
    model = onnx.load(str(out))
    renames = {d.dim_param: axes[i] for i, d in
               enumerate(model.graph.input[0].type.tensor_type.shape.dim) if i in axes}
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for d in value.type.tensor_type.shape.dim:
            d.dim_param = renames.get(d.dim_param, d.dim_param)
    onnx.save(model, str(out))


def _verify_input(shape, gen: torch.Generator, meta: ArtifactMeta | None):
    """(what onnxruntime is fed, what PyTorch is fed) for one verification shape."""
    if meta is None or meta.input.format == "float":
        x = torch.randn(*shape, generator=gen)
        return x.numpy(), x
    n, _, h, w = shape
    frames = torch.randint(0, 256, (n, h, w, 3), generator=gen, dtype=torch.uint8).numpy()
    return frames, torch.from_numpy(normalize(frames, **meta.normalization))


def _labels(outputs: list[np.ndarray]) -> np.ndarray:
    """Class ids from an output list: the uint8 labels, or the argmax of logits/probs."""
    return outputs[0] if outputs[0].dtype == np.uint8 else outputs[0].argmax(1)
