"""Every command: a bad option value is a usage error, one ``error:`` line and exit 2 (as
click's own checks give), found before any work; nothing is written."""
import pytest
from helpers import assert_one_line_error, export_tiny, run
from PIL import Image


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An ONNX file and an image, for the commands that need real inputs to reach the option."""
    d = tmp_path_factory.mktemp("usage")
    Image.new("RGB", (40, 30)).save(d / "in.png")
    return {"onnx": export_tiny(d / "m.onnx"), "image": d / "in.png"}


# (command and arguments with {onnx} / {image} / {out} filled in, what the line names)
CASES = [
    ("train --out {out}/x.safetensors --optimizer rmsprop", "unknown optimizer 'rmsprop'"),
    ("train --out {out}/x.safetensors --epochs 0", "--epochs"),
    ("pretrain --out {out}/x.safetensors --samples 0", "--samples"),
    ("eval {onnx} --backend foo", "'foo' is not one of"),
    ("eval {onnx} --device gpu", "'gpu' is not one of"),
    ("predict {onnx} {image} -o {out} --tile abc", "malformed tile"),
    ("predict {onnx} {image} -o {out} --backend foo", "'foo' is not one of"),
    ("predict {onnx} {image} -o {out} --device gpu", "'gpu' is not one of"),
    ("predict {onnx} {image} -o {out} --backend torch", "the torch backend does not run ONNX"),
    ("predict {onnx} {image} -o {out} --backend openvino --device cuda", "runs on the CPU"),
    ("predict {onnx} {image} -o {out} --pad", "--pad does not apply to the onnxruntime backend"),
    ("export --random-init --arch fcn8s-vgg16 -o {out}/x.onnx --output label",
     "'label' is not one of"),
    ("export --random-init --arch fcn8s-vgg16 -o {out}/x.onnx --precision int4",
     "'int4' is not one of"),
    ("export --random-init --arch fcn8s-vgg16 -o {out}/x.onnx --input bgr8",
     "'bgr8' is not one of"),
    ("export --random-init --arch fcn8s-vgg16 -o {out}/x.onnx --precision int8 "
     "--calib-method kl", "'kl' is not one of"),
    ("export --random-init --arch fcn8s-vgg16 -o {out}/x.onnx --precision int8 "
     "--int8-scheme u4", "'u4' is not one of"),
    ("export --random-init --arch fcn9s-vgg16 -o {out}/x.onnx", "fcn9s-vgg16"),
    ("export-triton {onnx} --repo {out} --kind tpu", "'tpu' is not one of"),
    ("export-triton {onnx} --repo {out} --backend tensorflow", "'tensorflow' is not one of"),
    ("build {onnx} -o {out}/x.engine --min 1x3x64 --opt 1x3x64x64 --max 1x3x64x64",
     "malformed shape"),
    ("build {onnx} -o {out}/x.engine --backend tvm", "'tvm' is not one of"),
    ("build {onnx} -o {out}/x.engine --buckets 64x", "malformed size '64x'"),
    ("bench {onnx} -o {out} --sizes 64x", "malformed size '64x'"),
    ("bench -o {out} --amortization --amort-backends jax", "unknown amortization backend"),
    ("bench {onnx} -o {out} --backends foo", "unknown backend 'foo'"),
    ("bench {onnx} -o {out} --torch-modes fp8", "unknown torch mode 'fp8'"),
    ("bench {onnx} -o {out} --tile abc", "malformed tile"),
    ("serve {onnx} --backend foo", "'foo' is not one of"),
    ("serve {onnx} --buckets abc", "--buckets"),
    ("serve {onnx} --name 'a b'", "--name"),
    ("load-test localhost:1 -m fcn -o {out} --sizes abc", "malformed size 'abc'"),
    ("load-test localhost:1 -m fcn -o {out} --concurrency x", "--concurrency"),
    ("segment-dataset {onnx} {image} -o {out} --backend foo", "'foo' is not one of"),
    ("segment-dataset {onnx} {image} -o {out} --tile abc", "malformed tile"),
    ("quant-report {onnx} -o {out} --calib-method kl", "'kl' is not one of"),
    ("quant-report {onnx} -o {out} --int8-scheme u4", "'u4' is not one of"),
    ("reproduce -o {out} --epochs abc", "--epochs"),
    ("info {onnx} --frobnicate", "--frobnicate"),
]


@pytest.mark.parametrize("line, needle", CASES, ids=[c[0].split()[0] + "-" + str(i)
                                                     for i, c in enumerate(CASES)])
def test_a_bad_option_value_exits_2(files, tmp_path, line, needle):
    import shlex

    out = tmp_path / "out"
    args = [a.format(out=out, **files) for a in shlex.split(line)]
    assert_one_line_error(run(*args), needle, code=2)
    assert not out.exists()
