"""`fcn-deploy export` checks: arch contradictions, constant outputs, random init, class-count
mismatches with the evaluation set, declared opsets, and what each printed line checked."""
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import assert_one_line_error, run, tiny_meta

from fcn_deploy.contract.metadata import onnx_metadata
from fcn_deploy.models import build_model, random_init_
from fcn_deploy.models.checkpoint import save_checkpoint


def read_metadata(path):
    """The flat metadata as stored in the file."""
    return onnx_metadata(path).to_dict()

WIDTH = 0.0625
RANDOM = ["--random-init", "--arch", "fcn8s-vgg16", "--width", WIDTH]
INT8 = ["--precision", "int8", "--image-size", "32", "--calib-samples", "2", "--eval-samples", "4"]




def _checkpoint(path, init=None):
    """A 7-class FCN-8s checkpoint with metadata; ``init`` edits the training-init model."""
    model = build_model("fcn8s-vgg16", 7, WIDTH)
    if init is not None:
        init(model)
    meta = tiny_meta(width=WIDTH)
    return save_checkpoint(path, model, meta)


def _logits(path, size=64):
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _lines(result):
    assert result.exit_code == 0, result.output
    return [line for line in result.output.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "m_int8.onnx"
    return out, run("export", *RANDOM, "--num-classes", 7, "-o", out, *INT8)


def test_arch_that_contradicts_the_checkpoint_is_refused(tmp_path):
    ckpt = _checkpoint(tmp_path / "fcn8s.safetensors", lambda m: random_init_(m, 1))
    out = tmp_path / "m.onnx"
    assert_one_line_error(run("export", ckpt, "--arch", "fcn32s-vgg16", "-o", out),
                          "fcn8s-vgg16", "fcn32s-vgg16")
    assert not out.exists()
    _lines(run("export", ckpt, "--arch", "fcn8s-vgg16", "-o", out))  # the same arch is fine
    assert read_metadata(out)["arch"] == "fcn8s-vgg16"


def test_random_init_gives_non_trivial_logits_that_verify(tmp_path):
    out = tmp_path / "r.onnx"
    first = _lines(run("export", *RANDOM, "--num-classes", 7, "-o", out))[0]
    error = float(re.search(r"max abs error (\S+) on", first).group(1))
    assert "argmax agreement 100.0000%" in first and 0 < error < 1e-3
    logits = _logits(out)
    assert np.ptp(logits) > 1e-2 and len(np.unique(logits.argmax(1))) > 1


def test_bench_arch_model_is_random_too():
    from fcn_deploy.exporters.export import load_source

    model, _, _ = load_source(None, "fcn8s-vgg16", WIDTH, 7)
    x = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model.eval()(x)
    assert len(torch.unique(logits.argmax(1))) > 1


@pytest.mark.parametrize("output", ["logits", "labels"])
def test_constant_output_is_refused_in_every_output_mode(tmp_path, output):
    ckpt = _checkpoint(tmp_path / "zero.safetensors")  # training init: zero score layers
    out = tmp_path / "z.onnx"
    assert_one_line_error(run("export", ckpt, "-o", out, "--output", output),
                          "output is constant", "verification would prove nothing")
    assert not out.exists()


def test_one_predicted_class_with_varying_logits_still_exports(tmp_path):
    def background_everywhere(model):
        random_init_(model, 2)
        model.score_fr.bias.data[0] = 1e4  # argmax is class 0 at every pixel

    ckpt = _checkpoint(tmp_path / "bg.safetensors", background_everywhere)
    _lines(run("export", ckpt, "-o", tmp_path / "bg.onnx", "--output", "labels"))


def test_int8_of_a_21_class_model_compares_labels_on_7_class_images(tmp_path):
    out = tmp_path / "voc_int8.onnx"
    lines = _lines(run("export", *RANDOM, "-o", out, *INT8))
    assert ("mean IU skipped: the model predicts 21 classes, the data set has 7; label "
            "agreement with FP32 on its images only") in lines
    assert any(line.startswith("int8 vs fp32 on ") and "no labels, so no mean IU" in line
               for line in lines)
    meta = read_metadata(out)
    assert meta["precision"] == "int8" and meta["num_classes"] == 21


def test_int8_declares_only_the_opset_domains_its_nodes_use(int8_export):
    out, result = int8_export
    assert result.exit_code == 0, result.output
    model = onnx.load(str(out))
    used = {n.domain for n in model.graph.node}
    assert {o.domain for o in model.opset_import} <= used | {""}


def test_int8_lines_name_what_each_check_compared(int8_export):
    out, result = int8_export
    lines = _lines(result)
    assert lines[0].startswith("FP32 graph vs PyTorch: argmax agreement 100.0000%, max abs error")
    assert lines[1].startswith("input convention imagenet: RGB scaled to [0, 1], ImageNet")
    assert re.fullmatch(rf"wrote {re.escape(str(out))} \(int8, \d+\.\d MB\) in \d+\.\d s", lines[2])
    assert lines[3].startswith("INT8 conv layers: ")
    assert lines[4].startswith("int8 vs fp32 on 4 images: argmax agreement ")
    assert len(lines) == 5


def test_export_options_refuse_bad_combinations_before_any_work(tmp_path):
    from fcn_deploy.errors import FcnDeployError
    from fcn_deploy.exporters.export import ExportOptions

    out = tmp_path / "m.onnx"
    ckpt = _checkpoint(tmp_path / "c.safetensors", lambda m: random_init_(m, 1))
    for options, needle in (({}, "give a CHECKPOINT, --model FILE.py:FACTORY or --random-init"),
                            ({"checkpoint": ckpt, "random_init": True}, "not both"),
                            ({"random_init": True, "model": "m.py:f"}, "give one source"),
                            ({"checkpoint": ckpt, "output_key": "out"}, "applies to --model"),
                            ({"model": "m.py:f", "arch": "fcn8s-vgg16",
                              "input_convention": "imagenet"}, "drop --arch"),
                            ({"checkpoint": ckpt, "precision": "int4"}, "unknown precision"),
                            ({"checkpoint": ckpt, "precision": "fp16", "keep_fp16": "/m/c/Conv"},
                             "--keep-fp16 applies to INT8 exports"),
                            ({"checkpoint": ckpt, "upsample": "int4"}, "upsample precision"),
                            ({"checkpoint": ckpt, "reduce_range": True},
                             "--reduce-range applies to --precision int8 only"),
                            ({"checkpoint": ckpt, "engine": ckpt}, "c.safetensors")):
        with pytest.raises(FcnDeployError, match=re.escape(needle)):
            ExportOptions.from_cli(out=out, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]


def test_export_options_parse_comma_lists_and_the_fallback_file(tmp_path):
    from fcn_deploy.exporters.export import ExportOptions

    fallback = tmp_path / "fallback.txt"
    fallback.write_text("# from quant-report\n/model/conv1_1/Conv\n\n")
    opts = ExportOptions.from_cli(random_init=True, arch="fcn8s-vgg16", out=tmp_path / "m",
                                  precision="int8", keep_fp32="/a/Conv,,/b/Conv",
                                  keep_fp16="/c/Conv,", fallback=fallback)
    assert opts.arch == "fcn8s-vgg16" and opts.keep_fp16 == ["/c/Conv"]
    assert opts.keep_fp32 == ["/a/Conv", "/b/Conv", "/model/conv1_1/Conv"]
