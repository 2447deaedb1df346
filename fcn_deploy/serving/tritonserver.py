"""The ``tritonserver`` binary the ``nvidia-pytriton`` wheel ships, run on a model repository
(``export-triton --backend python``) the way PyTriton itself runs it.

Two things make the bundled server load Python-backend models: the backend folder needs the
stub built for this Python version (the wheel keeps the stubs apart, in
``python_backend_stubs/``), and the stub, which embeds Python, must find this interpreter: its
prefix comes from the first ``python3`` on PATH (so the venv's site-packages, with fcn_deploy,
are seen) and its libpython from ``LD_LIBRARY_PATH`` (else the loader may pick the system's
libpython of another patch release, and loading fails on ``_thread.RLock``).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from fcn_deploy.errors import FcnDeployError

_PROBE = ("import sys, sysconfig, pytriton, pathlib; print('%d.%d' % sys.version_info[:2]); "
          "print(sysconfig.get_config_var('LIBDIR')); print(sys.prefix); "
          "print(pathlib.Path(pytriton.__file__).parent)")


@dataclass(frozen=True)
class Install:
    """Where the bundled server and the interpreter its Python backend must use live."""

    version: str      # major.minor of the interpreter
    libdir: Path      # its libpython's folder
    prefix: Path      # the venv (its bin/ goes first on PATH)
    pytriton: Path    # the pytriton package folder

    @property
    def dist(self) -> Path:
        return self.pytriton / "tritonserver"

    @classmethod
    def of(cls, python: str | Path) -> "Install":
        """The install seen by interpreter ``python``; FcnDeployError when it has no PyTriton."""
        proc = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True)
        if proc.returncode != 0:
            raise FcnDeployError("the bundled tritonserver needs PyTriton: pip install "
                                 "'fcn-deploy[serve]'")
        version, libdir, prefix, package = proc.stdout.split("\n")[:4]
        return cls(version, Path(libdir), Path(prefix), Path(package))

    def backend_dir(self, folder: Path) -> Path:
        """``folder/backends`` as PyTriton prepares it: the Python backend with this
        interpreter's stub linked in."""
        python = folder / "backends" / "python"
        python.mkdir(parents=True, exist_ok=True)
        stub = self.dist / "python_backend_stubs" / self.version / "triton_python_backend_stub"
        links = {name: self.dist / "backends" / "python" / name
                 for name in ("libtriton_python.so", "triton_python_backend_utils.py")}
        for name, target in {**links, stub.name: stub}.items():
            if not (python / name).exists():
                (python / name).symlink_to(target)
        return folder / "backends"

    def env(self, base: dict | None = None) -> dict:
        """The server's environment: the venv first on PATH, its libpython first to load."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self.prefix / 'bin'}:{env.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = paths_first(env.get("LD_LIBRARY_PATH", ""), self.libdir,
                                             self.pytriton.parent / "nvidia_pytriton.libs")
        env.pop("PYTHONPATH", None)  # another venv's paths must not leak into the stub
        return env

    def command(self, repo: Path, backends: Path, ports: Sequence[int],
                address: str = "127.0.0.1") -> list[str]:
        """The tritonserver command line for ``repo`` on (http, grpc, metrics) ``ports``."""
        http, grpc, metrics = ports
        return [str(c) for c in (
            self.dist / "bin" / "tritonserver", "--model-repository", repo,
            "--backend-directory", backends, "--http-address", address,
            "--grpc-address", address, "--http-port", http, "--grpc-port", grpc,
            "--metrics-port", metrics, "--disable-auto-complete-config",
            "--exit-timeout-secs", 10)]


def paths_first(value: str, *first) -> str:
    """A ``:``-separated path list with ``first`` in front, each once."""
    heads = [str(p) for p in first if p]
    return ":".join([*heads, *(p for p in value.split(":") if p and p not in heads)])


def free_ports(n: int) -> list[int]:
    """``n`` loopback ports free right now (bound to port 0, then released)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_ready(proc: subprocess.Popen, url: str, models: Sequence[str], log: Path,
               timeout: float = 60) -> None:
    """Until the server at ``url`` has ``models`` ready; FcnDeployError with the log's tail
    when it exits or the time runs out."""
    import tritonclient.http as http  # the triton/serve extras: only when a server runs

    client = http.InferenceServerClient(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise FcnDeployError(f"tritonserver exited ({proc.returncode}): "
                                     f"{_tail(log)}")
            try:
                if client.is_server_ready() and all(client.is_model_ready(m) for m in models):
                    return
            except Exception:  # not listening yet: tritonclient raises its own types
                pass
            time.sleep(0.2)
    finally:
        client.close()  # an open keep-alive connection would hold up the server's exit
    raise FcnDeployError(f"tritonserver not ready in {timeout:g} s: {_tail(log)}")


def stop(proc: subprocess.Popen, timeout: float = 20) -> int:
    """SIGINT (Triton unloads its models and exits), then kill after ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _tail(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return " | ".join(lines[-3:]) or "no output"
