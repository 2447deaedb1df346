"""What kind of artifact a file is, told from its content (never from its name)."""
from __future__ import annotations

import struct
from pathlib import Path

from .errors import ArtifactError

KINDS = ("checkpoint", "onnx", "engine")


def artifact_kind(path: str | Path) -> str:
    """``checkpoint`` (safetensors or torch zip), ``onnx``, or ``engine`` (has a sidecar)."""
    from .exporters.tensorrt_build import sidecar_path

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    if sidecar_path(path).is_file():
        return "engine"
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9:
        header_len = struct.unpack("<Q", head[:8])[0]
        if head[8:9] == b"{" and header_len < path.stat().st_size:
            return "checkpoint"
    if head[:4] == b"PK\x03\x04":  # torch.save zip archive
        return "checkpoint"
    if head[:1] == b"\x08":  # protobuf field 1 (ir_version), varint: every ONNX model starts so
        return "onnx"
    raise ArtifactError(f"{path} is not a checkpoint, ONNX model or engine")
