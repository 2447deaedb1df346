"""Running the real CLI in-process, the one-line error form every bad input must get, and the
tree's modules as setup.py installs them."""
import ast
import importlib.util
import time
from pathlib import Path

from typer.testing import CliRunner

from fcn_deploy.cli import app


def run(*args):
    """``fcn-deploy ARGS`` in-process (wide console, so table rows stay on one line)."""
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def assert_one_line_error(result, *needles, code: int = 1) -> str:
    """The run printed exactly one ``error:`` line holding every needle, and exited ``code``."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert all(str(n) in lines[0] for n in needles), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def tiny_meta(arch: str = "fcn8s-vgg16", width: float = 0.0625, num_classes: int = 7,
              mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), **fields):
    """The ArtifactMeta of a small test model (default class names for ``num_classes``)."""
    from fcn_deploy.contract.metadata import ArtifactMeta
    from fcn_deploy.exporters.export import default_class_names

    return ArtifactMeta(arch=arch, width=width, num_classes=num_classes,
                        class_names=default_class_names(num_classes), mean=list(mean),
                        std=list(std), **fields)


def export_tiny(out, *options, num_classes: int = 7):
    """A random-init width-1/16 FCN-8s exported to ``out`` with extra export ``options`` (random
    init: non-trivial labels, unlike an untrained score layer); returns ``out``."""
    result = run("export", "--random-init", "--arch", "fcn8s-vgg16", "--width", "0.0625",
                 "--num-classes", num_classes, *options, "-o", out)
    assert result.exit_code == 0, result.output
    return out


def gpu_usable() -> bool:
    """A CUDA GPU reachable through cuda-python (what the GPU paths use)."""
    find = importlib.util.find_spec
    if find("cuda") is None or find("cuda.bindings") is None:
        return False
    from cuda.bindings import runtime as rt

    err, count = rt.cudaGetDeviceCount()
    return int(err) == 0 and count > 0


ROOT = Path(__file__).resolve().parents[1]


def package_roots() -> dict[str, Path]:
    """Installed package name -> folder, as setup.py maps them (read, not run)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    roots = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                 and getattr(node.targets[0], "id", "") == "ROOTS")
    return {name: ROOT / folder for name, folder in ast.literal_eval(roots).items()}


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module under the folders setup.py installs (the
    wheel must hold them all: tests/test_packaging.py)."""
    found = {}
    for name, folder in package_roots().items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join((name, *parts))] = path
    return found


def wait_for_files(folder: Path, pattern: str, count: int, job, seconds: float) -> int:
    """Wait until ``folder`` holds ``count`` files matching ``pattern`` or the process ``job``
    ended; how many it holds (AssertionError if none appeared within ``seconds``)."""
    deadline = time.monotonic() + seconds
    while len(list(folder.glob(pattern))) < count and job.poll() is None:
        assert time.monotonic() < deadline, f"no {pattern} appeared in {folder}"
        time.sleep(0.1)
    return len(list(folder.glob(pattern)))
