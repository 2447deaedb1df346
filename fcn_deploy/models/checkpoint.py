"""Checkpoints: safetensors weights with self-describing metadata, optimizer state beside them.

``model.safetensors`` holds the weights and, as string metadata, the arch, width, class names,
preprocessing and epoch; ``model.optim.safetensors`` holds the optimizer state for ``--resume``.
Legacy ``.pth`` state dicts are read only through ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from fcn_deploy import __version__
from fcn_deploy.atomic import atomic_path
from fcn_deploy.contract.kinds import is_safetensors, require_file
from fcn_deploy.contract.metadata import ArtifactMeta, decode_props
from fcn_deploy.errors import CheckpointError
from fcn_deploy.models import build_model
from fcn_deploy.models.pretrained import check_fits


def optimizer_path(path: str | Path) -> Path:
    """The optimizer-state sidecar of checkpoint ``path``."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".safetensors") + ".optim.safetensors")


def save_checkpoint(path: str | Path, model: nn.Module, meta: ArtifactMeta,
                    optimizer: torch.optim.Optimizer | None = None) -> Path:
    """Write weights + metadata (and optimizer state) atomically; return the weights path."""
    meta = meta.replace(fcn_deploy_version=__version__)
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta.to_props())
    if optimizer is not None:
        state = optimizer.state_dict()
        tensors, scalars = {}, {}
        for idx, entries in state["state"].items():
            for name, value in entries.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{idx}.{name}"] = value.contiguous()
                else:
                    scalars[f"{idx}.{name}"] = value
        extra = {"param_groups": state["param_groups"], "scalars": scalars,
                 "epoch": meta.epoch}
        with atomic_path(optimizer_path(path)) as tmp:
            save_file(tensors, tmp, metadata={k: json.dumps(v) for k, v in extra.items()})
    return Path(path)


def read_metadata(path: str | Path) -> dict:
    """The metadata of a safetensors checkpoint (empty for other tools' files and .pth)."""
    path = require_file(path, CheckpointError)
    if not is_safetensors(path):
        return {}
    try:
        with safe_open(str(path), "pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: {e}") from e
    return decode_props(raw)


def _numpy_scalar_globals() -> list:
    """What pytorch-fcn's trainer checkpoints pickle beside tensors (``best_mean_iu`` is a numpy
    float64): numpy scalars and dtypes, under numpy 1's and numpy 2's module names."""
    core = np._core if hasattr(np, "_core") else np.core  # numpy 2 deprecates np.core
    dtypes = [type(np.dtype(c)) for c in "?bBhHiIlLqQefdg"]
    scalar = core.multiarray.scalar
    return [np.dtype, *dtypes, (scalar, "numpy.core.multiarray.scalar"),
            (scalar, "numpy._core.multiarray.scalar")]


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or of a ``.pth``/``.pth.tar`` state dict or trainer
    checkpoint, read with weights_only=True (numpy scalars allowed, no other objects)."""
    path = require_file(path, CheckpointError)
    try:
        if is_safetensors(path):
            return load_file(str(path))
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(_pickled_objects(path, e)) from e
    except Exception as e:  # torch and safetensors raise many types for corrupt files
        raise CheckpointError(f"{path} is not a readable checkpoint: "
                              f"{str(e).splitlines()[0]}") from e
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return obj


def _pickled_objects(path: Path, error: Exception) -> str:
    """Why a weights_only load refused ``path``: the Python objects it pickles, by name."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: say what torch said
        names = []
    allowed = {"numpy.dtype", "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar"}
    names = [n for n in names if n not in allowed and not n.startswith("numpy.dtypes.")]
    if not names:
        return f"{path} is not a readable checkpoint: {str(error).splitlines()[0]}"
    return (f"{path} pickles Python objects ({', '.join(names[:3])}), which fcn-deploy does not "
            "unpickle (unpickling runs code): save the model's state_dict() and give that")


def load_optimizer_state(path: str | Path, optimizer: torch.optim.Optimizer) -> int:
    """Restore the optimizer state saved beside checkpoint ``path``; return its epoch."""
    side = optimizer_path(path)
    tensors = load_state_dict_file(side)
    extra = read_metadata(side)
    state: dict = {}
    for key, value in list(tensors.items()) + list(extra["scalars"].items()):
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": extra["param_groups"]})
    return int(extra["epoch"])










def refuse_optimizer_state(path: str | Path, meta: dict) -> None:
    """CheckpointError naming the checkpoint whose optimizer state ``path`` holds, if it does."""
    if "param_groups" in meta and "arch" not in meta:
        path = Path(path)
        weights = path.with_name(path.name.removesuffix(".optim.safetensors") + ".safetensors")
        raise CheckpointError(f"{path} is the optimizer state of checkpoint {weights.name} "
                              "(train --resume reads it), not a model: use that checkpoint")


def model_metadata(path: str | Path) -> ArtifactMeta:
    """The metadata of a checkpoint fcn-deploy wrote; CheckpointError saying what else it is."""
    meta = read_metadata(path)
    refuse_optimizer_state(path, meta)
    if "arch" not in meta:
        raise CheckpointError(f"{path} has no fcn-deploy metadata (arch): fcn-deploy did not "
                              "write it; `export --arch A` converts other tools' state dicts")
    return ArtifactMeta.from_dict(meta, path)


def load_model(path: str | Path) -> tuple[nn.Module, ArtifactMeta]:
    """Rebuild the model a training checkpoint describes and load its weights strictly."""
    meta = model_metadata(path)
    try:
        model = build_model(meta.arch, meta.num_classes, meta.width,
                            learn_upsample=meta.learn_upsample or "intermediate")
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e
    state = load_state_dict_file(path)
    check_fits(model, state, str(path))
    model.load_state_dict(state)
    return model, meta
