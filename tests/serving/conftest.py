"""A tiny ONNX model, and a real `fcn-deploy serve` running it from the serve venv (PyTriton's
tritonserver): FCN_SERVE_VENV names that venv (make test sets it); without it the server
tests skip. Loopback only, free ports; the fixture stops the server (SIGINT, then kill)."""
import os
import signal
import socket
import subprocess
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import run

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
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """A random-init width-1/16 FCN-8s with 7 classes (non-trivial labels), as ONNX."""
    path = tmp_path_factory.mktemp("serve") / "tiny fcn.onnx"  # a space: the name is sanitized
    result = run("export", "--random-init", "--arch", "fcn8s-vgg16", "--width", "0.0625",
                 "--num-classes", "7", "--eval-samples", "0", "-o", path)
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="session")
def score_onnx(tmp_path_factory):
    """The same tiny net with labels+score computed in the graph."""
    path = tmp_path_factory.mktemp("serve") / "score.onnx"
    result = run("export", "--random-init", "--arch", "fcn8s-vgg16", "--width", "0.0625",
                 "--num-classes", "7", "--output", "labels+score", "--eval-samples", "0",
                 "-o", path)
    assert result.exit_code == 0, result.output
    return path


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports the OS calls free on loopback right now."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_ready(server: Server, deadline_s: float = READY_S) -> None:
    """Poll tritonclient's is_model_ready until true; fail with the server's output."""
    import tritonclient.http as http  # the triton extra: only the server tests need it

    deadline = time.monotonic() + deadline_s
    with closing(http.InferenceServerClient(server.url)) as client:  # open delays the exit
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                pytest.fail(f"serve exited {server.proc.returncode}:\n"
                            + server.stdout.read_text())
            try:
                if client.is_model_ready(server.name):
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.25)
    pytest.fail(f"serve not ready after {deadline_s} s:\n{server.stdout.read_text()}")


def start_server(model: Path, tmp: Path, *args, name: str = "tiny_fcn") -> Server:
    """`fcn-deploy serve MODEL ARGS` from the serve venv, ready to answer."""
    if not SERVE_VENV:
        pytest.skip("no serve venv (FCN_SERVE_VENV; make test builds one)")
    http, grpc, metrics = free_ports(3)
    stdout = tmp / "serve.out"
    cmd = [str(Path(SERVE_VENV) / "bin" / "fcn-deploy"), "serve", str(model),
           "--host", "127.0.0.1", "--http-port", str(http), "--grpc-port", str(grpc),
           "--metrics-port", str(metrics), *map(str, args)]
    with open(stdout, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, http, grpc, metrics, name, stdout)
    try:
        wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


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
