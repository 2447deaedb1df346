"""``export --input rgb8``: uint8 N x H x W x 3 frames in, the cast, scaling, normalization
and transpose inside the graph. Every consumer (runtimes, tiling, static copies, FP16/INT8
conversion, the TensorRT-RTX builder, Triton, bench) reads the convention from the metadata,
and the labels match the float-input path."""
import importlib.util
import json

import numpy as np
import onnx
import pytest
import torch
from google.protobuf import text_format
from helpers import assert_one_line_error, run, tiny_meta

from fcn_deploy.benchmarks.latency import latency_row
from fcn_deploy.contract.metadata import onnx_metadata
from fcn_deploy.contract.onnx_file import read_io
from fcn_deploy.contract.preprocess import normalize
from fcn_deploy.data.synthetic import SyntheticShapes
from fcn_deploy.errors import FcnDeployError
from fcn_deploy.exporters.export import export
from fcn_deploy.exporters.onnx_export import export_onnx, preprocess_nodes, static_copy
from fcn_deploy.exporters.tensorrt_build import build_engine
from fcn_deploy.models import build_model, random_init_
from fcn_deploy.runtime.ort_segmenter import OrtSegmenter
from fcn_deploy.runtime.tensorrt import Profile
from fcn_deploy.runtime.tiling import tiled_predict
from fcn_deploy.runtime.torch_segmenter import TorchSegmenter

# The parity shapes (N, H, W): odd sizes, a batch of 2, a 720p frame.
PARITY = ((1, 97, 131), (2, 333, 500), (1, 720, 1280))
FLOAT = onnx.TensorProto.FLOAT


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = random_init_(build_model("fcn8s-vgg16", 7, width=0.0625)).eval()
    return net, tiny_meta(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@pytest.fixture(scope="module")
def graphs(model, tmp_path_factory):
    """The float and rgb8 FP32 exports of one net, and FP16/INT8 rgb8 conversions."""
    net, meta = model
    d = tmp_path_factory.mktemp("rgb8")
    export_onnx(net, meta, d / "float.onnx", verify_shapes=((1, 3, 40, 40),))
    report = export_onnx(net, meta, d / "rgb8.onnx", input_format="rgb8")  # default shapes
    calib = [SyntheticShapes("train", 2, 48)[i][0] for i in range(2)]
    for precision in ("fp16", "int8"):
        export(net, meta, None, d / f"rgb8_{precision}.onnx", precision=precision,
               calibration=calib, input_format="rgb8")
    return d, report


def frames(n, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_rgb8_graph_takes_uint8_frames_and_says_so(graphs):
    d, report = graphs
    meta = onnx_metadata(d / "rgb8.onnx")
    assert (meta.input.format, meta.input.layout, meta.input.dtype) == ("rgb8", "NHWC", "uint8")
    (inp,), _ = read_io(d / "rgb8.onnx")
    assert inp.dtype == "uint8" and inp.dims[3] == 3 and not isinstance(inp.dims[1], int)
    # the exporter verified it against PyTorch's float path at the 720p frame too
    assert report.shapes[-1] == [1, 3, 720, 1280] and report.worst_agreement >= 0.9999
    assert onnx_metadata(d / "float.onnx").input.format == "float"


def test_labels_match_the_float_input_path(graphs):
    d, _ = graphs
    with OrtSegmenter(d / "float.onnx") as f, OrtSegmenter(d / "rgb8.onnx") as r:
        for n, h, w in PARITY:
            x = frames(n, h, w, seed=h)
            a = f.infer(normalize(x, f.meta.mean, f.meta.std))
            b = r.infer(x)
            assert (a.argmax(1) == b.argmax(1)).mean() >= 0.9999
            np.testing.assert_allclose(a, b, atol=1e-4)
            assert np.array_equal(f.predict(x), r.predict(x))


def test_the_wrong_convention_is_one_clear_error(graphs):
    d, _ = graphs
    x = frames(1, 40, 40)
    with OrtSegmenter(d / "rgb8.onnx") as r, OrtSegmenter(d / "float.onnx") as f:
        with pytest.raises(FcnDeployError, match="takes uint8 N x H x W x 3 RGB frames"):
            r.infer(normalize(x))
        with pytest.raises(FcnDeployError, match="takes normalized float32"):
            f.infer(x)
        assert r.preprocess(x) is x  # no host work: the frames go in as they are
        with pytest.raises(FcnDeployError, match="uint8 N x H x W x 3"):
            r.predict(x[..., :1])  # a grey frame: refused, not guessed


def test_tiling_slices_frames_in_their_layout(graphs):
    d, _ = graphs
    x = frames(1, 150, 230, seed=3)
    with OrtSegmenter(d / "float.onnx") as f, OrtSegmenter(d / "rgb8.onnx") as r:
        assert np.array_equal(tiled_predict(f, x, (96, 128), 32),
                              tiled_predict(r, x, (96, 128), 32))


def test_static_copy_fixes_the_nhwc_input(graphs, tmp_path):
    d, _ = graphs
    static_copy(d / "rgb8.onnx", tmp_path / "s.onnx", (1, 3, 64, 80))
    (inp,), _ = read_io(tmp_path / "s.onnx")
    assert list(inp.dims) == [1, 64, 80, 3]
    assert onnx_metadata(tmp_path / "s.onnx").static_shape == [1, 3, 64, 80]
    x = frames(1, 64, 80)
    with OrtSegmenter(tmp_path / "s.onnx") as s, OrtSegmenter(d / "rgb8.onnx") as r:
        assert np.array_equal(s.predict(x), r.predict(x))
        with pytest.raises(FcnDeployError, match="takes only 1x64x80x3"):
            s.predict(frames(1, 64, 64))


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_fp16_and_int8_keep_the_preprocessing_in_fp32(graphs, precision):
    d, _ = graphs
    path = d / f"rgb8_{precision}.onnx"
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in graph.graph.value_info}
    nodes = {n.name: n for n in graph.graph.node if n.name in preprocess_nodes(graph)}
    for name in ("/preprocess/Cast", "/preprocess/Sub", "/preprocess/Div_1"):
        assert types[nodes[name].output[0]] == FLOAT, name
    meta = onnx_metadata(path)
    assert meta.precision == precision and meta.input.format == "rgb8"
    x = frames(1, 96, 128, seed=5)
    with OrtSegmenter(d / "rgb8.onnx") as ref, OrtSegmenter(path) as seg:
        agreement = (ref.predict(x) == seg.predict(x)).mean()
    assert agreement >= (0.99 if precision == "fp16" else 0.8)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx") is None,
                    reason="tensorrt_rtx is not installed")
@pytest.mark.parametrize("name", ["rgb8", "rgb8_fp16", "rgb8_int8"])
def test_tensorrt_rtx_builds_engines_of_rgb8_graphs(graphs, tmp_path, name):
    d, _ = graphs
    profile = Profile((1, 3, 64, 64), (1, 3, 256, 256), (2, 3, 720, 1280))
    side = build_engine(d / f"{name}.onnx", tmp_path / "m.engine", [profile],
                        backend="tensorrt-rtx", compute_capabilities=["SM89"], log=lambda s: None)
    assert side.engine.inputs == [{"name": "input", "dtype": "uint8", "shape": [-1, -1, -1, 3]}]
    assert list(side.engine.profiles[0]["max"]) == [2, 3, 720, 1280]  # N x 3 x H x W, as given
    assert side.input.format == "rgb8" and side.engine.engine_bytes > 100_000


def test_triton_config_takes_uint8_frames(graphs, tmp_path):
    mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from fcn_deploy.exporters.triton import export_triton

    d, _ = graphs
    export_triton(d / "rgb8.onnx", tmp_path / "repo", "seg", max_batch_size=2)
    for model in ("seg", "seg_labels"):  # the ensemble takes what its model takes
        config = text_format.Parse((tmp_path / "repo" / model / "config.pbtxt").read_text(),
                                   mc.ModelConfig())
        assert config.input[0].data_type == mc.TYPE_UINT8
        assert list(config.input[0].dims) == [-1, -1, 3]
        assert config.parameters["input_format"].string_value == "rgb8"
        assert config.parameters["input_convention"].string_value == "imagenet"


def test_bench_rows_count_a_quarter_of_the_bytes(graphs):
    d, _ = graphs
    rows = {}
    for name in ("float", "rgb8"):
        with OrtSegmenter(d / f"{name}.onnx", threads=1) as seg:
            rows[name] = latency_row(seg, (1, 3, 72, 128), warmup=1, iters=2)
    assert rows["rgb8"]["input_format"] == "rgb8"
    assert rows["float"]["input_bytes_per_image"] == 4 * rows["rgb8"]["input_bytes_per_image"]
    assert rows["rgb8"]["input_bytes_per_image"] == 72 * 128 * 3


def test_torch_segmenter_normalizes_frames_on_its_device(model):
    net, meta = model
    x = frames(2, 61, 83, seed=7)
    with TorchSegmenter(model=net, meta=meta) as f, \
            TorchSegmenter(model=net, meta=meta, rgb8=True) as r:
        assert r.meta.input.format == "rgb8"
        assert np.array_equal(f.predict(x), r.predict(x))
        with pytest.raises(FcnDeployError, match="takes uint8"):
            r.infer(normalize(x))


def test_cli_export_input_rgb8(checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    result = run("export", checkpoint, "-o", out, "--input", "rgb8")
    assert result.exit_code == 0, result.output
    assert "rgb8 graph (uint8 frames in)" in result.output
    assert onnx_metadata(out).input.format == "rgb8"
    float_out = tmp_path / "f.onnx"
    assert run("export", checkpoint, "-o", float_out).exit_code == 0
    scores = run("eval", float_out, out, "--json", tmp_path / "eval.json")
    assert scores.exit_code == 0, scores.output
    results = list(json.loads((tmp_path / "eval.json").read_text())["results"].values())
    assert results[0]["mean_iu"] == results[1]["mean_iu"]  # eval reads the convention
    bad = run("export", checkpoint, "-o", tmp_path / "b.onnx", "--input", "bgr8")
    assert_one_line_error(bad, "'bgr8' is not one of 'float', 'rgb8'", code=2)
    assert not (tmp_path / "b.onnx").exists()
