"""``fcn-deploy info``: what an artifact is, as one record whose keys are the same for
checkpoints, ONNX files and engines (docs/cli.md lists them); numbers are numbers, and a field
that does not apply to a kind is null."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from fcn_deploy.contract.conventions import CONVENTIONS
from fcn_deploy.contract.kinds import artifact_kind
from fcn_deploy.contract.metadata import ArtifactMeta, onnx_metadata
from fcn_deploy.contract.onnx_file import read_io
from fcn_deploy.contract.outputs import OUTPUT_MODES
from fcn_deploy.contract.sidecar import read_sidecar
from fcn_deploy.shapes import fmt_shape

# TensorRT's names of tensor types (engine sidecars) -> ONNX's (graphs, the rest of the record)
_DTYPES = {"float": "float32", "half": "float16", "bfloat16": "bfloat16", "int8": "int8",
           "uint8": "uint8", "int32": "int32", "int64": "int64", "bool": "bool"}


def describe(path: str | Path) -> dict:
    """The info record of the artifact at ``path``: kind, path, size_bytes, the metadata
    record's fields, parameters, crop_offsets, inputs, outputs and engine."""
    path = Path(path)
    kind = artifact_kind(path)
    meta, extra = {"checkpoint": _checkpoint, "onnx": _onnx, "engine": _engine}[kind](path)
    fields = meta.to_dict()
    record = {"kind": kind, "path": str(path), "size_bytes": path.stat().st_size,
              **{k: fields[k] for k in _META_KEYS}, "parameters": None, "crop_offsets": None,
              "inputs": [], "outputs": [], "engine": None}
    record.update(extra)
    return record


_META_KEYS = [f.name for f in dataclasses.fields(ArtifactMeta) if f.name not in ("engine", "extra")]


def _tensor(name: str, dtype: str, shape) -> dict:
    """A graph's input or output; -1 for a dimension that varies (as TensorRT and Triton say)."""
    return {"name": name, "dtype": _DTYPES.get(dtype, dtype),
            "shape": [d if isinstance(d, int) and d > 0 else -1 for d in shape]}


def _declared_io(meta: ArtifactMeta) -> tuple[list[dict], list[dict]]:
    """The input and outputs an export of ``meta`` would have (a checkpoint has no graph)."""
    inputs = [_tensor(meta.input.name, meta.input.dtype, meta.input.shape(-1, -1, -1))]
    outputs = [_tensor(name, "uint8" if name == "labels" else "float32",
                       (-1, meta.num_classes, -1, -1) if name in ("logits", "probs")
                       else (-1, -1, -1)) for name in OUTPUT_MODES[meta.output]]
    return inputs, outputs


def _checkpoint(path: Path) -> tuple[ArtifactMeta, dict]:
    from fcn_deploy.models.checkpoint import load_model  # torch

    model, meta = load_model(path)
    inputs, outputs = _declared_io(meta)
    return meta, {"parameters": sum(p.numel() for p in model.parameters()),
                  "stride": model.stride, "crop_offsets": list(model.crops),
                  "inputs": inputs, "outputs": outputs}


def _onnx(path: Path) -> tuple[ArtifactMeta, dict]:
    inputs, outputs = read_io(path)
    return onnx_metadata(path), {"inputs": [_tensor(t.name, t.dtype, t.dims) for t in inputs],
                                 "outputs": [_tensor(t.name, t.dtype, t.dims) for t in outputs]}


def _engine(path: Path) -> tuple[ArtifactMeta, dict]:
    meta = read_sidecar(path)
    engine = dataclasses.asdict(meta.engine)
    profiles = engine["profiles"]
    # what the engine takes, not the range of the ONNX file it was built from
    meta.input.height = [min(p["min"][2] for p in profiles), max(p["max"][2] for p in profiles)]
    meta.input.width = [min(p["min"][3] for p in profiles), max(p["max"][3] for p in profiles)]
    io = {k: [_tensor(t["name"], t["dtype"], t["shape"]) for t in engine.pop(k)]
          for k in ("inputs", "outputs")}
    return meta, {**io, "engine": engine}


def text_rows(record: dict) -> list[tuple[str, str]]:
    """The record as (field, text) rows for a terminal: sizes and counts with units, shapes
    as N x C x H x W, an engine's profiles one per row, null fields left out."""
    rows = []
    for key, value in record.items():
        if value is None or key in ("engine", "inputs", "outputs"):
            continue
        rows.append((key, _text(key, value, record)))
    for kind in ("inputs", "outputs"):
        layout = record["input"]["layout"] if kind == "inputs" else "NCHW"
        for t in record[kind]:
            rows.append((f"{kind[:-1]} {t['name']}", f"{t['dtype']} [{_dims(t['shape'], layout)}]"))
    engine = record["engine"] or {}
    for i, p in enumerate(engine.get("profiles", [])):
        rows.append((f"profile {i}", ", ".join(f"{k} {fmt_shape(p[k])}"
                                               for k in ("min", "opt", "max"))))
    rows += [(k, _text(k, v, record)) for k, v in engine.items() if k != "profiles"]
    return rows


def _text(key: str, value, record: dict) -> str:
    if key == "size_bytes":
        return f"{value / 1e6:.1f} MB ({value:,} bytes)"
    if key == "parameters":
        return f"{value:,}"
    if key == "input":
        return _input_text(value)
    if key == "convention" and value in CONVENTIONS:
        return f"{value}: {CONVENTIONS[value].summary}"
    return value if isinstance(value, str) else json.dumps(value)


def _input_text(spec: dict) -> str:
    h, w = spec["height"], spec["width"]
    sides = ("H, W >= 1 (no upper limit but memory)" if h[1] is None and w[1] is None
             else f"H in [{h[0]}, {h[1]}], W in [{w[0]}, {w[1]}]")
    return (f"{spec['dtype']} {' x '.join(spec['layout'].replace('C', '3'))}, {spec['color']}, "
            f"{spec['value_range']}; {sides}")


def _dims(shape: list[int], layout: str) -> str:
    """``[-1, 7, -1, -1]`` as ``N x 7 x H x W``: a varying dimension by its role."""
    names = layout if len(shape) == 4 else "NHW" if len(shape) == 3 else "?" * len(shape)
    return " x ".join(names[i] if d == -1 else str(d) for i, d in enumerate(shape))
