"""TensorRT engine builds from fcn-deploy ONNX files, with ``tensorrt`` or ``tensorrt_rtx``.

One code path takes the TensorRT module as a parameter. Precision comes from the graph: FP16
weights or Q/DQ nodes. TensorRT 10 is told through builder flags; TensorRT 11 and TensorRT-RTX
build strongly typed networks. TensorRT-RTX compiles ahead of time without a GPU, for the
compute capabilities asked for; full TensorRT builds for the GPU it runs on.
"""
from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fcn_deploy.atomic import atomic_path
from fcn_deploy.contract.hashing import sha256_file
from fcn_deploy.contract.kinds import require_onnx, sidecar_path
from fcn_deploy.contract.metadata import ArtifactMeta, EngineInfo, onnx_metadata
from fcn_deploy.errors import ExportError, FcnDeployError, OptionError
from fcn_deploy.runtime.tensorrt import (
    Profile,
    collecting_logger,
    import_backend,
    is_rtx,
)
from fcn_deploy.runtime.trt_segmenter import NoGpuError, TensorRTSegmenter

# Turing through Blackwell: every target the TensorRT-RTX 1.x wheel knows except SM121 (GB10).
DEFAULT_COMPUTE_CAPABILITIES = ("SM75", "SM80", "SM86", "SM89", "SM120")





def bucket_profiles(buckets: Sequence[tuple[int, int]], max_batch: int = 1) -> list[Profile]:
    """One profile per HxW bucket, smallest first: opt at the bucket, max the bucket with
    ``max_batch``, min 1x1. The buckets nest, and the runtime runs each image in the smallest
    bucket that holds it, so every image up to the largest bucket has a profile tuned near it."""
    ordered = sorted(set(buckets), key=lambda hw: (hw[0] * hw[1], hw))
    # Every bucket's profile starts at 1x1: two that do not nest would partly overlap, which
    # check_profiles refuses in words about min/max the user of --buckets never wrote.
    for (h0, w0), (h1, w1) in zip(ordered, ordered[1:]):
        if h1 < h0 or w1 < w0:
            raise OptionError(f"--buckets {h0}x{w0} and {h1}x{w1} do not nest: each bucket's "
                              "profile holds every smaller image (min 1x1), so each bucket must "
                              "be at least as high and as wide as the smaller ones; use "
                              f"{max(h0, h1)}x{max(w0, w1)}, or --profile for other ranges")
    return [Profile((1, 3, 1, 1), (1, 3, h, w), (max_batch, 3, h, w)) for h, w in ordered]


def check_profiles(profiles: Sequence[Profile]) -> None:
    """Refuse no profiles, repeated ones, and profiles that partly overlap: they may share a
    border or nest (buckets), where the runtime's choice (the tightest) is clear."""
    if not profiles:
        raise OptionError("give at least one optimization profile (--min/--opt/--max, --profile "
                          "or --buckets)")
    for i, a in enumerate(profiles):
        for b in profiles[:i]:
            if (a.min, a.max) == (b.min, b.max):
                raise OptionError(f"profile {a} repeats the range of profile {b}")
            if _partly_overlap(a, b):
                raise OptionError(f"profiles {b} and {a} overlap; make them share at most a "
                                  "border, or nest one inside the other")


def _contains(a: Profile, b: Profile) -> bool:
    return all(x <= y for x, y in zip(a.min, b.min)) and all(y <= x for x, y in zip(a.max, b.max))


def _partly_overlap(a: Profile, b: Profile) -> bool:
    disjoint = any(max(a.min[d], b.min[d]) > min(a.max[d], b.max[d]) for d in range(4))
    return not (disjoint or any(_shared_border(a, b, d) for d in range(4))
                or _contains(a, b) or _contains(b, a))


def _shared_border(a: Profile, b: Profile, d: int) -> bool:
    """``a`` and ``b`` meet at one value of dimension ``d``, one below it and one above."""
    return ((a.min[d] < a.max[d] == b.min[d] < b.max[d])
            or (b.min[d] < b.max[d] == a.min[d] < a.max[d]))


def _major(trt) -> int:
    return int(trt.__version__.split(".")[0])


def _network(trt, builder):
    if is_rtx(trt) or _major(trt) >= 11:
        flag = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        return builder.create_network(flag), True
    return builder.create_network(0), False


@contextlib.contextmanager
def _interruptible():
    """Turn Ctrl-C into a flag while TensorRT runs: a KeyboardInterrupt raised in one of its
    Python callbacks (logger, progress monitor) is swallowed by its C++ side. The progress
    monitor stops the build on the flag; leaving the block raises KeyboardInterrupt."""
    state = {"interrupted": False}
    if threading.current_thread() is not threading.main_thread():
        yield state  # signals only reach the main thread; nothing to catch here
        return

    def on_sigint(signum, frame):
        state["interrupted"] = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield state
    finally:
        # None: a handler installed outside Python; Python's own is the nearest we can restore
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
    if state["interrupted"]:
        raise KeyboardInterrupt


def _progress_monitor(trt, state: dict):
    """A progress monitor that cancels the build once ``state["interrupted"]`` is set."""
    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            pass

        def step_complete(self, phase_name, step):
            return not state["interrupted"]  # False: TensorRT abandons the build

        def phase_finish(self, phase_name):
            pass
    return Monitor()


def _parse(trt, network, logger, onnx_path: Path):
    """Parse into ``network``; the parser is returned because it owns the weights, which must
    outlive the build."""
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        first = errors[0] if errors else None
        where = (f" at node {first.node_name() or first.node()} ({first.node_operator()})"
                 if first else "")
        # One line: the parser's own lines, without the CUDA-driver notice every CPU-only
        # TensorRT-RTX run adds.
        lines = first.desc().splitlines() if first else ["unknown error"]
        desc = "; ".join(line for line in lines if "catchCudaError" not in line)
        raise ExportError(f"TensorRT could not parse {onnx_path}{where}: {desc}")
    return parser


def _configure(trt, builder, network, profiles, meta: ArtifactMeta, strongly_typed,
               compute_capabilities, workspace_mb):
    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    name = network.get_input(0).name
    for p in profiles:  # N x 3 x H x W, in the input's own layout (NHWC for rgb8 graphs)
        profile = builder.create_optimization_profile()
        shapes = [meta.input.shape(n, h, w) for n, _, h, w in (p.min, p.opt, p.max)]
        profile.set_shape(name, *shapes)
        config.add_optimization_profile(profile)
    if not strongly_typed:  # TensorRT 10: the graph's precision as builder flags
        if meta.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if meta.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    if is_rtx(trt):
        ccs = [getattr(trt.ComputeCapability, c) for c in compute_capabilities]
        config.num_compute_capabilities = len(ccs)
        for i, cc in enumerate(ccs):
            config.set_compute_capability(cc, i)
    return config


def _compute_capabilities(trt, requested: Sequence[str] | None) -> list[str]:
    if not is_rtx(trt):
        if requested:
            raise OptionError("--compute-capability applies to TensorRT-RTX only; full TensorRT "
                              "builds for the GPU it runs on")
        return []
    ccs = [c.upper().replace(".", "") for c in (requested or DEFAULT_COMPUTE_CAPABILITIES)]
    ccs = [c if c.startswith("SM") or c == "CURRENT" else f"SM{c}" for c in ccs]
    # CURRENT: the GPU of the building machine (needs one), e.g. a GPU newer than the enum.
    known = [c for c in trt.ComputeCapability.__members__ if c.startswith("SM") or c == "CURRENT"]
    for c in ccs:
        if c not in known:
            raise OptionError(f"unknown compute capability {c}; {trt.__name__} {trt.__version__} "
                              f"knows {', '.join(known)}")
    return ccs


def _tensors(trt, network) -> tuple[list, list]:
    def describe(t):
        return {"name": t.name, "dtype": str(t.dtype).split(".")[-1].lower(),
                "shape": list(t.shape)}
    return ([describe(network.get_input(i)) for i in range(network.num_inputs)],
            [describe(network.get_output(i)) for i in range(network.num_outputs)])


def conv_precisions(trt, network) -> dict[str, list[str]]:
    """Conv/deconv layer names by the precision the network fixes for them: ``int8`` when both
    data and weights come from Dequantize layers (TensorRT fuses them into INT8 kernels), else
    the input's type (``fp16`` or ``float``). Strongly typed builds must honour it."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    producer = {layer.get_output(j).name: layer.type
                for layer in layers for j in range(layer.num_outputs)}
    split = {"int8": [], "fp16": [], "float": []}
    for layer in layers:
        if layer.type not in (trt.LayerType.CONVOLUTION, trt.LayerType.DECONVOLUTION):
            continue
        inputs = [layer.get_input(j) for j in range(min(layer.num_inputs, 2))]
        if len(inputs) == 2 and all(t is not None
                                    and producer.get(t.name) == trt.LayerType.DEQUANTIZE
                                    for t in inputs):
            split["int8"].append(layer.name)
        else:
            split["fp16" if inputs[0].dtype == trt.DataType.HALF else "float"].append(layer.name)
    return split


def build_engine(onnx_path: str | Path, out: str | Path, profiles: Sequence[Profile],
                 backend: str = "auto", compute_capabilities: Sequence[str] | None = None,
                 timing_cache: str | Path | None = None, workspace_mb: int | None = None,
                 log: Callable[[str], None] = print,
                 scan_images: Sequence[np.ndarray] = ()) -> ArtifactMeta:
    """Build an engine from ``onnx_path``; write it and its sidecar JSON atomically, after a
    NaN/Inf scan on ``scan_images`` where the engine can run here (a GPU it was built for)."""
    onnx_path, out = require_onnx(onnx_path, "build"), Path(out)
    meta = onnx_metadata(onnx_path)
    if meta.int8_scheme == "u8s8":  # TensorRT's parser refuses unsigned activations
        raise ExportError(f"{onnx_path} is INT8 u8s8 (unsigned activations, for onnxruntime on "
                          "x86 CPUs); TensorRT takes s8s8: export it again with "
                          "--int8-scheme s8s8")
    check_profiles(profiles)
    trt = import_backend(backend)
    ccs = _compute_capabilities(trt, compute_capabilities)
    if timing_cache and is_rtx(trt):
        log("TensorRT-RTX has no timing cache (it tunes kernels at run time); "
            "--timing-cache ignored")
        timing_cache = None
    logger = collecting_logger(trt)
    with _interruptible() as state:  # Ctrl-C: KeyboardInterrupt here, before anything is written
        builder = trt.Builder(logger)
        network, strongly_typed = _network(trt, builder)
        parser = _parse(trt, network, logger, onnx_path)  # noqa: F841  (kept alive for the build)
        config = _configure(trt, builder, network, profiles, meta, strongly_typed, ccs,
                            workspace_mb)
        monitor = _progress_monitor(trt, state)  # kept referenced: TensorRT does not own it
        config.progress_monitor = monitor
        if timing_cache:
            data = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
            config.set_timing_cache(config.create_timing_cache(data), ignore_mismatch=False)
        log(f"building {out.name} with {trt.__name__} {trt.__version__}"
            + (f" for {', '.join(ccs)}" if ccs else ""))
        start = time.perf_counter()
        engine = None if state["interrupted"] else builder.build_serialized_network(network, config)
        seconds = time.perf_counter() - start
    if engine is None:
        raise ExportError(f"{trt.__name__} failed to build an engine from {onnx_path}: "
                          f"{logger.error()}")
    inputs, outputs = _tensors(trt, network)
    precisions = conv_precisions(trt, network)
    with atomic_path(out) as tmp, atomic_path(sidecar_path(out)) as side:
        tmp.write_bytes(memoryview(engine))
        sidecar = meta.replace(engine=EngineInfo(
            backend=trt.__name__, backend_version=trt.__version__, compute_capabilities=ccs,
            strongly_typed=strongly_typed, profiles=[asdict(p) for p in profiles],
            inputs=inputs, outputs=outputs, conv_precision=precisions,
            onnx_sha256=sha256_file(onnx_path), engine_sha256=sha256_file(tmp),
            engine_bytes=tmp.stat().st_size, build_seconds=seconds))
        side.write_text(json.dumps(sidecar.to_dict(), indent=2))
        if len(scan_images):
            scan_engine(tmp, sidecar, scan_images, out.name, log)
    if timing_cache:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(memoryview(config.get_timing_cache().serialize()))
    log(f"built {out} with {trt.__name__} {trt.__version__} in {seconds:.1f} s "
        f"({sidecar.engine.engine_bytes / 1e6:.1f} MB)")
    log("conv layers: " + "; ".join(f"{k} {len(v)}"
                                     + (f" ({', '.join(v)})" if k != "int8" and v else "")
                                     for k, v in precisions.items() if v))
    return sidecar


def scan_engine(engine: Path, meta: ArtifactMeta, images: Sequence[np.ndarray], name: str,
                log: Callable[[str], None] = print) -> None:
    """Run ``engine`` on uint8 ``images``; ExportError naming the first output holding NaN or
    Inf. Skipped, and said so, where the engine cannot run (no GPU, another GPU family)."""
    seg = TensorRTSegmenter(engine, meta=meta, pad=True)
    try:
        seg.load()
    except NoGpuError:
        log(f"NaN/Inf scan of {name} skipped: no CUDA GPU here (the engine was built; scan it "
            "where it runs)")
        return
    except FcnDeployError as e:  # ``engine`` is still the temp file: name the final one
        log(f"NaN/Inf scan of {name} skipped: {str(e).replace(str(engine), name)}")
        return
    try:
        with seg:
            _scan(seg, images, name)
    except ExportError:
        raise
    except FcnDeployError as e:  # e.g. a CUDA error mid-run, naming the temp file
        raise ExportError(f"NaN/Inf scan of {name} failed: "
                          f"{str(e).replace(str(engine), name)}") from e
    log(f"NaN/Inf scan of {name}: outputs finite on {len(images)} calibration images")


def _scan(seg, images: Sequence[np.ndarray], name: str) -> None:
    first = seg.profiles[0]  # images cropped to its opt, batched to its min (padded by the runtime)
    for i, image in enumerate(images):
        crop = image[None, :first.opt[2], :first.opt[3]]
        batch = np.repeat(seg.preprocess(crop), first.min[0], 0)
        for output, value in seg.run(batch).items():
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ExportError(f"{name}: NaN or Inf in output {output} on calibration image "
                                  f"{i}; keep layers in higher precision (export --keep-fp32 "
                                  "or --keep-fp16; quant-report ranks them)")


