"""``fcn-deploy bench``: amortization rows and latency rows for every artifact and backend
that can run here, gathered into one result (see report.py for the files).

Latency rows of ONNX files and engines run without PyTorch (the runtime-only install):
torch is imported only for what needs it (checkpoints, --arch, --amortization, --static),
and BenchConfig imports it up front then, so a missing torch ends the run before any timing."""
from __future__ import annotations

import functools
import os
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fcn_deploy.atomic import check_folder_output, check_writable
from fcn_deploy.contract.kinds import artifact_kind, require_file
from fcn_deploy.contract.sidecar import read_sidecar
from fcn_deploy.data import open_dataset
from fcn_deploy.data.synthetic import SyntheticShapes
from fcn_deploy.errors import FcnDeployError, OptionError
from fcn_deploy.models.catalog import families
from fcn_deploy.progress import progress_bar
from fcn_deploy.runtime.factory import open_segmenter
from fcn_deploy.runtime.ort_segmenter import OrtSegmenter
from fcn_deploy.runtime.registry import check_device, choose, get, installed
from fcn_deploy.runtime.tiling import parse_tile, tiled_logits
from fcn_deploy.shapes import int_list, name_list, size_list
from fcn_deploy.tasks.evaluate import adopt_classes, evaluate, label_agreement
from fcn_deploy.wording import short_names

from .latency import Contender, interleave, latency_row, model_flops, ratio_of_rounds
from .machine import (
    busy_note,
    cpu_sample,
    default_threads,
    load_average,
    machine_info,
    other_cpu,
    set_torch_threads,
)
from .options import check_backend
from .report import gflops_text

AMORTIZATION_MODELS = tuple(families())  # each family's classifier, random weights
TORCH_MODE_PARTS = {"cl": "channels_last", "graph": "cuda_graph", "compile": "compile"}


@dataclass
class BenchConfig:
    """Everything one bench run measures, checked on construction, before anything is
    measured; ``from_cli`` takes the options as typed."""

    artifacts: list[Path] = field(default_factory=list)
    random_arch: str | None = None           # also time an untrained torch model of this arch
    width: float = 1.0
    sizes: list[tuple[int, int]] = field(default_factory=lambda: [(500, 500)])
    batches: list[int] = field(default_factory=lambda: [1])
    warmup: int = 3
    iters: int | None = None
    seconds: float = 2.0                     # per row, split over the rounds
    rounds: int = 3                          # every row of a shape timed in turn, round by round
    device: str = "cpu"
    threads: int | None = None              # default: machine.default_threads()
    torch_modes: list[str] = field(default_factory=lambda: ["fp32"])
    cuda_graph: bool = False                 # for engines
    data: object = None                      # a dataset: mean IU per artifact
    amortization: bool = False
    amort_models: list[str] = field(default_factory=lambda: ["alexnet", "vgg16"])
    amort_sizes: list[int] = field(default_factory=lambda: [224, 500, 1000])
    amort_backends: list[str] = field(default_factory=lambda: ["torch"])
    amort_batch: int = 32
    amort_profile: bool = False              # per-layer profile of eager torch CPU rows
    static: bool = False                     # also time a static-shape copy of each ONNX file
    tile: str | None = None                  # also time tiled inference: HxW, a side, or auto
    overlap: int = 64
    runtime_cache: Path | None = None        # TensorRT-RTX engines: folder of kernel caches
    backends: list[str] | None = None        # ONNX runtimes; None: every one installed here
    out: Path | None = None                  # report folder (report.write_report): checked only

    @classmethod
    def from_cli(cls, *, artifacts: Sequence[Path] | None = None, arch=None, sizes: str,
                 batches: str, torch_modes: str, amort_models: str, amort_sizes: str,
                 amort_backends: str, data: str | None = None, samples: int = 64,
                 image_size: int = 64, backends: str | None = None,
                 **options) -> BenchConfig:
        """The config from the options as the CLI has them: lists comma-separated, sizes S or
        HxW; --data's images are opened once every check passed."""
        cfg = cls(artifacts=list(artifacts or []), random_arch=arch,
                  sizes=size_list(sizes, "--sizes"), batches=int_list(batches, "--batches"),
                  torch_modes=name_list(torch_modes), amort_models=name_list(amort_models),
                  amort_sizes=int_list(amort_sizes, "--amort-sizes"),
                  amort_backends=name_list(amort_backends),
                  backends=None if backends is None else name_list(backends), **options)
        if data:
            cfg.data = open_dataset(data, "val", image_size, samples)
        return cfg

    def amortization_jobs(self) -> list[tuple[str, list[int]]]:
        """(model, sizes) pairs: ``vgg16:500`` limits a model to its own sizes."""
        return [_model_sizes(m, self.amort_sizes) for m in self.amort_models]

    def __post_init__(self):
        """Refuse bad options before anything is measured."""
        check_device(self.device)
        if self.backends is None:
            self.backends = installed("onnx", self.device)
        for backend in self.backends:
            choose("onnx", self.device, backend)
        for path in self.artifacts:
            require_file(path, FcnDeployError)
        check_folder_output(self.out)
        if not self.artifacts and self.random_arch is None and not self.amortization:
            raise FcnDeployError("nothing to measure: give artifacts, --arch or --amortization")
        for mode in self.torch_modes:
            parse_torch_mode(mode)
        unknown = [m for m, _ in self.amortization_jobs() if m not in AMORTIZATION_MODELS]
        if unknown:
            raise OptionError(f"unknown amortization model {unknown[0]!r}; choose "
                              f"{', '.join(AMORTIZATION_MODELS)}")
        check_folder_output(self.runtime_cache, "--runtime-cache")
        if self.tile:
            parse_tile(self.tile, None, self.overlap)
        for backend in self.amort_backends:
            try:  # the device pairing matters only when amortization runs
                check_backend(backend, self.device if self.amortization else "any")
            except ValueError as e:
                raise FcnDeployError(str(e)) from None
        self.require_torch()
        if self.out is not None:
            check_writable(self.out)  # creates nothing; refuses an unwritable --out

    def require_torch(self) -> None:
        """Import torch (and onnx for --static) when a requested row needs them: without them,
        ModuleNotFoundError before anything is measured (the CLI turns it into one line)."""
        onnx_files = [p for p in self.artifacts if artifact_kind(p) == "onnx"]
        if (self.amortization or self.random_arch or self.static and onnx_files
                or any(artifact_kind(p) == "checkpoint" for p in self.artifacts)):
            import torch  # noqa: F401 (these rows need it: fail before any timing)
        if self.static and onnx_files:
            import onnx  # noqa: F401 (--static of ONNX files needs it)


def _model_sizes(entry: str, default: list[int]) -> tuple[str, list[int]]:
    name, _, sizes = entry.partition(":")
    try:
        values = [int(v) for v in sizes.split("/")] if sizes else default
    except ValueError:
        values = [0]
    if min(values) < 1:
        raise OptionError(f"malformed amortization model {entry!r}; expected NAME or "
                          "NAME:SIZE/SIZE with positive sizes, e.g. vgg16:500")
    return name, values


def parse_torch_mode(mode: str) -> dict:
    """``fp16-cl-graph`` -> TorchSegmenter options (fp16, channels_last, cuda_graph, compile)."""
    precision, *parts = mode.split("-")
    unknown = [p for p in parts if p not in TORCH_MODE_PARTS]
    if precision not in ("fp32", "fp16") or unknown:
        raise OptionError(f"unknown torch mode {mode!r}; fp32 or fp16, optionally followed by "
                          f"-{', -'.join(TORCH_MODE_PARTS)} (e.g. fp16-cl-graph)")
    return {"fp16": precision == "fp16", **{TORCH_MODE_PARTS[p]: True for p in parts}}


def _segmenters(cfg: BenchConfig, scratch: Path) -> list[tuple[str, object, float | None]]:
    """(artifact label, Segmenter, size MB) for every artifact x applicable backend mode;
    OpenVINO's compiled-model caches start empty in ``scratch`` (the first load is cold)."""
    out = []
    if cfg.random_arch:
        from fcn_deploy.exporters.export import load_source  # torch
        from fcn_deploy.runtime.torch_segmenter import TorchSegmenter  # torch

        model, meta, _ = load_source(None, cfg.random_arch, cfg.width, None)
        for mode in cfg.torch_modes:
            seg = TorchSegmenter(model=model, meta=meta, device=cfg.device,
                                 **parse_torch_mode(mode))
            out.append((f"{cfg.random_arch} (random) {mode}", seg, None))
    for path, name in zip(cfg.artifacts, short_names(cfg.artifacts)):
        size = path.stat().st_size / 1e6
        if artifact_kind(path) == "checkpoint":  # one row set per torch mode
            for mode in cfg.torch_modes:
                seg = open_segmenter(path, device=cfg.device, **parse_torch_mode(mode))
                out.append((f"{name} {mode}", seg, size))
        elif artifact_kind(path) == "onnx":  # side by side in every ONNX runtime asked for
            for backend in cfg.backends:  # a compiled-model cache of its own: a cold load
                cache = {"cache_dir": scratch / name} if "cache_dir" in get(backend).options else {}
                seg = open_segmenter(path, device=cfg.device, threads=cfg.threads,
                                     backend=backend, **cache)
                out.append((name, seg, size))
        else:  # engines replay CUDA graphs when --cuda-graph says so
            seg = open_segmenter(path, device=cfg.device, cuda_graph=cfg.cuda_graph,
                                 runtime_cache=_runtime_cache(cfg, path))
            out.append((name, seg, size))
    return out


def _runtime_cache(cfg: BenchConfig, path: Path) -> Path | None:
    """The runtime cache file of a TensorRT-RTX engine (one per engine, so each engine's first
    load is its own cold start), None for other artifacts."""
    if cfg.runtime_cache is None or artifact_kind(path) != "engine":
        return None
    if read_sidecar(path).engine.backend != "tensorrt_rtx":
        return None
    return cfg.runtime_cache / f"{path.name}.rtxcache"


def run_bench(cfg: BenchConfig, command: str, log: Callable[[str], None] = print) -> dict:
    """Measure what ``cfg`` asks for; returns the bench.json structure. What cannot run here
    is listed under ``skipped`` instead of ending the run; rows measured on a busy machine
    under ``warnings``."""
    threads = cfg.threads or default_threads()
    cfg = replace(cfg, threads=threads)  # onnxruntime sessions get the same count as torch
    set_torch_threads(threads)
    result = {"command": command, "machine": machine_info(threads), "amortization": [],
              "latency": [], "skipped": [], "warnings": []}
    if cfg.amortization:
        result["amortization"] = _amortization(cfg, threads, result["skipped"],
                                               result["warnings"], log)
    result["latency"] = _latency(cfg, result["skipped"], result["warnings"], log)
    return result


def _with_load(measure: Callable[[], dict]) -> dict:
    """``measure()``'s row with the CPU time other processes used during it (machine.py's busy
    rule), and the 1-minute load average before and after it (context only)."""
    load_before, before = load_average(), cpu_sample()
    row = measure()
    after = cpu_sample()
    return {**row, **other_cpu(before, after, os.cpu_count() or 1), "load_before": load_before,
            "load_after": load_average()}


def _warn_if_busy(row: dict, what: str, warnings: list[str], log) -> None:
    """Log and keep a warning when ``row`` was measured on a busy machine (machine.py's rule)."""
    note = busy_note(row, os.cpu_count() or 1)
    if note:
        warnings.append(f"{what}: {note}")
        log(f"warning: {warnings[-1]}")


def _amortization(cfg: BenchConfig, threads: int, skipped: list[str], warnings: list[str],
                  log) -> list[dict]:
    import torch  # only --amortization needs it

    from .amortization import amortization_row  # torch

    rows = []
    jobs = [(m, s, b) for m, sizes in cfg.amortization_jobs() for s in sizes
            for b in cfg.amort_backends]
    with progress_bar("amortization", total=len(jobs)) as bar:
        for model, size, backend in jobs:
            torch.manual_seed(0)  # same random weights for every size and backend
            family = families()[model]
            classifier = family.classifier(1000, 1.0).eval()
            try:
                row = _with_load(lambda: amortization_row(
                    model, classifier, size, backend, cfg.device, cfg.amort_batch,
                    threads=threads, profile=cfg.amort_profile,
                    fcn=family.convolutionalize(classifier)))
            except ValueError as e:  # e.g. an image smaller than the classifier's patch
                skipped.append(f"amortization {model} {size}x{size} {backend}: {e}")
                bar.advance(1)
                continue
            rows.append(row)
            log(f"amortization {model} {size}x{size} {backend}: FCN {row['fcn_ms']:.0f} ms, "
                f"{row['speedup_vs_best']:.1f}x vs best patch schedule ({row['best_baseline']}), "
                f"FLOP ratio {row['flop_ratio']:.2f}")
            _warn_if_busy(row, f"amortization {model} {size}x{size} {backend}", warnings, log)
            bar.advance(1)
    return rows


def _latency(cfg: BenchConfig, skipped: list[str], warnings: list[str], log) -> list[dict]:
    with tempfile.TemporaryDirectory() as scratch:
        return _latency_rows(cfg, _segmenters(cfg, Path(scratch)), skipped, warnings, log)


def _latency_rows(cfg: BenchConfig, segmenters: list, skipped: list[str], warnings: list[str],
                  log) -> list[dict]:
    """Every artifact is loaded, then each shape's rows (whole image, static copy, tiled) are
    timed in turn, round by round, so a busy spell of the machine falls on all of them alike."""
    rows = []
    shapes = [(n, 3, h, w) for n in cfg.batches for (h, w) in cfg.sizes]
    with ExitStack() as stack:
        loaded = []
        for label, seg, size in segmenters:
            try:
                stack.enter_context(seg)
            except FcnDeployError as e:
                skipped.append(f"{label} ({seg.backend}): {e}")
                continue
            mean_iu = _mean_iu(cfg.data, seg, f"{label} on {seg.backend}", skipped)
            loaded.append((label, seg, {"artifact": label, "size_mb": size, "mean_iu": mean_iu}))
        with progress_bar("latency", total=len(shapes)) as bar:
            for shape in shapes:
                rows += _shape_rows(cfg, loaded, shape, skipped, warnings, log)
                bar.advance(1)
        for label, seg, fields in loaded:
            if _has_cache(seg) and shapes:
                for row in _cached_load_rows(cfg, seg, label, fields["size_mb"], shapes[0],
                                             skipped):
                    rows.append(row)
                    _warn_if_busy(row, f"latency {label} on {seg.backend} {row['mode']}",
                                  warnings, log)
    return rows


def _mean_iu(data, seg, label: str, skipped: list[str]) -> float | None:
    if data is None:
        return None
    # images/ + masks/ without class_names.txt (or a plain folder) takes the model's classes
    adopt_classes(data, seg.meta.num_classes, seg.meta.class_names)
    if seg.meta.num_classes != data.num_classes:
        skipped.append(f"mean IU of {label}: it predicts {seg.meta.num_classes} classes, the "
                       f"data set has {data.num_classes}")
        return None
    try:
        return evaluate(seg.predict, data, seg.meta.num_classes,
                        description=f"eval {label}")["mean_iu"]
    except FcnDeployError as e:
        skipped.append(f"mean IU of {label}: {e}")
        return None


def _shape_rows(cfg: BenchConfig, loaded: list, shape, skipped: list[str],
                warnings: list[str], log) -> list[dict]:
    """The rows of every loaded artifact at ``shape``: the whole image, then the static-shape
    and tiled variants asked for, timed in turn; each row's ``speed_vs_first`` is the median
    over rounds of the first row's p50 over its own."""
    where = f"N={shape[0]} {shape[2]}x{shape[3]}"
    with tempfile.TemporaryDirectory() as work, ExitStack() as stack:
        entries = []
        for label, seg, fields in loaded:
            for mode, start in _variants(cfg, seg, shape, Path(work) / label, stack):
                try:
                    timed_seg, contender, extra = start()
                except FcnDeployError as e:  # e.g. a shape outside an engine's profiles
                    skipped.append(f"{label} {mode} at {'x'.join(map(str, shape))}: {e}")
                    continue
                entries.append((seg, timed_seg, contender, {**fields, "mode": mode,
                                                            "pair": _pair(seg, label), **extra}))
        if not entries:
            return []
        load = _with_load(lambda: interleave([e[2] for e in entries], cfg.warmup, cfg.iters,
                                             cfg.seconds, cfg.rounds) or {})
    first = entries[0][2].round_p50s
    rows = []
    for seg, timed_seg, contender, fields in entries:
        row = {**fields, **latency_row(timed_seg, shape, flops=model_flops(seg.meta, shape),
                                       contender=contender), **load,
               "speed_vs_first": ratio_of_rounds(first, contender.round_p50s)}
        rows.append(row)
        on = f"{row['artifact']} on {row['backend']} {row['mode']}"
        log(f"latency {on} {where}: p50 {row['p50_ms']:.2f} ms, {row['images_per_s']:.1f} img/s"
            + gflops_text(row))
        _warn_if_busy(row, f"latency {on} {where}", warnings, log)
    return rows


def _variants(cfg: BenchConfig, seg, shape, work: Path, stack: ExitStack) -> list:
    """(mode, start) of each row of ``seg`` at ``shape``; start() gives the Segmenter timed,
    its Contender and the row's extra fields."""
    variants = [("static" if _is_static(seg) else "whole",
                 lambda: (seg, Contender.start(seg, shape), {}))]
    if cfg.static and seg.backend == "onnxruntime":
        variants.append(("static", lambda: _static_contender(seg, shape, work, stack)))
    if cfg.tile:
        try:
            tile = parse_tile(cfg.tile, seg, cfg.overlap)
        except FcnDeployError as e:  # e.g. larger than every profile: skipped, said why
            variants.append((f"tiled {cfg.tile}", functools.partial(_refuse, e)))
        else:
            variants.append((f"tiled {tile[0]}x{tile[1]}+{cfg.overlap}",
                             lambda: _tiled_contender(cfg, seg, shape, tile)))
    return variants


def _refuse(error: FcnDeployError):
    raise error


def _pair(seg, label: str) -> str:
    """What a row is compared with: engines by the ONNX they were built from and their
    backend (a static-profile engine meets the dynamic one of the same graph), else by label
    and backend."""
    engine = seg.meta.engine
    if engine and engine.onnx_sha256:
        return f"{engine.onnx_sha256} {engine.backend}"
    return f"{label} {seg.backend}"


def _has_cache(seg) -> bool:
    """A backend with a compiled-model cache (OpenVINO's folder; a TensorRT-RTX engine's
    runtime cache, when one was given): a second load is timed too."""
    cached = "compiled_cache" in get(seg.backend).capabilities
    return cached and getattr(seg, "runtime_cache", True) is not None


def _is_static(seg) -> bool:
    """A static-shape ONNX copy, or an engine whose every profile has min == max."""
    profiles = getattr(seg, "profiles", None)
    return (bool(seg.meta.static_shape)
            or bool(profiles) and all(p.min == p.max for p in profiles))


def _cached_load_rows(cfg: BenchConfig, seg, label: str, size, shape, skipped) -> list[dict]:
    """Close the engine (its runtime cache file now holds the compiled kernels) or OpenVINO
    model (its cache folder holds the compiled model) and load it again with that cache: the
    second load's time and first run."""
    seg.close()
    if seg.backend == "openvino":
        again = open_segmenter(seg.path, threads=cfg.threads, backend="openvino",
                               cache_dir=seg.cache_dir)
        mode = "2nd load, compiled-model cache"
    else:
        again = open_segmenter(seg.path, device=cfg.device, cuda_graph=cfg.cuda_graph,
                               runtime_cache=seg.runtime_cache)
        mode = "2nd load, runtime cache"
    try:
        with again:
            row = _with_load(lambda: latency_row(again, shape, *_timing(cfg, again.meta, shape)))
    except FcnDeployError as e:
        skipped.append(f"{label} {mode}: {e}")
        return []
    return [{"artifact": label, "size_mb": size, "mode": mode, **row}]


def _timing(cfg: BenchConfig, meta, shape) -> tuple:
    return cfg.warmup, cfg.iters, cfg.seconds, model_flops(meta, shape)


def _static_contender(seg, shape, work: Path, stack: ExitStack) -> tuple:
    """The same ONNX file with its input fixed at ``shape``, in the same providers/threads,
    resident while the shape's rows are timed."""
    from fcn_deploy.exporters.onnx_export import static_copy  # onnx, torch

    work.mkdir(parents=True, exist_ok=True)
    static_copy(seg.path, work / "static.onnx", shape)
    fixed = stack.enter_context(OrtSegmenter(work / "static.onnx", seg.providers, seg.threads))
    return fixed, Contender.start(fixed, shape), {}


def _tiled_contender(cfg: BenchConfig, seg, shape, tile: tuple[int, int]) -> tuple:
    """Tiled inference of a synthetic image of ``shape`` (batched tiles, blended logits), and
    its label agreement with the whole-image result where that runs."""
    n, _, h, w = shape
    image = SyntheticShapes("val", 1, max(h, w))[0][0][:h, :w]
    x = np.repeat(seg.preprocess(image[None]), n, axis=0)

    def timed() -> float:
        start = time.perf_counter()
        tiled_logits(seg, x, tile, cfg.overlap)
        return 1000 * (time.perf_counter() - start)
    extra = {}
    tiled = tiled_logits(seg, x[:1], tile, cfg.overlap).argmax(1)
    try:
        extra["agreement_vs_whole"] = label_agreement([seg.predict(image[None])], [tiled])
    except FcnDeployError:  # the whole image does not fit (e.g. an engine's profiles)
        pass
    return seg, Contender.start(seg, shape, timed), extra
