"""``fcn-deploy serve``: one artifact behind a real Triton Inference Server through PyTriton.

Triton's dynamic batcher groups same-shape requests only, so each of ``instances`` model
instances hands its group to one shared ``Batcher``, which waits a moment for the others'
groups, pads every image to its shape bucket and runs one batch per bucket."""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import queue
import re
import signal
import socket
import sysconfig
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fcn_deploy.errors import FcnDeployError, OptionError, message_line
from fcn_deploy.runtime.base import Segmenter
from fcn_deploy.wording import counted

from .buckets import Bucket, bucket_for, fill_colour, run_bucketed
from .tritonserver import paths_first

# How long the batcher waits for other instances' requests once one has arrived.
WINDOW_S = 0.004
# Start-ups of tritonserver before serve gives up (a loaded machine fails some: _start).
START_ATTEMPTS = 3


@dataclass
class ServeOptions:
    """What ``fcn-deploy serve`` was asked for (checked by the CLI before anything starts)."""

    name: str
    host: str = "127.0.0.1"  # loopback: Triton has no authentication (docs/serving.md)
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 8
    instances: int = 2
    window_s: float = WINDOW_S
    log_file: Path | None = None  # tritonserver's own lines; None: on the console


def default_log_file(opts: ServeOptions) -> Path:
    """Where tritonserver's lines go unless --verbose: its start-up lines on a CPU-only machine
    include E-level lines about CUDA that are no fault ("CudaDriverHelper has not been
    initialized"), and a user reads ours; one file per model and port, rewritten each start."""
    return Path(tempfile.gettempdir()) / "fcn-deploy" / f"serve-{opts.name}-{opts.http_port}.log"


def model_name(path: Path) -> str:
    """A Triton model name from a file stem: characters Triton refuses become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).stem) or "model"


def check_name(name: str) -> None:
    """FcnDeployError unless Triton takes ``name`` as a model name."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise OptionError(f"--name {name!r}: use only A-Z a-z 0-9 . _ -")


def check_ports(host: str, ports: Sequence[int], wait_s: float = 0.0, log=print) -> None:
    """FcnDeployError when ports repeat or one is taken (before Triton fails on it, slowly).
    A taken port is waited for up to ``wait_s``, saying so once: a killed server's tritonserver
    (sent SIGTERM by its dying parent) holds the ports while it shuts down."""
    if len(set(ports)) != len(ports):
        raise OptionError(f"--http-port, --grpc-port and --metrics-port must differ: {ports}")
    deadline = time.monotonic() + wait_s
    for port in ports:
        while (error := _bind_error(host, port)) and time.monotonic() < deadline:
            if wait_s:
                log(f"{host}:{port} is in use ({error}); waiting up to {wait_s:.0f} s for it "
                    "(a server still stopping?)")
                wait_s = 0.0  # said once
            time.sleep(0.5)
        if error:
            raise FcnDeployError(f"cannot listen on {host}:{port}: {error}")


def _bind_error(host: str, port: int) -> str | None:
    """Why ``port`` on ``host`` cannot be bound now, or None."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            return e.strerror or str(e)
    return None


def engine_buckets(seg: Segmenter, max_batch: int) -> list[Bucket]:
    """An engine's profiles as buckets (their max H x W and N); [] for other backends."""
    profiles = getattr(seg, "profiles", None) or []
    return [Bucket(p.max[2], p.max[3], min(max_batch, p.max[0])) for p in profiles]


def served_outputs(seg: Segmenter) -> tuple[str, ...]:
    """The outputs a request gets: labels, and score when the artifact computes it."""
    return ("labels", "score") if seg.output == "labels+score" else ("labels",)


def batch_fn(seg: Segmenter) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """uint8 N x H x W x 3 -> the served outputs, each N x H x W."""
    if seg.output == "labels+score":
        return lambda images: seg.run(seg.preprocess(images))
    return lambda images: {"labels": seg.predict(images)}


def model_parameters(seg: Segmenter, buckets: Sequence[Bucket]) -> dict[str, str]:
    """What a client needs to read the labels and feed the model, as config parameters."""
    meta = seg.meta
    return {"arch": meta.arch, "class_names": json.dumps(list(meta.class_names)),
            "mean": json.dumps(list(meta.mean)), "std": json.dumps(list(meta.std)),
            "input_convention": meta.convention,
            "precision": seg.precision, "input_format": meta.input.format,
            "output_mode": meta.output, "backend": seg.backend,
            "buckets": buckets_text(buckets)}


def buckets_text(buckets: Sequence[Bucket]) -> str:
    """``256x256,512x512``, or what happens without buckets."""
    return ",".join(map(str, buckets)) or "none (each size its own batch)"


class Batcher:
    """One thread running the segmenter: collects jobs (lists of images) from all instances
    for a short window, then runs them as one bucketed batch per bucket."""

    def __init__(self, run, buckets: Sequence[Bucket], fill: np.ndarray, max_batch: int,
                 expect: int, window_s: float = WINDOW_S):
        self.run, self.buckets, self.fill, self.max_batch = run, list(buckets), fill, max_batch
        self.expect, self.window_s = expect, window_s  # at most `expect` jobs are in flight
        self.images = self.batches = 0  # served so far: the summary at exit
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="fcn-batcher", daemon=True)
        self._thread.start()

    def submit(self, images: Sequence[np.ndarray]) -> Future:
        """A future of each image's outputs; BadImageError at once for an image no bucket
        takes (so one bad request never fails the others of a batch)."""
        for image in images:
            bucket_for(image.shape[0], image.shape[1], self.buckets, self.max_batch)
        future: Future = Future()
        self._queue.put((list(images), future))
        return future

    def close(self) -> None:
        """Finish the queued jobs, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _collect(self) -> list | None:
        """The next jobs: the first to arrive, then others for up to ``window_s``."""
        first = self._queue.get()
        if first is None:
            return None
        jobs, deadline = [first], time.perf_counter() + self.window_s
        while len(jobs) < self.expect:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            if job is None:  # closing: run what we have, then stop
                self._queue.put(None)
                break
            jobs.append(job)
        return jobs

    def _counted(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.images, self.batches = self.images + len(batch), self.batches + 1
        return self.run(batch)

    def _loop(self) -> None:
        while (jobs := self._collect()) is not None:
            images = [image for job_images, _ in jobs for image in job_images]
            try:
                outputs = run_bucketed(self._counted, images, self.buckets, self.fill,
                                       self.max_batch)
            except Exception as e:  # the runtime's error goes to every waiting request
                for _, future in jobs:
                    future.set_exception(e)
                continue
            k = 0
            for job_images, future in jobs:
                future.set_result(outputs[k:k + len(job_images)])
                k += len(job_images)


class Instance:
    """One Triton model instance: its requests (a same-shape group) go through the Batcher."""

    def __init__(self, batcher: Batcher, outputs: Sequence[str]):
        self.batcher, self.outputs = batcher, tuple(outputs)

    def __call__(self, requests) -> list[dict[str, np.ndarray]]:
        counts, images = [], []
        for request in requests:
            batch = request["image"]  # Triton checked: uint8, N x H x W x 3
            counts.append(len(batch))
            images += list(batch)
        results = self.batcher.submit(images).result()
        responses, k = [], 0
        for n in counts:
            part, k = results[k:k + n], k + n
            responses.append({name: np.stack([r[name] for r in part]) for name in self.outputs})
        return responses


def python_libdir_first() -> None:
    """Put this interpreter's libpython first on LD_LIBRARY_PATH for tritonserver's children:
    the Python backend stub otherwise loads the system's libpython3.11 (another patch
    release) and model load fails (``'_thread.RLock' object has no attribute ...``)."""
    os.environ["LD_LIBRARY_PATH"] = paths_first(os.environ.get("LD_LIBRARY_PATH", ""),
                                                sysconfig.get_config_var("LIBDIR"))


def endpoints(opts: ServeOptions) -> list[str]:
    """The lines ``serve`` prints once the model is ready, ending with what is exposed."""
    host = opts.host
    return [f"model:   {opts.name}",
            f"http:    http://{host}:{opts.http_port}/v2/models/{opts.name}",
            f"grpc:    {host}:{opts.grpc_port}",
            f"metrics: http://{host}:{opts.metrics_port}/metrics",
            exposure(host)]


def exposure(host: str) -> str:
    """Who can reach a server listening on ``host``, in one line (a warning past loopback)."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        loopback = host == "localhost"
    if loopback:
        return ("exposed: this machine only (loopback); --host 0.0.0.0 listens on every "
                "interface")
    where = "every interface" if host in ("0.0.0.0", "::") else host
    return (f"warning: listening on {where}: anyone who reaches these ports can run and unload "
            "the model (Triton has no authentication); put a proxy with TLS and authentication "
            "in front (docs/serving.md)")


def _add_parameters(triton, name: str, parameters: dict[str, str]) -> None:
    """PyTriton's ModelConfig has no ``parameters``: add ours to the config it loads."""
    model = next(m for m in triton._model_manager.models if m.model_name == name)
    generated = model.get_model_config

    def config() -> dict:
        cfg = generated()
        cfg.setdefault("parameters", {}).update(
            {k: {"string_value": v} for k, v in parameters.items()})
        return cfg
    model.get_model_config = config


def _triton(opts: ServeOptions, gpu: bool):
    """A PyTriton server (not started) listening where ``opts`` says."""
    from pytriton.triton import Triton, TritonConfig  # the serve extra: not for --help

    config = TritonConfig(http_address=opts.host, http_port=opts.http_port,
                          grpc_address=opts.host, grpc_port=opts.grpc_port,
                          metrics_address=opts.host, metrics_port=opts.metrics_port,
                          allow_metrics=True, allow_gpu_metrics=gpu, exit_timeout_secs=10,
                          log_file=opts.log_file)
    return Triton(config=config)


def _bind(triton, opts: ServeOptions, seg: Segmenter, batcher: Batcher,
          buckets: Sequence[Bucket]) -> None:
    """The model: ``instances`` callables over one Batcher, image in, labels (+score) out."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor  # the serve extra

    dtypes = {"labels": np.uint8, "score": np.float32}
    outputs = served_outputs(seg)
    triton.bind(model_name=opts.name,
                infer_func=[Instance(batcher, outputs) for _ in range(opts.instances)],
                inputs=[Tensor(name="image", dtype=np.uint8, shape=(-1, -1, 3))],
                outputs=[Tensor(name=n, dtype=dtypes[n], shape=(-1, -1)) for n in outputs],
                config=ModelConfig(max_batch_size=opts.max_batch, batcher=DynamicBatcher()),
                strict=True)
    _add_parameters(triton, opts.name, model_parameters(seg, buckets))


def _one_line(error: Exception) -> str:
    """An error whose text holds a traceback (Triton's model load does) as one line: its
    first line and the exception the traceback ends in."""
    first, last = message_line(error), message_line(error, last=True)
    head = first.replace("Traceback (most recent call last):", "").rstrip(": ")
    return f"{type(error).__name__}: {head}" + (f" ... {last}" if last != first else "")


def _start(opts: ServeOptions, seg: Segmenter, batcher: Batcher, buckets: Sequence[Bucket],
           log) -> object:
    """A started Triton with the model loaded. On a loaded machine a model instance can miss
    PyTriton's 1 s configuration handshake (inside its stub; not settable) and the load fails
    (``InferenceServerException: [400] load failed ... ConnectionRefusedError``, among others):
    each failure is a warning line and a fresh server, up to ``START_ATTEMPTS``; then one
    FcnDeployError line."""
    for attempt in range(1, START_ATTEMPTS + 1):
        triton = _triton(opts, seg.device != "cpu")
        try:
            _bind(triton, opts, seg, batcher, buckets)
            triton.run()
            return triton
        except Exception as e:  # PyTriton, tritonclient and socket errors alike
            triton.stop()
            what = _one_line(e)
        if attempt < START_ATTEMPTS:
            log(f"warning: the Triton server did not start ({what}); starting it again "
                f"({attempt + 1} of {START_ATTEMPTS})")
    where = f"; its log: {opts.log_file}" if opts.log_file else ""
    raise FcnDeployError(f"the Triton server did not start in {START_ATTEMPTS} attempts: "
                         f"{what}{where}")


def _wait_for_signal(triton) -> None:
    """Block until SIGINT or SIGTERM; FcnDeployError if the server dies first."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        if not triton.is_alive():
            raise FcnDeployError("the Triton server stopped unexpectedly")


def serve(seg: Segmenter, opts: ServeOptions, buckets: Sequence[Bucket], log=print,
          verbose: bool = False) -> None:
    """Serve ``seg`` until SIGINT/SIGTERM; in-flight requests are answered before it returns."""
    if not verbose:  # a bad request is the client's error, not a server warning per request
        logging.getLogger("pytriton").setLevel(logging.ERROR)
    python_libdir_first()
    if opts.log_file:
        opts.log_file.parent.mkdir(parents=True, exist_ok=True)
    seg.load()  # a broken artifact or a missing GPU fails before the server starts
    batcher = Batcher(batch_fn(seg), buckets, fill_colour(seg.meta), opts.max_batch,
                      opts.instances, opts.window_s)
    triton = None
    try:
        triton = _start(opts, seg, batcher, buckets, log)
        log(f"serving {seg.path} ({seg.backend}, {seg.device}, outputs "
            f"{', '.join(served_outputs(seg))}; buckets {buckets_text(buckets)})")
        for line in endpoints(opts):
            log(f"  {line}")
        if opts.log_file:
            log(f"  log:     {opts.log_file} (tritonserver's own lines)")
        log("ready; Ctrl-C or SIGTERM stops")
        _wait_for_signal(triton)
        log("stopping: answering in-flight requests")
    finally:
        if triton is not None:
            triton.stop()
        batcher.close()
        seg.close()
    log(f"stopped; answered {counted(batcher.images, 'image')} in "
        f"{counted(batcher.batches, 'batch', 'batches')}")
