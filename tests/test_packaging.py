"""What users install: the sdist and the wheel make test builds (FCN_DIST) hold every module of
the tree, installed under fcn_deploy only, with the console script; the runtime venvs run that
wheel (tests/test_runtime_only.py, tests/serving)."""
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT, modules

DIST = os.environ.get("FCN_DIST")
pytestmark = pytest.mark.skipif(not DIST, reason="no built wheel (FCN_DIST; make test builds one)")


def built(pattern: str) -> Path:
    found = sorted(Path(DIST).glob(pattern))
    assert len(found) == 1, found
    return found[0]


def module_name(path: str) -> str:
    parts = Path(path).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_wheel_holds_every_module_under_fcn_deploy():
    with zipfile.ZipFile(built("*.whl")) as wheel:
        names = wheel.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = wheel.read(entry_points).decode()
    found = {module_name(n) for n in names if n.endswith(".py")}
    missing = sorted(set(modules()) - found)
    assert not missing, f"the wheel lacks {missing}"
    assert {n.split("/")[0] for n in names} == {"fcn_deploy", next(
        n.split("/")[0] for n in names if ".dist-info/" in n)}  # no top-level benchmarks
    assert "fcn-deploy = fcn_deploy.cli:main" in scripts


def test_the_sdist_holds_the_tree_the_wheel_is_built_from():
    with tarfile.open(built("*.tar.gz")) as sdist:
        names = {Path(*Path(n).parts[1:]) for n in sdist.getnames()}  # less the top folder
    expected = {path.relative_to(ROOT) for path in modules().values()}
    expected |= {Path(n) for n in ("pyproject.toml", "setup.py", "README.md", "LICENSE")}
    assert not expected - names, f"the sdist lacks {sorted(expected - names)}"
