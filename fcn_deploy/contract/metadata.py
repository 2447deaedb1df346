"""The metadata every artifact carries, as written in ONNX ``metadata_props`` and safetensors
headers: one JSON-encoded string per key."""
from __future__ import annotations

import json
from pathlib import Path

from fcn_deploy.errors import ArtifactError

from .kinds import require_file
from .onnx_file import read_props


def decode_props(props: dict[str, str]) -> dict:
    """JSON values decoded; other tools' plain strings (``onnx.quant.pre_process``) kept."""
    out = {}
    for key, value in props.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def onnx_metadata(path: str | Path) -> dict:
    """fcn-deploy metadata of an ONNX file, its weights left unread; ArtifactError if the
    file is missing, corrupt or was not exported by fcn-deploy."""
    meta = decode_props(read_props(require_file(path)))
    if "arch" not in meta:
        raise ArtifactError(f"{path} has no fcn-deploy metadata (was it exported by fcn-deploy?)")
    return meta
