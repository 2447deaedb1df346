"""An engine's sidecar: the JSON beside ``ENGINE`` (``ENGINE.json``) holding its metadata, its
profiles and I/O, and the size and sha256 that tie it to that engine file."""
from __future__ import annotations

import json
from pathlib import Path

from fcn_deploy.errors import ArtifactError

from .hashing import sha256_file
from .kinds import require_file, sidecar_path


def read_sidecar(engine: str | Path) -> dict:
    """An engine's sidecar, refused when missing, corrupt, or not describing this engine file."""
    engine = require_file(engine)
    side = sidecar_path(engine)
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"engine {engine} has no sidecar {side.name}: copy it along, or "
                            "rebuild") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{side} is not readable JSON: {e}") from e
    if (engine.stat().st_size != meta.get("engine_bytes")
            or sha256_file(engine) != meta.get("engine_sha256")):
        raise ArtifactError(f"{engine} does not match its sidecar {side.name} (size or sha256 "
                            "differ): the engine was modified, truncated or replaced")
    return meta
