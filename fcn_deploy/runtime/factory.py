"""One entry point for every backend: the artifact's content says its kind (checkpoint, ONNX
file, engine), the backend table (registry.py) says what runs it. Each backend's library is
imported only when an artifact is opened in it, so ONNX files and engines run where torch is
not installed."""
from __future__ import annotations

from pathlib import Path

from fcn_deploy.contract.kinds import artifact_kind

from .base import Segmenter
from .registry import check_options, choose


def open_segmenter(path: str | Path, *, backend: str = "auto", device: str = "cpu", log=None,
                   **options) -> Segmenter:
    """A (not yet loaded) Segmenter for ``path`` in ``backend`` (``auto``: the first backend
    installed here that runs the artifact's kind on ``device``; engines run on their GPU
    whatever the device). ``options`` are the backend's own (registry: ``Backend.options``,
    e.g. threads, pad, cache_dir); one it does not take is an OptionError. ``log`` hears
    what a backend chooses (an engine's profile for each new input shape)."""
    chosen = choose(artifact_kind(path), device, backend)
    segmenter = chosen.open(Path(path), device, check_options(chosen, options), log)
    if chosen.name.startswith(segmenter.backend):  # one class, several backends: the name
        segmenter.backend = chosen.name           # (an engine keeps tensorrt-rtx, its builder)
    return segmenter
