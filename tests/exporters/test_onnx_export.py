import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import tiny_meta

from fcn_deploy.contract.conventions import CAFFE_MEAN
from fcn_deploy.contract.metadata import onnx_metadata
from fcn_deploy.contract.preprocess import normalize
from fcn_deploy.data.synthetic import SyntheticShapes
from fcn_deploy.errors import ArtifactError, ExportError, OptionError
from fcn_deploy.exporters import onnx_export
from fcn_deploy.exporters.export import export, load_source
from fcn_deploy.exporters.onnx_export import export_onnx
from fcn_deploy.exporters.precision import convert_fp16, quantize_int8, quantized_ops
from fcn_deploy.models import build_model, random_init_


def read_metadata(path):
    """The flat metadata as stored in the file."""
    return onnx_metadata(path).to_dict()

SMALL = ((1, 3, 45, 77), (2, 3, 64, 40))


def _model(arch="fcn8s-vgg16", seed=0):
    torch.manual_seed(seed)
    model = build_model(arch, 7, width=1 / 16).eval()
    for name in ("score_fr", "score_pool4", "score_pool3"):  # non-trivial logits
        if hasattr(model, name):
            torch.nn.init.normal_(getattr(model, name).weight, std=0.1)
    meta = tiny_meta(arch, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    return model, meta


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    model, meta = _model()
    path = tmp_path_factory.mktemp("onnx") / "fcn8s.onnx"
    report = export_onnx(model, meta, path, source_sha256="ab" * 32, verify_shapes=SMALL)
    return path, model, report


@pytest.mark.parametrize("arch", ["fcn32s-vgg16", "fcn16s-vgg16", "fcn32s-alexnet"])
def test_every_arch_exports_and_verifies(arch, tmp_path):
    model, meta = _model(arch)
    report = export_onnx(model, meta, tmp_path / "m.onnx", verify_shapes=SMALL)
    assert report.worst_agreement == 1.0 and max(report.max_abs_error) < 1e-4


def test_dynamic_batch_height_width(fp32):
    path, model, report = fp32
    proto = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, "H", "W"]
    assert proto.opset_import[0].version >= 17
    assert not [n for n in proto.graph.node if n.op_type in ("Resize", "Reshape")]
    # Sizes never seen at trace time, including the 1x1 and 1199 extremes.
    for shape in [(3, 3, 1, 1), (1, 3, 1199, 5), (1, 3, 97, 131)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = model(x).numpy()
        got = _run(path, x.numpy())
        assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-4


def test_metadata_describes_the_artifact(fp32):
    path, _, report = fp32
    meta = read_metadata(path)
    assert meta["arch"] == "fcn8s-vgg16" and meta["num_classes"] == 7
    assert meta["class_names"][4] == "bar" and meta["stride"] == 32
    assert meta["input"]["layout"] == "NCHW" and meta["input"]["color"] == "RGB"
    assert meta["precision"] == "fp32" and meta["source_sha256"] == "ab" * 32
    assert meta["fcn_deploy_version"]
    assert report.shapes == [list(s) for s in SMALL]


def test_labels_output_is_uint8_argmax_in_the_graph(tmp_path):
    model, meta = _model()
    path = tmp_path / "labels.onnx"
    report = export_onnx(model, meta, path, output="labels", verify_shapes=SMALL)
    x = torch.randn(2, 3, 50, 61)
    got = _run(path, x.numpy())
    assert got.dtype == np.uint8 and got.shape == (2, 50, 61)
    with torch.no_grad():
        assert (got == model(x).argmax(1).numpy()).mean() == 1.0
    assert model.training is False and report.worst_agreement == 1.0


def test_failed_verification_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "MIN_ARGMAX_AGREEMENT", 1.01)  # unreachable
    model, meta = _model()
    with pytest.raises(ExportError, match="agree on only"):
        export_onnx(model, meta, tmp_path / "m.onnx", verify_shapes=SMALL[:1])
    assert list(tmp_path.iterdir()) == []


def test_fp16_keeps_fp32_io_and_agrees(fp32, tmp_path):
    path, _, _ = fp32
    half = tmp_path / "half.onnx"
    convert_fp16(path, half)
    proto = onnx.load(str(half))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)
    assert read_metadata(half)["precision"] == "fp16"
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    a, b = _run(path, x), _run(half, x)
    assert (a.argmax(1) == b.argmax(1)).mean() > 0.99


@pytest.mark.parametrize("scheme,act_type", [("s8s8", onnx.TensorProto.INT8),
                                             ("u8s8", onnx.TensorProto.UINT8)])
def test_int8_qdq_quantizes_every_conv(fp32, tmp_path, scheme, act_type):
    path, _, _ = fp32
    calib = [SyntheticShapes("train", 4, 48)[i][0] for i in range(4)]
    q = tmp_path / f"{scheme}.onnx"
    quantize_int8(path, q, calib, scheme=scheme, upsample="int8")
    ops = quantized_ops(q)
    assert ops["float"] == ops["fp16"] == [] and len(ops["int8"]) == 21
    proto = onnx.load(str(q))
    # Weight scales: one per output channel for Conv, one per tensor for ConvTranspose.
    scales = {n.output[0]: n.input[1] for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    dims = {i.name: list(i.dims) for i in proto.graph.initializer}
    weights = {n.op_type: dims[scales[n.input[1]]] for n in proto.graph.node
               if n.op_type in ("Conv", "ConvTranspose") and n.input[1] in scales}
    assert weights["ConvTranspose"] == [] and len(weights["Conv"]) == 1
    quant = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert quant
    inits = {i.name: i for i in proto.graph.initializer}
    zp = inits[quant[0].input[2]]
    assert zp.data_type == act_type
    if scheme == "s8s8":  # symmetric activations: every zero point is 0
        assert all(onnx.numpy_helper.to_array(inits[n.input[2]]).max() == 0 for n in quant)
    meta = read_metadata(q)
    assert meta["precision"] == "int8" and meta["int8_scheme"] == scheme
    x = np.random.default_rng(0).normal(size=(1, 3, 48, 48)).astype(np.float32)
    assert _run(q, x).shape == (1, 7, 48, 48)


def test_keep_fp32_and_fp16_layers_and_fp16_upsampling_by_default(fp32, tmp_path):
    path, _, _ = fp32
    calib = [SyntheticShapes("train", 2, 32)[i][0] for i in range(2)]
    q = tmp_path / "q.onnx"
    quantize_int8(path, q, calib, keep_fp32=["/model/upscore8/ConvTranspose"],
                  keep_fp16=["/model/conv1_1/Conv"])
    ops = quantized_ops(q)
    assert ops["float"] == ["/model/upscore8/ConvTranspose"]
    assert ops["fp16"] == ["/model/conv1_1/Conv", "/model/upscore2/ConvTranspose",
                           "/model/upscore_pool4/ConvTranspose"]
    assert len(ops["int8"]) == 17
    meta = read_metadata(q)
    assert meta["keep_fp16"][0] == "/model/conv1_1/Conv" and meta["upsample"] == "fp16"
    x = normalize(calib[0][None], meta["mean"], meta["std"])
    # 0.92 on an AVX2-only EPYC, above 0.95 on VNNI Xeons: without VNNI, onnxruntime's INT8
    # kernels add u8 x s8 products in saturating int16 pairs (vpmaddubsw).
    assert (_run(q, x).argmax(1) == _run(path, x).argmax(1)).mean() > 0.9
    for bad, kwargs in (("unknown layer 'conv9'", {"keep_fp32": ["conv9"]}),
                        ("unknown conv layer '/model/pool1/MaxPool'",
                         {"keep_fp16": ["/model/pool1/MaxPool"]}),
                        ("unknown upsample precision", {"upsample": "int4"})):
        with pytest.raises(OptionError, match=bad):
            quantize_int8(path, tmp_path / "bad.onnx", calib, **kwargs)
    assert not (tmp_path / "bad.onnx").exists()


def test_export_pipeline_reports_precision_change(tmp_path):
    model, meta = _model()
    val = SyntheticShapes("val", 4, 48)
    report = export(model, meta, None, tmp_path / "h.onnx", precision="fp16", eval_set=val)
    assert 0.99 <= report["vs_fp32"]["argmax_agreement"] <= 1
    assert abs(report["vs_fp32"]["delta_mean_iu_points"]) < 1
    assert [p.name for p in tmp_path.iterdir()] == ["h.onnx"]


def test_original_layout_state_dict_needs_arch_and_input_convention(tmp_path):
    model, _ = _model()
    pth = tmp_path / "port.pth"
    torch.save(model.state_dict(), pth)
    with pytest.raises(OptionError, match="nothing says which input its weights learned"):
        load_source(pth, "fcn8s-vgg16", None, None)
    loaded, meta, sha = load_source(pth, "fcn8s-vgg16", None, None, "caffe")
    assert meta.num_classes == 7 and meta.width == 1 / 16 and len(sha) == 64
    assert (meta.convention, meta.mean, meta.std) == ("caffe", list(CAFFE_MEAN), [1, 1, 1])
    assert torch.equal(loaded.score_fr.weight, model.score_fr.weight)


def test_corrupt_and_foreign_onnx(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage" * 10)
    with pytest.raises(ArtifactError, match="bad.onnx"):
        read_metadata(bad)
    with pytest.raises(ArtifactError, match="does not exist"):
        read_metadata(tmp_path / "none.onnx")
    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 2, 1), (torch.zeros(1, 3, 4, 4),), str(foreign),
                      dynamo=False)
    with pytest.raises(ArtifactError, match="no fcn-deploy metadata"):
        read_metadata(foreign)


def test_simplified_export_is_verified_too(tmp_path):
    model, meta = _model()
    path = tmp_path / "slim.onnx"
    report = export_onnx(model, meta, path, simplify=True, verify_shapes=SMALL)
    assert report.worst_agreement == 1.0
    assert read_metadata(path)["arch"] == "fcn8s-vgg16"


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_int8_calibration_methods(fp32, tmp_path, method):
    path, _, _ = fp32
    calib = [SyntheticShapes("train", 3, 40)[i][0] for i in range(3)]
    q = tmp_path / "q.onnx"
    quantize_int8(path, q, calib, method=method)
    assert read_metadata(q)["calibration"] == {"method": method, "samples": 3,
                                               "reduce_range": False}
    assert quantized_ops(q)["float"] == []
    with pytest.raises(OptionError, match="unknown calibration method"):
        quantize_int8(path, tmp_path / "x.onnx", calib, method="kl")


def test_reduce_range_keeps_int8_weights_within_7_bits(fp32, tmp_path):
    from onnx import numpy_helper

    path, _, _ = fp32
    calib = [SyntheticShapes("train", 3, 40)[i][0] for i in range(2)]

    def widest_weight(reduce_range: bool) -> int:
        q = tmp_path / f"q{reduce_range}.onnx"
        quantize_int8(path, q, calib, reduce_range=reduce_range)
        model = onnx.load(str(q))
        weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer
                   if i.data_type == onnx.TensorProto.INT8}
        dq = [n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"]
        assert read_metadata(q)["calibration"]["reduce_range"] == reduce_range
        return max(int(np.abs(weights[w].astype(int)).max()) for w in dq if w in weights)

    assert widest_weight(False) == 127 and widest_weight(True) <= 64


def test_static_copy_fixes_the_shape_and_gives_the_same_output(fp32, tmp_path):
    from fcn_deploy.errors import FcnDeployError
    from fcn_deploy.exporters.onnx_export import static_copy
    from fcn_deploy.runtime.ort_segmenter import OrtSegmenter

    path, _, _ = fp32
    static = tmp_path / "static.onnx"
    static_copy(path, static, (2, 3, 40, 56))
    graph = onnx.load(str(static)).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [2, 3, 40, 56]
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == [2, 7, 40, 56]
    assert read_metadata(static)["static_shape"] == [2, 3, 40, 56]
    x = np.random.default_rng(0).normal(size=(2, 3, 40, 56)).astype(np.float32)
    np.testing.assert_allclose(_run(static, x), _run(path, x), atol=1e-4)
    with pytest.raises(FcnDeployError, match="takes only 2x3x40x56 inputs"):
        OrtSegmenter(static).infer(x[:1])


def test_keep_fp16_on_a_layer_whose_bias_is_computed_in_the_graph(tmp_path):
    # Zero score biases are merged into one initializer before quantization; U8S8 quantizes
    # it for the first user, so the FP16 layer's bias comes from a DequantizeLinear node.
    model = random_init_(build_model("fcn8s-vgg16", 7, width=0.0625)).eval()
    meta = tiny_meta()
    path = tmp_path / "m.onnx"
    export_onnx(model, meta, path, verify_shapes=SMALL[:1])
    calib = [SyntheticShapes("train", 2, 32)[i][0] for i in range(2)]
    q = tmp_path / "q.onnx"
    for layer in ("/model/score_pool4/Conv", "/model/score_fr/Conv"):
        quantize_int8(path, q, calib, scheme="u8s8", keep_fp16=[layer])
        assert layer in quantized_ops(q)["fp16"]
        assert _run(q, np.zeros((1, 3, 40, 40), np.float32)).shape == (1, 7, 40, 40)
    with pytest.raises(OptionError, match="in both --keep-fp32 and --keep-fp16"):
        quantize_int8(path, q, calib, keep_fp32=["/model/fc6/Conv"], keep_fp16=["/model/fc6/Conv"])


def test_metadata_of_other_tools_is_kept_as_text(fp32, tmp_path):
    path, _, _ = fp32
    tagged = tmp_path / "tagged.onnx"
    tagged.write_bytes(path.read_bytes())
    extra = onnx.ModelProto()
    extra.metadata_props.add(key="onnx.quant.pre_process", value="onnxruntime.quant")
    with open(tagged, "ab") as f:  # as onnxruntime's quant_pre_process leaves it
        f.write(extra.SerializeToString())
    meta = read_metadata(tagged)
    assert meta["onnx.quant.pre_process"] == "onnxruntime.quant" and meta["num_classes"] == 7
