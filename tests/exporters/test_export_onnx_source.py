"""``fcn-deploy export`` of an FP32 ONNX file: converted to FP16/INT8 from the metadata in the
file (as Polygraphy's convert does), checked like any export; anything else refused in one line."""
import numpy as np
import pytest
from helpers import assert_one_line_error, export_tiny, run

from fcn_deploy.contract.metadata import onnx_metadata
from fcn_deploy.runtime.ort_segmenter import OrtSegmenter

SMALL = ["--image-size", "32", "--calib-samples", "2", "--eval-samples", "4"]


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("src") / "m.onnx", "--output", "labels+score")


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_an_fp32_onnx_file_converts(fp32, tmp_path, precision):
    out = tmp_path / f"m_{precision}.onnx"
    result = run("export", fp32, "-o", out, "--precision", precision, *SMALL)
    assert result.exit_code == 0, result.output
    assert f"converted {fp32}" in result.output and f"wrote {out} ({precision}" in result.output
    assert f"{precision} vs fp32 on 4 images: argmax agreement" in result.output
    src, meta = onnx_metadata(fp32), onnx_metadata(out)
    assert meta.precision == precision and (meta.output, meta.input) == (src.output, src.input)
    assert (meta.arch, meta.class_names, meta.mean) == (src.arch, src.class_names, src.mean)
    image = np.random.default_rng(0).integers(0, 255, (1, 40, 56, 3), np.uint8)
    with OrtSegmenter(fp32) as a, OrtSegmenter(out) as b:
        assert (a.predict(image) == b.predict(image)).mean() > 0.9


def test_what_an_onnx_source_cannot_do_is_refused(fp32, tmp_path):
    out = tmp_path / "x.onnx"
    for options, needle in (([], "is an FP32 ONNX file already; give --precision fp16 or int8"),
                            (["--precision", "int8", "--arch", "fcn8s-vgg16"],
                             "--arch apply to checkpoints only"),
                            (["--precision", "fp16", "--output", "logits"],
                             "has --output labels+score, fixed at its export"),
                            (["--precision", "fp16", "--input", "rgb8"],
                             "has --input float, fixed at its export")):
        assert_one_line_error(run("export", fp32, "-o", out, *options), needle, code=2)
    int8 = tmp_path / "int8.onnx"
    assert run("export", fp32, "-o", int8, "--precision", "int8", *SMALL).exit_code == 0
    assert_one_line_error(run("export", int8, "-o", out, "--precision", "fp16"),
                          "is int8 already", "give the FP32 one", code=2)
    assert_one_line_error(run("export", fp32, "-o", fp32, "--precision", "fp16"),
                          "is also an input", code=1)
    assert not out.exists()


def test_an_engine_or_a_foreign_onnx_file_says_what_export_takes(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"ftrt" + bytes(64))  # a TensorRT plan's tag: told by content
    assert_one_line_error(run("export", engine, "-o", tmp_path / "x.onnx"),
                          "is a TensorRT engine; export takes a checkpoint", code=2)
    foreign = tmp_path / "foreign.onnx"
    import torch

    torch.onnx.export(torch.nn.Conv2d(3, 2, 1), (torch.zeros(1, 3, 4, 4),), str(foreign),
                      dynamo=False)
    assert_one_line_error(run("export", foreign, "-o", tmp_path / "x.onnx", "--precision",
                              "fp16"), "has no fcn-deploy metadata")
    assert not (tmp_path / "x.onnx").exists()
