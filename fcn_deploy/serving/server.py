"""``fcn-deploy serve``: an artifact, or a Triton model repository, behind the real Triton
Inference Server that the ``nvidia-pytriton`` wheel ships, run as a child process.

For an artifact, serve writes a repository whose Python-backend model (triton_model.py) takes
ragged batches: Triton's dynamic batcher hands each model instance (its own process, with its
own runtime session) the requests of every size that arrived together; the model checks each
request alone, pads the good ones to their shape buckets and runs one batch per bucket."""
from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fcn_deploy.errors import FcnDeployError, OptionError, message_line
from fcn_deploy.runtime.base import Segmenter
from fcn_deploy.wording import counted

from .buckets import Bucket
from .tritonserver import Install, stop, wait_ready

# How long Triton's dynamic batcher waits for more requests once one has arrived.
WINDOW_S = 0.004
# The Prometheus counter triton_model.py counts its error responses in (Triton's own failure
# count does not see a Python model's).
REFUSED = "fcn_deploy_failed_requests"
# How long a start-up may take until every model instance is ready.
READY_S = 120.0
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
    threads: int | None = None  # per model instance; None: the runtime's default
    pad: bool = False  # engines: pad images smaller than a profile
    max_memory: int | None = None  # bytes per model instance; None: what is available
    log_file: Path | None = None  # tritonserver's own lines (default_log_file)


def default_log_file(opts: ServeOptions) -> Path:
    """Where tritonserver's lines go (--verbose also shows them, prefixed): its start-up lines
    on a CPU-only machine include E-level lines about CUDA that are no fault
    ("CudaDriverHelper has not been initialized"); one file per model and port, rewritten
    each start."""
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


def endpoints(opts: ServeOptions, models: Sequence[str]) -> list[str]:
    """The lines ``serve`` prints once the models are ready, ending with what is exposed."""
    host = opts.host
    return [*(f"model:   {m}  http://{host}:{opts.http_port}/v2/models/{m}" for m in models),
            f"http:    http://{host}:{opts.http_port}",
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


def runtime_options(params: dict[str, str]) -> dict:
    """open_segmenter's options from the model's config parameters (``runtime_parameters``)."""
    threads = params["threads"]
    return {"device": params["device"], "backend": params["backend"],
            "threads": int(threads) if threads else None, "pad": params["pad"] == "true"}


def runtime_parameters(seg: Segmenter, opts: ServeOptions) -> dict[str, str]:
    """How each model instance opens the artifact, as config parameters. On the CPU the
    instances (processes running at once) share the cores unless --threads says otherwise."""
    threads = opts.threads or (max(1, (os.cpu_count() or 1) // opts.instances)
                               if seg.device == "cpu" else None)
    return {"artifact": str(Path(seg.path).resolve()), "device": seg.device,
            "backend": seg.backend, "threads": str(threads or ""),
            "max_memory": str(opts.max_memory or ""),
            "pad": "true" if opts.pad else "false"}


def write_repository(folder: Path, seg: Segmenter, opts: ServeOptions,
                     buckets: Sequence[Bucket]) -> Path:
    """A Triton model repository in ``folder`` serving ``seg``'s artifact (triton_model.py),
    image in, labels (+score) out; returns ``folder``."""
    from google.protobuf import text_format  # protobuf: comes with tritonclient
    from tritonclient.grpc import model_config_pb2 as mc  # the serve extra: not for --help

    config = mc.ModelConfig(name=opts.name, backend="python", max_batch_size=opts.max_batch)
    # ragged: Triton batches requests of any size together; the model pads them to buckets
    config.input.add(name="image", data_type=mc.TYPE_UINT8, dims=[-1, -1, 3],
                     allow_ragged_batch=True)
    for name in served_outputs(seg):
        config.output.add(name=name, data_type=mc.TYPE_UINT8 if name == "labels"
                          else mc.TYPE_FP32, dims=[-1, -1])
    config.dynamic_batching.max_queue_delay_microseconds = round(opts.window_s * 1e6)
    config.instance_group.add(count=opts.instances, kind=mc.ModelInstanceGroup.KIND_CPU)
    params = {**model_parameters(seg, buckets), **runtime_parameters(seg, opts),
              "serve_buckets": json.dumps([astuple(b) for b in buckets])}
    for key, value in params.items():
        config.parameters[key].string_value = value
    version = folder / opts.name / "1"
    version.mkdir(parents=True)
    (folder / opts.name / "config.pbtxt").write_text(text_format.MessageToString(config))
    shutil.copyfile(Path(__file__).with_name("triton_model.py"), version / "model.py")
    return folder


def repository_models(repo: Path) -> list[str]:
    """The models of a Triton repository (folders with a config.pbtxt); FcnDeployError when
    there are none or one needs a backend the bundled tritonserver lacks (it has Python's)."""
    configs = sorted(repo.glob("*/config.pbtxt"))
    if not configs:
        raise FcnDeployError(f"{repo} holds no Triton model (no */config.pbtxt): write one with "
                             "fcn-deploy export-triton ARTIFACT --repo "
                             f"{repo} --backend python --kind cpu")
    for config in configs:
        text = config.read_text()
        kind = re.search(r'^(?:backend|platform):\s*"([^"]+)"', text, re.M)
        if kind and kind.group(1) not in ("python", "ensemble"):
            raise FcnDeployError(
                f"{config.parent.name} needs Triton's {kind.group(1)} backend, which the "
                "bundled tritonserver lacks (it has the Python backend): write the repository "
                "with fcn-deploy export-triton --backend python")
    return [c.parent.name for c in configs]


def _die_with_parent() -> None:
    """In tritonserver's child process: SIGTERM when serve dies, even by SIGKILL, so that no
    server is left holding the ports (Linux prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class TritonProcess:
    """The bundled tritonserver on a repository; its lines go to ``log_file``, and with
    ``echo`` also to the console, each prefixed ``tritonserver|``."""

    def __init__(self, repo: Path, opts: ServeOptions, models: Sequence[str], echo: bool,
                 log=print):
        self.repo, self.opts, self.models, self.echo, self.log = repo, opts, models, echo, log
        self.work = tempfile.TemporaryDirectory(prefix="fcn-serve-")
        self.install = Install.of(sys.executable)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{self.opts.host}:{self.opts.http_port}"

    def start(self) -> None:
        """Start it and wait until every model is ready; FcnDeployError with its log's tail."""
        opts = self.opts
        command = self.install.command(self.repo, self.install.backend_dir(Path(self.work.name)),
                                       (opts.http_port, opts.grpc_port, opts.metrics_port),
                                       opts.host)
        # cwd: the model's Python stub has it on sys.path, where a source tree's fcn_deploy
        # would hide the installed one
        self.proc = subprocess.Popen(command, env=self.install.env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.work.name, preexec_fn=_die_with_parent)
        log_file = open(opts.log_file, "w", buffering=1)
        threading.Thread(target=self._pump, args=(log_file,), daemon=True).start()
        try:
            wait_ready(self.proc, self.url, self.models, opts.log_file, READY_S)
        except BaseException:
            self.stop()
            raise

    def _pump(self, log_file) -> None:
        with log_file:
            for line in self.proc.stdout:
                text = line.decode(errors="replace").rstrip()
                log_file.write(text + "\n")
                if self.echo:
                    self.log(f"tritonserver| {text}")

    def statistics(self) -> tuple[int, int, int]:
        """(images, executions, requests answered with an error) over every model so far."""
        import urllib.request  # only once a server runs

        import tritonclient.http as http  # the serve extra: only once a server runs

        with closing(http.InferenceServerClient(self.url)) as client:
            stats = client.get_inference_statistics()["model_stats"]
        metrics_url = f"http://{self.opts.host}:{self.opts.metrics_port}/metrics"
        with urllib.request.urlopen(metrics_url, timeout=10) as response:
            metrics = response.read().decode()
        refused = re.findall(rf"^{REFUSED}{{[^}}]*}} (\S+)$", metrics, re.M)
        return (sum(s["inference_count"] for s in stats),
                sum(s["execution_count"] for s in stats),
                sum(s["inference_stats"]["fail"]["count"] for s in stats)
                + int(sum(map(float, refused))))

    def stop(self) -> None:
        """SIGINT: Triton answers the requests in flight, unloads the models and exits."""
        if self.proc is not None:
            stop(self.proc)
        self.work.cleanup()


def _start(repo: Path, opts: ServeOptions, models: Sequence[str], echo: bool,
           log) -> TritonProcess:
    """A started tritonserver with ``models`` ready; a failed start (a loaded machine can time
    out a model's load) is a warning line and a fresh server, up to ``START_ATTEMPTS``; then
    one FcnDeployError line naming the log."""
    for attempt in range(1, START_ATTEMPTS + 1):
        server = TritonProcess(repo, opts, models, echo, log)
        try:
            server.start()
            return server
        except FcnDeployError as e:
            what = message_line(e, last=True)
        if attempt < START_ATTEMPTS:
            log(f"warning: the Triton server did not start ({what}); starting it again "
                f"({attempt + 1} of {START_ATTEMPTS})")
    raise FcnDeployError(f"the Triton server did not start in {START_ATTEMPTS} attempts: "
                         f"{what}; its log: {opts.log_file}")


def _stop_event() -> threading.Event:
    """An event SIGINT and SIGTERM set from now on (a signal during start-up stops the server
    once it has started, rather than interrupting the start half-way)."""
    event = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: event.set())
    return event


def _wait_for_signal(server: TritonProcess, stop_event: threading.Event) -> None:
    """Block until ``stop_event``; FcnDeployError if the server dies first."""
    while not stop_event.wait(1.0):
        if server.proc.poll() is not None:
            raise FcnDeployError(f"the Triton server stopped unexpectedly; its log: "
                                 f"{server.opts.log_file}")


def run_server(repo: Path, opts: ServeOptions, models: Sequence[str], what: str, log=print,
               verbose: bool = False) -> None:
    """Serve the ``models`` of ``repo`` until SIGINT/SIGTERM, saying ``what`` it serves, the
    endpoints and, at exit, how many images it answered."""
    opts.log_file.parent.mkdir(parents=True, exist_ok=True)
    stop_event = _stop_event()
    server = _start(repo, opts, models, verbose, log)
    try:
        log(f"serving {what}")
        for line in endpoints(opts, models):
            log(f"  {line}")
        log(f"  log:     {opts.log_file} (tritonserver's own lines)")
        log("ready; Ctrl-C or SIGTERM stops")
        _wait_for_signal(server, stop_event)
        log("stopping: answering in-flight requests")
        images, batches, failed = server.statistics()
    finally:
        server.stop()
    # (requests Triton itself refuses, a wrong dtype or shape, reach no model: not counted)
    log(f"stopped; answered {counted(images, 'image')} in "
        f"{counted(batches, 'batch', 'batches')}" + (f"; {counted(failed, 'request')} answered "
                                                     "with an error" if failed else ""))


def serve(seg: Segmenter, opts: ServeOptions, buckets: Sequence[Bucket], log=print,
          verbose: bool = False) -> None:
    """Serve ``seg``'s artifact until SIGINT/SIGTERM; in-flight requests are answered first."""
    seg.load()  # a broken artifact or a missing GPU fails before the server starts
    what = (f"{seg.path} ({seg.backend}, {seg.device}, outputs "
            f"{', '.join(served_outputs(seg))}; buckets {buckets_text(buckets)})")
    seg.close()  # each model instance opens its own
    with tempfile.TemporaryDirectory(prefix="fcn-serve-repo-") as folder:
        repo = write_repository(Path(folder), seg, opts, buckets)
        run_server(repo, opts, [opts.name], what, log, verbose)


def serve_repository(repo: Path, models: Sequence[str], opts: ServeOptions, log=print,
                     verbose: bool = False) -> None:
    """Serve the ``models`` (repository_models) of a Triton model repository
    (``export-triton --backend python``) as ``serve`` does an artifact."""
    run_server(repo, opts, models, f"{repo} ({counted(len(models), 'model')})", log, verbose)
