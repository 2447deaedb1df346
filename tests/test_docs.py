"""The README and docs/ as tests: every command in a ```bash block runs (in order per page, in a
temporary folder holding a user's files), or is listed below with the test that covers it;
```python blocks run after their page's commands; relative links and #anchors resolve; the
README stays a front door (under 10 KiB)."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import gpu_usable, run
from PIL import Image

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)

# Commands the doc test does not run, with why and what covers them instead. A command in a
# bash block matching none of these prefixes must run, so a new one cannot rot unnoticed.
COVERED = {
    "make demo": "~12 min; `make -n demo` checks the target exists",
    "make test": "the suite itself; `make -n test` checks the target exists",
    "pip install": "installs; the extra is checked in pyproject.toml (tests/test_runtime_only.py "
                   "runs the runtime-only install)",
    ".venv/bin/pytest": "the suite itself; the marker is checked in pyproject.toml",
    "fcn-deploy serve": "a server that runs until stopped: tests/serving/test_serve_cli.py",
    "fcn-deploy load-test": "needs a running server: tests/serving, tests/benchmarks/test_load.py",
}
# Run only with -m slow (minutes, or a Ray cluster's start-up); the tests named cover them in the
# default run. Nothing later on a page may depend on their outputs.
SLOW = {
    "fcn-deploy reproduce": "tests/tasks/test_reproduce.py",
    "fcn-deploy segment-dataset": "tests/tasks/test_segment_dataset.py",
}
# Need a CUDA GPU (an engine that runs, or --device cuda); skipped without one, as
# tests/runtime/test_cuda.py does.
GPU = (
    "fcn-deploy -v predict runs/buckets.engine",
    "fcn-deploy eval runs/fcn8s.onnx runs/fcn8s_int8.engine",
    "fcn-deploy bench --arch fcn8s-vgg16 --width 1 --device cuda",
)


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def blocks(page: Path, lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(page.read_text()) if kind == lang]


def commands(page: Path) -> list[str]:
    """Each command of the page's bash blocks: continuations joined, comments dropped."""
    out = []
    for body in blocks(page, "bash"):
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out.append(shlex.join(words))
    return out


def match(command: str, prefixes) -> str | None:
    return next((p for p in prefixes if command == p or command.startswith(p + " ")), None)


def check_covered(command: str, prefix: str) -> None:
    words = shlex.split(command)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    if prefix.startswith("make"):
        done = subprocess.run(["make", "-n", "-C", str(ROOT), words[1]], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
    elif prefix == "pip install":
        extras = project["project"]["optional-dependencies"]
        for spec in words[2:]:
            for extra in re.findall(r"\[([^\]]+)\]", spec):
                assert set(extra.split(",")) <= set(extras), spec
    elif prefix == ".venv/bin/pytest":
        markers = " ".join(project["tool"]["pytest"]["ini_options"]["markers"])
        assert words[words.index("-m") + 1] + ":" in markers


def user_files(work: Path) -> None:
    """What the pages call a user's own files: photos, a large image, frames, a video, a
    VOC-layout folder, and the clone's examples/."""
    from fcn_deploy.data.voc import write_voc_fixture
    from fcn_deploy.media.video import write_test_video

    rng = np.random.default_rng(0)

    def image(path: Path, h: int, w: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(path)

    image(work / "photos" / "street.jpg", 96, 128)
    image(work / "photos" / "cat.jpg", 75, 100)
    image(work / "big.jpg", 240, 320)
    for i in range(3):
        image(work / "frames" / f"{i:06d}.jpg", 72, 96)
    write_test_video(work / "clip.mp4", 6)
    write_voc_fixture(work / "data" / "VOC2012", n_train=4, n_val=4, num_classes=7)
    (work / "examples").symlink_to(ROOT / "examples")
    model_files(work, rng)


# docs/models.md: the files users bring, in their real layouts and names, at a small width.
MY_FCN = """
import torch.nn.functional as F
from torch import nn


class MyFCN(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(),
                                     nn.Conv2d(16, 4, 3, 2, 1))

    def forward(self, x):
        scores = self.encoder(x)
        return {"out": F.interpolate(scores, size=x.shape[-2:], mode="bilinear")}


def build():
    return MyFCN().eval()
"""


def model_files(work: Path, rng) -> None:
    """pytorch-fcn files (its state dicts and a trainer checkpoint), a torchvision FCN-ResNet50
    file (with its aux head), a module of the user's own, class names and a labelled folder."""
    import torch

    from fcn_deploy.models import build_model, random_init_

    def state(arch: str, width: float) -> dict:
        return random_init_(build_model(arch, 21, width), seed=0).state_dict()

    torch.save(state("fcn8s-vgg16", 0.0625), work / "fcn8s_from_caffe.pth")
    torch.save(state("fcn8s-atonce-vgg16", 0.0625), work / "fcn8s-atonce_from_caffe.pth")
    torch.save({"epoch": 12, "iteration": 96000, "arch": "FCN32s",
                "model_state_dict": state("fcn32s-vgg16", 0.0625),
                "optim_state_dict": {"state": {}, "param_groups": []},
                "best_mean_iu": np.float64(0.63)}, work / "checkpoint.pth.tar")
    resnet = state("fcn-resnet50", 0.125)
    aux = build_model("fcn-resnet50", 21, 0.125).classifier.state_dict()
    resnet.update({f"aux_classifier.{k}": v for k, v in aux.items()})
    torch.save(resnet, work / "fcn_resnet50_coco.pth")
    (work / "my_fcn.py").write_text(MY_FCN)
    (work / "my_classes.txt").write_text("background\nroad\ncar\nperson\n")
    for name, (h, w) in {"a": (60, 80), "b": (48, 64)}.items():
        image = rng.integers(0, 255, (h, w, 3), np.uint8)
        mask = rng.integers(0, 21, (h, w), np.uint8)
        mask[:4] = 255  # void
        (work / "labelled" / "images").mkdir(parents=True, exist_ok=True)
        (work / "labelled" / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(work / "labelled" / "images" / f"{name}.jpg")
        Image.fromarray(mask, mode="L").save(work / "labelled" / "masks" / f"{name}.png")


def execute(command: str) -> None:
    words = shlex.split(command)
    if words[0] == "fcn-deploy":
        result = run(*words[1:])
        assert result.exit_code == 0, f"{command}\n{result.output}"
    else:
        assert words[0] == "python", command
        done = subprocess.run([sys.executable, *words[1:]], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"


def run_page(page: Path, work: Path, monkeypatch, slow: bool) -> None:
    monkeypatch.chdir(work)
    user_files(work)
    gpu = gpu_usable()
    for command in commands(page):
        prefix = match(command, COVERED)
        if prefix:
            check_covered(command, prefix)
        elif match(command, SLOW) and not slow:
            continue
        elif match(command, GPU) and not gpu:
            continue
        else:
            execute(command)
    for source in blocks(page, "python"):
        exec(compile(source, f"{page.name} python block", "exec"), {"__name__": "__doc__"})


def test_every_command_is_run_or_covered():
    for page in PAGES:
        for command in commands(page):
            words = shlex.split(command)
            runnable = words[0] in ("fcn-deploy", "python")
            assert runnable or match(command, COVERED), f"{page_id(page)}: {command}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_page_commands_run(page, tmp_path, monkeypatch):
    run_page(page, tmp_path, monkeypatch, slow=False)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if any(match(c, SLOW) for c in commands(p))],
                         ids=page_id)
def test_page_commands_run_with_the_slow_ones(page, tmp_path, monkeypatch):
    run_page(page, tmp_path, monkeypatch, slow=True)


def test_gpu_commands_are_on_pages():
    documented = {c for p in PAGES for c in commands(p)}
    assert all(any(c.startswith(g) for c in documented) for g in GPU)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.M)}


def test_links_resolve():
    broken = []
    for page in PAGES:
        text = FENCE.sub("", page.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page_id(page)}: {target}")
            elif anchor and anchor not in anchors(file):
                broken.append(f"{page_id(page)}: {target} (no such heading)")
    assert not broken, broken


def test_readme_is_a_front_door():
    assert (ROOT / "README.md").stat().st_size < 10 * 1024
    for page in PAGES[1:]:
        first = next(line for line in page.read_text().splitlines()[1:] if line.strip())
        assert not first.startswith(("#", "```", "|")), f"{page_id(page)} starts without a purpose"


def test_covered_commands_name_a_reason():
    assert all(reason.strip() for reason in COVERED.values())
    assert all((ROOT / test).exists() for test in SLOW.values())
