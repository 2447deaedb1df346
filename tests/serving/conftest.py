"""A tiny ONNX model, and a real `fcn-deploy serve` running it from the serve venv (the
tritonserver PyTriton ships): FCN_SERVE_VENV names that venv (make test sets it); without it
the server tests skip. Loopback only (serve's default), free ports; the fixture stops the
server (SIGINT, then kill)."""
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import export_tiny

from fcn_deploy.serving.tritonserver import free_ports, stop, wait_ready

SERVE_VENV = os.environ.get("FCN_SERVE_VENV")
BUCKETS = "32x48,48x64,64x96"
READY_S, STOP_S = 60, 30


@dataclass
class Server:
    """A running `fcn-deploy serve`: its process, ports, model name and stdout file."""

    proc: subprocess.Popen
    http_port: int
    grpc_port: int
    metrics_port: int
    name: str
    stdout: Path

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def stop(self, timeout: float = STOP_S) -> int:
        """SIGINT, then kill after ``timeout``; the exit code."""
        return stop(self.proc, timeout)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """A random-init width-1/16 FCN-8s with 7 classes (non-trivial labels), as ONNX."""
    path = tmp_path_factory.mktemp("serve") / "tiny fcn.onnx"  # a space: the name is sanitized
    return export_tiny(path, "--eval-samples", "0")


@pytest.fixture(scope="session")
def score_onnx(tmp_path_factory):
    """The same tiny net with labels+score computed in the graph."""
    path = tmp_path_factory.mktemp("serve") / "score.onnx"
    export_tiny(path, "--output", "labels+score", "--eval-samples", "0")
    return path


def start_server(model: Path, tmp: Path, *args, name: str = "tiny_fcn",
                 ports: tuple[int, int, int] | None = None, verbose: bool = False) -> Server:
    """`fcn-deploy [--verbose] serve MODEL ARGS` from the serve venv, ready to answer
    ``name``; on ``ports`` (HTTP, gRPC, metrics) or free ones."""
    if not SERVE_VENV:
        pytest.skip("no serve venv (FCN_SERVE_VENV; make test builds one)")
    http, grpc, metrics = ports or free_ports(3)
    stdout = tmp / "serve.out"
    # no --host: the default listens on loopback only (test_server checks the line saying so)
    cmd = [str(Path(SERVE_VENV) / "bin" / "fcn-deploy"), *["--verbose"] * verbose, "serve",
           str(model),
           "--http-port", str(http), "--grpc-port", str(grpc),
           "--metrics-port", str(metrics), *map(str, args)]
    with open(stdout, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, http, grpc, metrics, name, stdout)
    try:
        wait_ready(proc, server.url, [name], stdout, READY_S)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def launch():
    """``start_server``, for tests that serve models of their own."""
    return start_server


@pytest.fixture(scope="module")
def server(tiny_onnx, tmp_path_factory):
    """The tiny model served with shape buckets, two instances, batches of up to 8."""
    s = start_server(tiny_onnx, tmp_path_factory.mktemp("server"), "--buckets", BUCKETS,
                     "--instances", "2", "--max-batch", "8", "--threads", "1")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def score_server(score_onnx, tmp_path_factory):
    """The labels+score model, named on the command line, one instance, no buckets."""
    s = start_server(score_onnx, tmp_path_factory.mktemp("score"), "--name", "seg",
                     "--instances", "1", "--threads", "1", name="seg")
    yield s
    s.stop()
