import importlib.util
import json

import onnx
import pytest
import torch
from helpers import tiny_meta

from fcn_deploy.contract.kinds import sidecar_path
from fcn_deploy.contract.sidecar import read_sidecar
from fcn_deploy.data.synthetic import SyntheticShapes
from fcn_deploy.errors import ArtifactError, ExportError, OptionError
from fcn_deploy.exporters.onnx_export import export_onnx, metadata_of, write_metadata
from fcn_deploy.exporters.precision import convert_fp16, quantize_int8
from fcn_deploy.exporters.tensorrt_build import bucket_profiles, build_engine, check_profiles
from fcn_deploy.models import build_model, random_init_
from fcn_deploy.runtime.tensorrt import Profile, parse_profile
from fcn_deploy.shapes import parse_shape

needs_trt = pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx") is None,
                               reason="tensorrt_rtx is not installed")
PROFILE = Profile((1, 3, 64, 64), (1, 3, 256, 256), (2, 3, 512, 512))


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    """FP32, FP16 and INT8 (S8S8 and U8S8) ONNX of a width-0.125 FCN-8s."""
    d = tmp_path_factory.mktemp("trt")
    torch.manual_seed(0)
    model = random_init_(build_model("fcn8s-vgg16", 7, width=0.125)).eval()
    meta = tiny_meta(width=0.125)
    export_onnx(model, meta, d / "fp32.onnx", verify_shapes=((1, 3, 40, 40),))
    export_onnx(model, meta, d / "labels+score.onnx", "labels+score",
                verify_shapes=((1, 3, 40, 40),))
    convert_fp16(d / "fp32.onnx", d / "fp16.onnx")
    calib = [SyntheticShapes("train", 2, 48)[i][0] for i in range(2)]
    quantize_int8(d / "fp32.onnx", d / "int8.onnx", calib, scheme="s8s8")
    quantize_int8(d / "fp32.onnx", d / "u8s8.onnx", calib, scheme="u8s8")
    return d


@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_builds_real_engines_with_a_dynamic_profile(onnx_files, tmp_path, precision):
    out = tmp_path / f"{precision}.engine"
    side = build_engine(onnx_files / f"{precision}.onnx", out, [PROFILE], backend="tensorrt-rtx",
                        compute_capabilities=["SM86", "89"], log=lambda s: None)
    assert out.stat().st_size == side.engine.engine_bytes > 100_000
    stored = json.loads(sidecar_path(out).read_text())
    assert stored == read_sidecar(out).to_dict()
    assert (stored["backend"] == "tensorrt_rtx"
            and stored["compute_capabilities"] == ["SM86", "SM89"])
    assert stored["precision"] == precision and stored["strongly_typed"] is True
    assert stored["profiles"] == [{"min": [1, 3, 64, 64], "opt": [1, 3, 256, 256],
                                   "max": [2, 3, 512, 512]}]
    assert stored["inputs"] == [{"name": "input", "dtype": "float", "shape": [-1, 3, -1, -1]}]
    assert stored["outputs"][0]["name"] == "logits" and stored["class_names"][1] == "disk"
    assert len(stored["onnx_sha256"]) == 64 and stored["build_seconds"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name, out.name + ".json"]
    convs = stored["conv_precision"]  # INT8 graphs: upsampling in FP16 by default
    assert sum(map(len, convs.values())) == 21
    assert len(convs["int8"]) == (18 if precision == "int8" else 0)
    assert len(convs["fp16"]) == {"fp32": 0, "fp16": 21, "int8": 3}[precision]


@needs_trt
def test_labels_and_score_engine_declares_both_outputs(onnx_files, tmp_path):
    side = build_engine(onnx_files / "labels+score.onnx", tmp_path / "ls.engine", [PROFILE],
                        backend="tensorrt-rtx", compute_capabilities=["SM86"], log=lambda s: None)
    assert side.output == "labels+score"
    assert side.engine.outputs == [{"name": "labels", "dtype": "uint8", "shape": [-1, -1, -1]},
                               {"name": "score", "dtype": "float", "shape": [-1, -1, -1]}]


@needs_trt
def test_several_profiles_and_no_timing_cache_for_rtx(onnx_files, tmp_path):
    cache, logged = tmp_path / "timing.cache", []
    second = Profile((1, 3, 512, 512), (1, 3, 800, 800), (1, 3, 1199, 1199))
    side = build_engine(onnx_files / "fp16.onnx", tmp_path / "m.engine", [PROFILE, second],
                        backend="tensorrt-rtx", timing_cache=cache, log=logged.append)
    assert len(side.engine.profiles) == 2 and not cache.exists()
    assert "--timing-cache ignored" in logged[0]
    assert side.engine.compute_capabilities == ["SM75", "SM80", "SM86", "SM89", "SM120"]


@needs_trt
def test_parser_errors_name_the_node(onnx_files, tmp_path):
    # The CPU-tuned U8S8 graph has asymmetric activations and int32 biases: TensorRT refuses
    # both. Its metadata says so, so build refuses it in one line before the parser runs.
    with pytest.raises(ExportError, match="is INT8 u8s8 .* --int8-scheme s8s8"):
        build_engine(onnx_files / "u8s8.onnx", tmp_path / "u.engine", [PROFILE],
                     backend="tensorrt-rtx", log=lambda s: None)
    # Without that metadata key (another tool's file), the parser's own error names the node.
    graph = onnx.load(str(onnx_files / "u8s8.onnx"))
    write_metadata(graph, metadata_of(graph, "u8s8.onnx").replace(int8_scheme=None))
    onnx.save(graph, str(tmp_path / "unmarked.onnx"))
    with pytest.raises(ExportError, match=r"at node \S+ \((Quantize|Dequantize)Linear\): "
                                          r".*(zero point|Int32)"):
        build_engine(tmp_path / "unmarked.onnx", tmp_path / "u.engine", [PROFILE],
                     backend="tensorrt-rtx", log=lambda s: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unmarked.onnx"]


@needs_trt
def test_engine_that_does_not_match_its_sidecar_is_refused(onnx_files, tmp_path):
    out = tmp_path / "m.engine"
    build_engine(onnx_files / "fp32.onnx", out, [PROFILE], backend="tensorrt-rtx",
                 compute_capabilities=["SM86"], log=lambda s: None)
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its sidecar"):
        read_sidecar(out)
    sidecar_path(out).unlink()
    with pytest.raises(ArtifactError, match="no sidecar"):
        read_sidecar(out)


@pytest.mark.parametrize("text", ["1x3x64", "1x3x64x64x1", "ax3x64x64", "1*3*64*64", ""])
def test_malformed_shapes(text):
    with pytest.raises(OptionError, match="malformed shape"):
        parse_shape(text)


@pytest.mark.parametrize("shapes,match", [
    (("1x3x64x64", "1x3x32x32", "1x3x128x128"), "min <= opt <= max"),
    (("1x4x64x64", "1x4x64x64", "1x4x64x64"), "3 channels"),
    (("0x3x64x64", "1x3x64x64", "1x3x64x64"), "N, H and W must be >= 1"),
    (("1x3x0x64", "1x3x64x64", "1x3x64x64"), "N, H and W must be >= 1"),
])
def test_impossible_profiles_are_refused_before_building(shapes, match):
    with pytest.raises(OptionError, match=match):
        Profile(*(parse_shape(s) for s in shapes))


@pytest.mark.parametrize("text", ["", "1x3x64x64:1x3x64x64",
                                  "1x3x64x64:1x3x64x64:1x3x64x64:1x3x64x64"])
def test_malformed_profiles(text):
    with pytest.raises(OptionError, match="malformed profile"):
        parse_profile(text)


def test_profiles_may_touch_or_nest_but_not_overlap_or_repeat():
    small = parse_profile("1x3x256x256:1x3x512x512:1x3x640x640")
    large = parse_profile("1x3x640x640:1x3x1024x1024:1x3x1199x1199")
    check_profiles([small, large])  # they share the 640x640 border
    check_profiles([parse_profile("1x3x300x300:1x3x400x400:1x3x500x500"), large, small])  # nested
    check_profiles([small, parse_profile("2x3x256x256:4x3x512x512:8x3x640x640")])  # batch 1 vs 2..8
    for profiles, needle in (([], "at least one"), ([small, small], "repeats"),
                             ([small, parse_profile("1x3x512x512:1x3x600x600:1x3x800x800")],
                              "overlap"),
                             # batch 1 sits on the other's edge, and 300x300 fits both
                             ([parse_profile("1x3x64x64:1x3x128x128:1x3x512x512"),
                               parse_profile("1x3x256x256:2x3x512x512:4x3x1024x1024")], "overlap")):
        with pytest.raises(OptionError, match=needle):
            check_profiles(profiles)


def test_buckets_become_nested_profiles_smallest_first():
    profiles = bucket_profiles([(768, 1024), (512, 512)], max_batch=2)
    assert [str(p) for p in profiles] == ["1x3x1x1:1x3x512x512:2x3x512x512",
                                          "1x3x1x1:1x3x768x1024:2x3x768x1024"]
    check_profiles(profiles)
    # Past 1199 px too: the pad-100 geometry has no upper limit (tests/models/test_fcn.py).
    assert str(bucket_profiles([(1024, 2048)])[0]) == "1x3x1x1:1x3x1024x2048:1x3x1024x2048"


@needs_trt
def test_unknown_backend_and_compute_capability(onnx_files, tmp_path):
    with pytest.raises(OptionError, match="unknown backend"):
        build_engine(onnx_files / "fp32.onnx", tmp_path / "m.engine", [PROFILE], backend="tvm")
    with pytest.raises(OptionError, match="unknown compute capability SM90"):
        build_engine(onnx_files / "fp32.onnx", tmp_path / "m.engine", [PROFILE],
                     backend="tensorrt-rtx", compute_capabilities=["SM90"])
    assert list(tmp_path.iterdir()) == []
