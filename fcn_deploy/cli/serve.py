"""serve: an artifact, or an export-triton repository, behind a real Triton Inference Server
(the one nvidia-pytriton ships), until Ctrl-C or SIGTERM."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fcn_deploy.contract.kinds import artifact_kind
from fcn_deploy.errors import FcnDeployError, OptionError

from .app import command, state
from .options import Backend, Device, Threads, memory_limit, open_runtime

# A restarted server waits this long for its ports: a killed one's tritonserver gets SIGTERM
# from its dying parent and shuts down within its 10 s exit timeout (serving/server.py).
PORT_WAIT_S = 20.0


@command
def serve(
    ctx: typer.Context,
    artifact: Path = typer.Argument(..., help="ONNX file (CPU or GPU), engine or checkpoint "
                                    "(GPU, needs torch) to serve; or a Triton model repository "
                                    "(export-triton --backend python), served as it is."),
    name: Optional[str] = typer.Option(None, help="Triton model name (default: the file's "
                                       "stem, other characters than A-Z a-z 0-9 . _ - as _)."),
    host: str = typer.Option("127.0.0.1", help="Address the endpoints listen on: loopback (this "
                             "machine only) by default; 0.0.0.0 for every interface (Triton has "
                             "no authentication: put a proxy in front, docs/serving.md)."),
    http_port: int = typer.Option(8000, min=1, max=65535, help="HTTP/REST port."),
    grpc_port: int = typer.Option(8001, min=1, max=65535, help="gRPC port."),
    metrics_port: int = typer.Option(8002, min=1, max=65535, help="Prometheus metrics port."),
    max_batch: int = typer.Option(8, min=1, help="Most images run as one batch (engines: at "
                                  "most each profile's batch)."),
    buckets: Optional[str] = typer.Option(None, help="Shape buckets HxW,... (ONNX files, "
                                          "checkpoints): requests of different sizes are "
                                          "padded to the smallest bucket holding them and "
                                          "batched together; engines use their profiles. "
                                          "Without: each size is its own batch."),
    instances: int = typer.Option(2, min=1, help="Triton model instances: requests in flight "
                                  "at once, batched together across sizes."),
    device: Device = "cpu",
    threads: Threads = None,
    backend: Backend = "auto",
    max_memory: Optional[str] = typer.Option(
        None, help="Memory each model instance may take for a batch: 3G, 500M or bytes "
        "(powers of 1024; default: the memory available at each request). A request whose "
        "image alone needs more (the artifact's measured activation_bytes_per_pixel) gets an "
        "HTTP 400 naming the limit; a batch that needs more runs in parts."),
):
    """Serve an artifact with Triton Inference Server until Ctrl-C or SIGTERM: input `image`
    (uint8 H x W x 3 RGB), outputs `labels` (uint8 H x W) and, for labels+score artifacts,
    `score` (float32 H x W). A bad request gets its own one-line error (HTTP 400)."""
    from fcn_deploy.serving import server  # numpy; tritonclient when it starts

    log = lambda line: print(line, flush=True)  # noqa: E731 - serve's lines, unbuffered
    repository = artifact.is_dir()
    if repository:
        _repository_options(ctx)
    kind = None if repository else artifact_kind(artifact)
    pad = kind == "engine"  # an engine pads images smaller than its profiles
    opts = server.ServeOptions(name=name or server.model_name(artifact), host=host,
                               http_port=http_port, grpc_port=grpc_port,
                               metrics_port=metrics_port, max_batch=max_batch,
                               instances=instances, threads=threads, pad=pad,
                               max_memory=memory_limit(max_memory))
    server.check_name(opts.name)
    opts.log_file = server.default_log_file(opts)
    models = server.repository_models(artifact) if repository else [opts.name]
    seg = None if repository else open_runtime(artifact, device, threads, pad, backend)
    bucket_list = [] if repository else _serve_buckets(seg, buckets, max_batch)
    server.check_ports(host, [http_port, grpc_port, metrics_port], wait_s=PORT_WAIT_S, log=log)
    _require_pytriton()
    if repository:
        server.serve_repository(artifact, models, opts, log=log, verbose=state["verbose"])
    else:
        server.serve(seg, opts, bucket_list, log=log, verbose=state["verbose"])


# What a repository's own config.pbtxt decides: options for serving an artifact only.
_ARTIFACT_ONLY = ("name", "max_batch", "buckets", "instances", "device", "threads", "backend",
                  "max_memory")


def _repository_options(ctx: typer.Context) -> None:
    """OptionError naming the options a repository's config.pbtxt decides, where given."""
    set_ = [f"--{k.replace('_', '-')}" for k in _ARTIFACT_ONLY
            if ctx.get_parameter_source(k).name != "DEFAULT"]
    if set_:
        raise OptionError(f"{', '.join(set_)}: a repository's config.pbtxt decides these; "
                          "they are for serving an artifact")


def _serve_buckets(seg, text: Optional[str], max_batch: int) -> list:
    """--buckets, or an engine's profiles; [] (each size its own batch) without either."""
    from fcn_deploy.serving.buckets import parse_buckets  # numpy: not for --help
    from fcn_deploy.serving.server import engine_buckets  # numpy: not for --help

    profiles = engine_buckets(seg, max_batch)
    if text is not None and profiles:
        raise OptionError("--buckets is for ONNX files and checkpoints; an engine's buckets "
                          "are its profiles")
    return parse_buckets(text, max_batch) if text is not None else profiles


def _require_pytriton() -> None:
    """One error line, before anything starts, where the serve extra is not installed."""
    import importlib.util  # only serve asks

    if importlib.util.find_spec("pytriton") is None:
        raise FcnDeployError("serve needs nvidia-pytriton, which is not installed here: "
                             "pip install 'fcn-deploy[serve]'")
