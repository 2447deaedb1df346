"""The one metadata record every artifact carries: checkpoints (safetensors header), ONNX files
(``metadata_props``) and engines (sidecar JSON) write and read the same ``ArtifactMeta``.

On disk it is flat: one key per field (ONNX and safetensors store each value JSON-encoded),
an engine's sidecar adds the ``EngineInfo`` keys. Keys this version does not know (a newer
version's, another tool's) are kept in ``extra`` and written back; a missing required key is
one clear error."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcn_deploy.errors import ArtifactError

from .conventions import convention
from .kinds import require_file
from .onnx_file import read_props

REQUIRED = ("arch", "width", "num_classes", "class_names", "mean", "std")


@dataclass
class InputSpec:
    """How the graph's input is laid out and scaled; sides as [min, max], max None: any."""

    name: str = "input"
    layout: str = "NCHW"
    color: str = "RGB"
    dtype: str = "float32"
    value_range: str = "uint8 / 255, then (x - mean) / std"
    height: list = field(default_factory=lambda: [1, None])
    width: list = field(default_factory=lambda: [1, None])

    @property
    def itemsize(self) -> int:
        """Bytes per input value: 1 for uint8 frames, 4 for float32."""
        return 1 if self.dtype == "uint8" else 4

    @property
    def format(self) -> str:
        """``rgb8`` (uint8 NHWC frames, normalized inside the graph) or ``float``."""
        return "rgb8" if self.dtype == "uint8" else "float"

    def shape(self, n: int, h: int, w: int) -> tuple[int, int, int, int]:
        """The input tensor's shape for N images of H x W, in this layout."""
        return (n, h, w, 3) if self.layout == "NHWC" else (n, 3, h, w)

    def nchw(self, shape) -> tuple[int, int, int, int]:
        """An input tensor's shape in this layout as (N, C, H, W)."""
        n, *rest = shape
        return (n, rest[2], rest[0], rest[1]) if self.layout == "NHWC" else (n, *rest)


# ``export --input``: the float convention (the runtime normalizes) or camera-frame input, the
# cast, 1/255 scaling, mean/std normalization and NHWC -> NCHW transpose inside the graph (FP32).
INPUT_FORMATS = {
    "float": InputSpec(),
    "rgb8": InputSpec(layout="NHWC", dtype="uint8",
                      value_range="uint8 0-255 as captured; the graph casts, scales by 1/255, "
                                  "normalizes with mean/std and transposes to NCHW"),
}


def input_spec(input_format: str, convention_name: str = "imagenet") -> InputSpec:
    """The graph input of ``export --input input_format`` for weights of ``convention_name``."""
    c = convention(convention_name)
    if input_format == "rgb8":
        steps = ["casts"] + ["reorders to BGR"] * c.bgr + ["scales by 1/255"] * (c.divisor != 1)
        return dataclasses.replace(INPUT_FORMATS["rgb8"], value_range=(
            f"uint8 0-255 RGB as captured; the graph {', '.join(steps)}, normalizes with "
            f"mean/std ({c.name}) and transposes to NCHW"))
    return dataclasses.replace(INPUT_FORMATS[input_format], color=c.order,
                               value_range=c.value_range())


@dataclass
class EngineInfo:
    """What ``build`` records about an engine beside the ONNX file's metadata."""

    backend: str
    backend_version: str
    profiles: list[dict]          # {"min": [N, C, H, W], "opt": [...], "max": [...]}
    inputs: list[dict]            # {"name", "dtype", "shape"} as the network declares them
    outputs: list[dict]
    engine_sha256: str
    engine_bytes: int
    build_seconds: float
    onnx_sha256: str | None = None
    compute_capabilities: list[str] = field(default_factory=list)
    strongly_typed: bool = True
    conv_precision: dict = field(default_factory=dict)


@dataclass
class ArtifactMeta:
    """Architecture, classes, preprocessing, input convention, precision, output mode and
    provenance of a checkpoint, ONNX file or engine."""

    arch: str
    width: float
    num_classes: int
    class_names: list[str]
    mean: list[float]
    std: list[float]
    # contract/conventions.py: channel order and scale of mean/std; files before it: imagenet
    convention: str = "imagenet"
    input: InputSpec = field(default_factory=InputSpec)
    stride: int | None = 32         # None: a user's module (fcn-deploy did not build it)
    precision: str = "fp32"         # fp32, fp16 or int8
    int8_scheme: str | None = None  # s8s8 or u8s8 for int8
    output: str = "logits"          # contract/outputs.py
    static_shape: list[int] | None = None  # a static-shape copy's N, C, H, W
    # bytes an inference takes per input pixel (onnxruntime on CPU, measured at export:
    # exporters/onnx_export.measure_activation_bytes); None: not measured (older files)
    activation_bytes_per_pixel: int | None = None
    epoch: int | None = None        # checkpoints: epochs trained
    learn_upsample: str | None = None  # checkpoints: which upsamplers learn
    fcn_deploy_version: str | None = None
    source_sha256: str | None = None  # the file this one was made from
    engine: EngineInfo | None = None  # engines only
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    @property
    def normalization(self) -> dict:
        """``preprocess.normalize``'s keywords for this artifact's input convention."""
        return {"mean": self.mean, "std": self.std, "convention_name": self.convention}

    @classmethod
    def from_dict(cls, values: dict, where: str | Path) -> "ArtifactMeta":
        """The record in a flat dict (as stored); ArtifactError naming missing keys."""
        missing = [k for k in REQUIRED if k not in values]
        if missing:
            raise ArtifactError(f"{where}: its fcn-deploy metadata lacks {', '.join(missing)}")
        names = {f.name for f in dataclasses.fields(cls)} - {"input", "engine", "extra"}
        engine_names = {f.name for f in dataclasses.fields(EngineInfo)}
        known = {k: v for k, v in values.items() if k in names}
        extra = {k: v for k, v in values.items()
                 if k not in names | engine_names | {"input"}}
        engine = None
        if "engine_sha256" in values:
            try:
                engine = EngineInfo(**{k: v for k, v in values.items() if k in engine_names})
            except TypeError as e:  # a required engine key is missing
                raise ArtifactError(f"{where}: its engine metadata is incomplete ({e})") from e
        spec = values.get("input") or {}
        spec = InputSpec(**{k: v for k, v in spec.items() if k in _INPUT_NAMES})
        return cls(**known, input=spec, engine=engine, extra=extra)

    def to_dict(self) -> dict:
        """The flat form stored on disk: fields, engine keys, then the unknown keys."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("engine", "extra")}
        out["input"] = dataclasses.asdict(self.input)
        if self.engine is not None:
            out.update(dataclasses.asdict(self.engine))
        return {**out, **self.extra}

    def to_props(self) -> dict[str, str]:
        """One JSON-encoded string per key: ONNX metadata_props, safetensors metadata."""
        return {k: json.dumps(v) for k, v in self.to_dict().items()}

    def replace(self, **changes) -> "ArtifactMeta":
        """A copy with ``changes``; keys that are not fields go to ``extra``."""
        names = {f.name for f in dataclasses.fields(self)}
        extra = {**self.extra, **{k: v for k, v in changes.items() if k not in names}}
        fields = {k: v for k, v in changes.items() if k in names}
        return dataclasses.replace(self, **fields, extra=fields.pop("extra", extra))


_INPUT_NAMES = {f.name for f in dataclasses.fields(InputSpec)}


def decode_props(props: dict[str, str]) -> dict:
    """JSON values decoded; other tools' plain strings (``onnx.quant.pre_process``) kept."""
    out = {}
    for key, value in props.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def from_props(props: dict[str, str], where: str | Path) -> ArtifactMeta:
    """The record in ONNX metadata_props or a safetensors header; ArtifactError if the file
    has none (not written by fcn-deploy) or lacks required keys."""
    values = decode_props(props)
    if "arch" not in values:
        raise ArtifactError(f"{where} has no fcn-deploy metadata (was it exported by fcn-deploy?)")
    return ArtifactMeta.from_dict(values, where)


def onnx_metadata(path: str | Path) -> ArtifactMeta:
    """fcn-deploy metadata of an ONNX file, its weights left unread; ArtifactError if the
    file is missing, corrupt or was not exported by fcn-deploy."""
    return from_props(read_props(require_file(path)), path)
