"""Big photos never crash a process: ``predict`` under an address-space limit (RLIMIT_AS, as
``prlimit --as`` sets) tiles an image that would not fit whole, says so once, and gives the
labels of the same tiling run unlimited; an artifact without the memory estimate fails in one
``error:`` line, no traceback and no output file; --max-memory tiles too."""
import os
import re
import resource
import subprocess
import sys

import numpy as np
import onnx
import pytest
from helpers import run
from PIL import Image

from fcn_deploy.data.synthetic import SyntheticShapes
from fcn_deploy.runtime.factory import open_segmenter
from fcn_deploy.runtime.tiling import tiled_predict

MIB = 2**20
# The model loaded takes ~300 MiB of address space (Python, numpy, onnxruntime); the whole
# 1500 x 2000 image ~1.1 GiB more, tiles far less. Two onnxruntime threads and two malloc
# arenas keep the address space the same on machines with more cores.
LIMIT = 1200 * MIB
ENV = {**os.environ, "MALLOC_ARENA_MAX": "2", "COLUMNS": "250"}

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS, /proc")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A width-1/8 FCN-8s (random init) with its measured activation_bytes_per_pixel, a copy
    without it (an artifact exported before it was measured), and a 1500 x 2000 photo."""
    d = tmp_path_factory.mktemp("memlimit")
    model = d / "m.onnx"
    result = run("export", "--random-init", "--arch", "fcn8s-vgg16", "--width", "0.125",
                 "--num-classes", "7", "-o", model)
    assert result.exit_code == 0, result.output
    proto = onnx.load(str(model))
    kept = [p for p in proto.metadata_props if p.key != "activation_bytes_per_pixel"]
    assert len(kept) == len(proto.metadata_props) - 1
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(d / "old.onnx"))
    image = np.tile(SyntheticShapes("val", 1, 500)[0][0], (3, 4, 1))
    Image.fromarray(image).save(d / "photo.png")
    return model, d / "old.onnx", d / "photo.png", image


def predict_limited(model, image, out, *options):
    """``fcn-deploy predict`` in a child process whose address space is limited to LIMIT."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))

    return subprocess.run([sys.executable, "-m", "fcn_deploy.cli", "predict", str(model),
                           str(image), "--out", str(out), "--no-overlay", "--threads", "2",
                           *options], preexec_fn=limit, env=ENV, capture_output=True,
                          text=True, timeout=120)


def test_a_photo_past_the_limit_is_tiled_with_the_labels_of_an_unlimited_tiled_run(files,
                                                                                tmp_path):
    model, _, photo, image = files
    proc = predict_limited(model, photo, tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    notes = [line for line in proc.stdout.splitlines() if "segmenting in" in line]
    assert len(notes) == 1 and "1500x2000 needs ~" in notes[0], proc.stdout
    assert "the address-space limit" in notes[0] and "Traceback" not in proc.stderr
    h, w = map(int, re.search(r"in (\d+)x(\d+) tiles", notes[0]).groups())
    with open_segmenter(model, threads=2) as seg:
        expected = tiled_predict(seg, image[None], (h, w), 64)[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "photo.png")), expected)


def test_an_allocation_failure_is_one_error_line_and_writes_nothing(files, tmp_path):
    """Without the estimate the image runs whole, and does not fit."""
    _, old, photo, _ = files
    proc = predict_limited(old, photo, tmp_path / "out")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: out of memory"), proc.stderr
    assert "1500x2000" in lines[0] and "--max-memory" in lines[0] and "--tile" in lines[0]
    assert not (tmp_path / "out").exists()  # not even an empty folder


def test_max_memory_tiles_and_says_so_once_per_size(files, tmp_path):
    model, old, _, image = files
    small = image[:600, :800]
    for name in ("a.png", "b.png"):
        Image.fromarray(small).save(tmp_path / name)
    result = run("predict", model, tmp_path / "a.png", tmp_path / "b.png", "--out",
                 tmp_path / "out", "--no-overlay", "--max-memory", "100M")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "segmenting in" in line]
    assert len(notes) == 1 and "600x800 needs ~" in notes[0]
    assert "(--max-memory 100 MiB)" in notes[0]
    result = run("predict", old, tmp_path / "a.png", "--out", tmp_path / "old",
                 "--no-overlay", "--max-memory", "100M")
    assert result.exit_code == 0 and "records no activation_bytes_per_pixel" in result.output
    bad = run("predict", model, tmp_path / "a.png", "--out", tmp_path / "x", "--max-memory", "3Q")
    assert bad.exit_code == 2 and "malformed memory size" in bad.output
    both = run("predict", model, tmp_path / "a.png", "--out", tmp_path / "x", "--max-memory", "1G",
               "--tile", "256")
    assert both.exit_code == 2 and "give one" in both.output and not (tmp_path / "x").exists()


def test_eval_tiles_past_max_memory_and_scores_the_tiled_labels(files):
    model = files[0]
    result = run("eval", model, "--image-size", "256", "--samples", "2", "--batch-size", "2",
                 "--max-memory", "20M")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and re.fullmatch(r"note: 256x256 needs ~[\d.]+ MiB \(--max-memory "
                                            r"20.0 MiB\): segmenting in \d+x\d+ tiles",
                                            notes[0]), result.output
    assert "mean IU" in result.output
