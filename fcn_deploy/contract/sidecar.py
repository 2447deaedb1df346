"""An engine's sidecar: the JSON beside ``ENGINE`` (``ENGINE.json``) holding its metadata, its
profiles and I/O, and the size and sha256 that tie it to that engine file."""
from __future__ import annotations

import json
from pathlib import Path

from fcn_deploy.errors import ArtifactError

from .hashing import sha256_file
from .kinds import require_file, sidecar_path
from .metadata import ArtifactMeta


def read_sidecar(engine: str | Path) -> ArtifactMeta:
    """An engine's metadata from its sidecar, refused when the sidecar is missing, corrupt, or
    does not describe this engine file."""
    engine = require_file(engine)
    side = sidecar_path(engine)
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"engine {engine} has no sidecar {side.name}: copy it along, or "
                            "rebuild") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{side} is not readable JSON: {e}") from e
    meta = ArtifactMeta.from_dict(meta, side) if isinstance(meta, dict) else None
    if meta is None or meta.engine is None:
        raise ArtifactError(f"{side} does not describe an engine (no engine_sha256)")
    if (engine.stat().st_size != meta.engine.engine_bytes
            or sha256_file(engine) != meta.engine.engine_sha256):
        raise ArtifactError(f"{engine} does not match its sidecar {side.name} (size or sha256 "
                            "differ): the engine was modified, truncated or replaced")
    return meta
