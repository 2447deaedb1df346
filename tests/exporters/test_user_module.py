"""A user's own module exports through the same gate as fcn-deploy's nets: FILE.py:factory and
package.module:factory, dict outputs by --output-key, the input convention required, dynamic
N/H/W verified at odd sizes, and a module that fixes a size refused in one line."""
import textwrap

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run
from PIL import Image

from fcn_deploy.contract.metadata import onnx_metadata
from fcn_deploy.contract.preprocess import normalize
from fcn_deploy.runtime import open_segmenter

MODULE = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from torch import nn


    class Net(nn.Module):
        def __init__(self, fixed=False):
            super().__init__()
            torch.manual_seed(0)
            self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.c2 = nn.Conv2d(8, 5, 3, stride=2, padding=1)
            self.fixed = fixed

        def forward(self, x):
            h = self.c2(F.relu(self.c1(x)))
            size = (int(x.shape[2]), int(x.shape[3])) if self.fixed else x.shape[-2:]
            return {"out": F.interpolate(h, size=size, mode="bilinear", align_corners=False),
                    "aux": h}


    def build():
        return Net()


    def fixed():
        return Net(fixed=True)


    def broken():
        raise ValueError("no weights here")
    ''')


@pytest.fixture()
def module_file(tmp_path):
    path = tmp_path / "my_fcn.py"
    path.write_text(MODULE)
    return path


def test_a_module_file_exports_and_predicts_like_its_own_forward(module_file, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("sky\nroad\ncar\ntree\nperson\n")
    out = tmp_path / "m.onnx"
    result = run("export", "--model", f"{module_file}:build", "--output-key", "out",
                 "--input-convention", "imagenet", "--classes", names, "-o", out)
    assert result.exit_code == 0, result.output
    assert "[2, 3, 333, 500]" in result.output  # the dynamic-size check ran at odd sizes
    meta = onnx_metadata(out)
    assert meta.arch == "custom:build" and meta.num_classes == 5 and meta.stride is None
    assert meta.class_names == ["sky", "road", "car", "tree", "person"]
    import importlib.util
    spec = importlib.util.spec_from_file_location("peer_fcn", module_file)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    net = peer.build().eval()
    for h, w in ((97, 131), (160, 120)):
        image = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / f"{h}x{w}.png")
        assert run("predict", out, tmp_path / f"{h}x{w}.png", "-o", tmp_path / "labels",
                   "--no-overlay").exit_code == 0
        with torch.no_grad():
            want = net(torch.from_numpy(normalize(image[None])))["out"].argmax(1)[0].numpy()
        got = np.asarray(Image.open(tmp_path / "labels" / f"{h}x{w}.png"))
        assert (got == want).mean() >= 0.999


def test_a_package_module_factory(module_file, tmp_path, monkeypatch):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run("export", "--model", "mypkg.nets:build", "--output-key", "out",
                 "--input-convention", "caffe", "-o", tmp_path / "p.onnx")
    assert result.exit_code == 0, result.output
    assert onnx_metadata(tmp_path / "p.onnx").convention == "caffe"


@pytest.mark.parametrize("factory, options, needles, code", [
    ("fixed", ["--output-key", "out"], ["returns 1x5x64x64 for a 1x3x97x131 input",
                                         "fixes a size"], 1),
    ("build", [], ["returns a dict (out, aux)", "--output-key"], 1),
    ("build", ["--output-key", "logits"], ["no 'logits' in it"], 1),
    ("broken", [], ["--model", "ValueError: no weights here"], 1),
    ("nope", [], ["has no callable nope"], 2),
    ("build", ["--output-key", "out", "--num-classes", "4"], ["returns 5 score channels"], 2),
    ("build", ["--output-key", "out", "--classes", "voc"], ["21 classes", "5"], 2),
])
def test_what_cannot_export_is_one_line(module_file, tmp_path, factory, options, needles, code):
    out = tmp_path / "m.onnx"
    result = run("export", "--model", f"{module_file}:{factory}", "--input-convention",
                 "imagenet", *options, "-o", out)
    assert_one_line_error(result, *needles, code=code)
    assert not out.exists()


def test_a_module_needs_its_input_convention(module_file, tmp_path):
    result = run("export", "--model", f"{module_file}:build", "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "--input-convention imagenet", code=2)


def _program(module_file, tmp_path, batch: int, dynamic: bool):
    """``build()``'s module saved as a torch.export program."""
    import importlib.util

    from torch.export import Dim

    spec = importlib.util.spec_from_file_location("pt2_fcn", module_file)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    net = peer.build().eval()
    shapes = {"x": {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}} if dynamic else None
    program = torch.export.export(net, (torch.zeros(batch, 3, 64, 64),), dynamic_shapes=shapes)
    path = tmp_path / ("net.pt2" if dynamic else "static.pt2")
    torch.export.save(program, path)
    return net, path


def test_a_torch_export_program_exports_with_dynamic_sizes(module_file, tmp_path):
    pytest.importorskip("onnxscript")  # the dynamo exporter: the pt2 extra
    net, path = _program(module_file, tmp_path, 2, dynamic=True)
    out = tmp_path / "pt2.onnx"
    result = run("export", "--model", path, "--output-key", "out", "--input-convention",
                 "imagenet", "--input", "rgb8", "--output", "labels", "-o", out)
    assert result.exit_code == 0, result.output
    meta = onnx_metadata(out)
    assert meta.arch == "custom:net" and meta.input.format == "rgb8"
    images = np.random.default_rng(5).integers(0, 256, (1, 97, 131, 3), dtype=np.uint8)
    with torch.no_grad():
        want = net(torch.from_numpy(normalize(images)))["out"].argmax(1).numpy()
    with open_segmenter(out) as seg:
        assert (seg.predict(images) == want).mean() >= 0.999


def test_a_fixed_size_program_is_refused_in_one_line(module_file, tmp_path):
    _, path = _program(module_file, tmp_path, 1, dynamic=False)
    result = run("export", "--model", path, "--output-key", "out", "--input-convention",
                 "imagenet", "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "exported for a fixed 1x3x64x64 input", "Dim.AUTO")
