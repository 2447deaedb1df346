"""What kind of artifact a file is, told from its content (never from its name)."""
from __future__ import annotations

import json
import struct
from pathlib import Path

from fcn_deploy.errors import ArtifactError

# Serialized engines (plans) start with a 4-byte tag: b"ftrt" for TensorRT, b"vtrt" for
# TensorRT-RTX (seen on 1.7 plans of every precision and compute capability; the bytes after
# it hold a format number, the plan's length and the library version, which vary).
ENGINE_MAGIC = (b"ftrt", b"vtrt")


def require_file(path: str | Path, error=ArtifactError) -> Path:
    """``path`` as a Path; ``error`` with a one-line reason when it is missing or not a file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    return path


def is_safetensors(path: Path) -> bool:
    """True when the file starts like safetensors: a little-endian header length, then '{'."""
    with open(path, "rb") as f:
        head = f.read(9)
    return (len(head) == 9 and head[8:9] == b"{"
            and struct.unpack("<Q", head[:8])[0] < path.stat().st_size)


def sidecar_path(engine: str | Path) -> Path:
    """The metadata JSON written beside an engine."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def artifact_kind(path: str | Path) -> str:
    """``checkpoint`` (safetensors or torch zip), ``onnx``, or ``engine`` (a TensorRT plan
    header, or an engine sidecar beside it)."""
    path = require_file(path)
    if is_safetensors(path):
        return "checkpoint"
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":  # torch.save zip archive
        return "checkpoint"
    if head in ENGINE_MAGIC or _is_engine_sidecar(sidecar_path(path)):
        return "engine"
    if head[:1] == b"\x08":  # protobuf field 1 (ir_version), varint: every ONNX model starts so
        return "onnx"
    raise ArtifactError(f"{path} is not a checkpoint, ONNX model or engine")


def require_onnx(path: str | Path, command: str) -> Path:
    """``path`` if it is an ONNX file; else ArtifactError saying what ``command`` takes and
    how to get it from what was given."""
    kind = artifact_kind(path)
    if kind == "checkpoint":
        raise ArtifactError(f"{path} is a checkpoint; export it to ONNX first "
                            f"(fcn-deploy export {path} -o model.onnx), then {command} that")
    if kind == "engine":
        raise ArtifactError(f"{path} is a TensorRT engine; {command} takes an ONNX file")
    return Path(path)


def _is_engine_sidecar(side: Path) -> bool:
    try:
        return "engine_sha256" in json.loads(side.read_text())
    except (OSError, ValueError):
        return False
