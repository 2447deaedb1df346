import dataclasses
import importlib.util

import numpy as np
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from helpers import tiny_meta

from fcn_deploy.contract.metadata import EngineInfo
from fcn_deploy.errors import ExportError, FcnDeployError, OptionError
from fcn_deploy.exporters.export import default_class_names
from fcn_deploy.exporters.onnx_export import export_onnx
from fcn_deploy.exporters.tensorrt_build import build_engine
from fcn_deploy.exporters.triton import export_triton, model_config_pb2
from fcn_deploy.models import build_model
from fcn_deploy.runtime.tensorrt import Profile

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("triton")
    torch.manual_seed(0)
    model = build_model("fcn8s-vgg16", 7, width=0.0625).eval()
    torch.nn.init.normal_(model.score_fr.weight)  # non-zero scores, so argmax is not trivial
    meta = tiny_meta()
    for output in ("logits", "labels", "probs", "labels+score"):
        export_onnx(model, meta, d / f"{output}.onnx", output, verify_shapes=((1, 3, 40, 40),))
    return d


def parse(path):
    """config.pbtxt through Triton's own schema, and the text round trip."""
    config = text_format.Parse(path.read_text(), model_config_pb2().ModelConfig())
    again = text_format.Parse(text_format.MessageToString(config), model_config_pb2().ModelConfig())
    assert again == config
    return config


def test_onnx_repository_with_labels_ensemble(onnx_files, tmp_path):
    repo = tmp_path / "repo"
    written = export_triton(onnx_files / "logits.onnx", repo, "seg", max_batch_size=4, instances=2)
    assert [p.name for p in written] == ["seg", "seg_argmax", "seg_labels"]
    config = parse(repo / "seg" / "config.pbtxt")
    assert config.backend == "onnxruntime" and config.max_batch_size == 4
    assert config.input[0].name == "input" and list(config.input[0].dims) == [3, -1, -1]
    assert config.input[0].data_type == mc.TYPE_FP32
    out = config.output[0]
    assert out.name == "logits" and list(out.dims) == [7, -1, -1] and not out.label_filename
    assert config.parameters["class_names_file"].string_value == "labels.txt"
    assert config.parameters["mean"].string_value == "0.5,0.5,0.5"
    assert config.parameters["arch"].string_value == "fcn8s-vgg16"  # no literal quotes
    assert (config.instance_group[0].count == 2
            and config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU)
    assert config.HasField("dynamic_batching")
    assert (repo / "seg" / "labels.txt").read_text().split() == default_class_names(7)
    assert ((repo / "seg" / "1" / "model.onnx").read_bytes()
            == (onnx_files / "logits.onnx").read_bytes())
    ensemble = parse(repo / "seg_labels" / "config.pbtxt")
    assert ensemble.platform == "ensemble"
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == ["seg", "seg_argmax"]
    assert ensemble.output[0].data_type == mc.TYPE_UINT8
    steps = ensemble.ensemble_scheduling.step  # tensors chain: input -> logits -> labels
    assert (dict(steps[0].input_map) == {"input": "input"}
            and dict(steps[1].output_map) == {"labels": "labels"})
    assert steps[0].output_map["logits"] == steps[1].input_map["logits"]
    for model in ("seg", "seg_argmax", "seg_labels"):
        assert (repo / model / "labels.txt").read_text().split() == default_class_names(7)
    # The argmax model gives the labels the logits say, as uint8.
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 56)).astype(np.float32)
    logits = ort.InferenceSession(str(onnx_files / "logits.onnx")).run(None, {"input": x})[0]
    argmax = ort.InferenceSession(str(repo / "seg_argmax" / "1" / "model.onnx"))
    labels = argmax.run(None, {"logits": logits})[0]
    assert labels.dtype == np.uint8 and np.array_equal(labels, logits.argmax(1))


def test_labels_model_needs_no_ensemble(onnx_files, tmp_path):
    written = export_triton(onnx_files / "labels.onnx", tmp_path, "lab", kind="cpu")
    assert [p.name for p in written] == ["lab"]
    config = parse(tmp_path / "lab" / "config.pbtxt")
    assert config.output[0].name == "labels" and config.output[0].data_type == mc.TYPE_UINT8
    assert list(config.output[0].dims) == [-1, -1] and (tmp_path / "lab" / "labels.txt").is_file()
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU


def test_output_dtypes_come_from_the_graph(onnx_files, tmp_path):
    export_triton(onnx_files / "labels+score.onnx", tmp_path, "ls")
    outputs = parse(tmp_path / "ls" / "config.pbtxt").output
    assert [(o.name, o.data_type, list(o.dims)) for o in outputs] == [
        ("labels", mc.TYPE_UINT8, [-1, -1]), ("score", mc.TYPE_FP32, [-1, -1])]
    written = export_triton(onnx_files / "probs.onnx", tmp_path, "p")  # probs chain to argmax too
    assert [p.name for p in written] == ["p", "p_argmax", "p_labels"]
    assert parse(tmp_path / "p_argmax" / "config.pbtxt").input[0].name == "probs"
    assert (parse(tmp_path / "p_labels" / "config.pbtxt")
            .ensemble_scheduling.step[0].output_map["probs"])


def test_existing_models_bad_options_and_checkpoints_are_refused(onnx_files, tmp_path):
    export_triton(onnx_files / "labels.onnx", tmp_path, "m")
    before = (tmp_path / "m" / "config.pbtxt").read_text()
    with pytest.raises(ExportError, match="exists; pass --force"):
        export_triton(onnx_files / "labels.onnx", tmp_path, "m", max_batch_size=2)
    assert (tmp_path / "m" / "config.pbtxt").read_text() == before
    export_triton(onnx_files / "labels.onnx", tmp_path, "m", max_batch_size=2, force=True)
    assert parse(tmp_path / "m" / "config.pbtxt").max_batch_size == 2
    with pytest.raises(OptionError, match="unknown instance kind"):
        export_triton(onnx_files / "labels.onnx", tmp_path, "k", kind="tpu")
    assert not (tmp_path / "k").exists()
    for bad in (".", "..", "", "../x", "a/b"):
        with pytest.raises(OptionError, match="model name"):
            export_triton(onnx_files / "labels.onnx", tmp_path / "m", bad, force=True)
    assert (tmp_path / "m" / "config.pbtxt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folders left


ENGINE = EngineInfo(
    backend="tensorrt", backend_version="10.13", engine_sha256="0" * 64, engine_bytes=1,
    build_seconds=1.0,
    inputs=[{"name": "input", "dtype": "float", "shape": [-1, 3, -1, -1]}],
    outputs=[{"name": "logits", "dtype": "float", "shape": [-1, 7, -1, -1]}],
    profiles=[{"min": [1, 3, 64, 64], "opt": [1, 3, 512, 512], "max": [4, 3, 1024, 1024]},
              {"min": [1, 3, 64, 64], "opt": [8, 3, 256, 256], "max": [8, 3, 512, 512]}])
ENGINE_META = tiny_meta(precision="fp16", engine=ENGINE)


def engine_meta(**changes):
    return ENGINE_META.replace(engine=dataclasses.replace(ENGINE, **changes))


def test_engine_config_uses_every_profile_and_the_sidecar_tensors():
    from fcn_deploy.exporters.triton import model_config

    config = model_config(None, ENGINE_META, "eng", True, 8, 1, "gpu")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 8
    assert list(config.instance_group[0].profile) == ["0", "1"]
    assert config.output[0].data_type == mc.TYPE_FP32 and list(config.output[0].dims) == [7, -1, -1]
    text_format.Parse(text_format.MessageToString(config), mc.ModelConfig())
    for meta, kwargs, needle in (
            (ENGINE_META, {"max_batch_size": 16}, "largest profile batch 8"),
            (ENGINE_META, {"kind": "cpu"}, "GPU instances only"),
            (engine_meta(backend="tensorrt_rtx"), {}, "full TensorRT"),
            (engine_meta(outputs=[{"name": "logits", "dtype": "bfloat16",
                                   "shape": [-1, 7, -1, -1]}]), {}, "no Triton data type")):
        args = {"max_batch_size": 4, "instances": 1, "kind": "gpu", **kwargs}
        with pytest.raises(FcnDeployError, match=needle):  # options, or the engine's facts
            model_config(None, meta, "eng", True, **args)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx") is None,
                    reason="tensorrt_rtx is not installed")
def test_tensorrt_rtx_engines_are_refused_with_the_onnx_route(onnx_files, tmp_path):
    engine = tmp_path / "m.engine"
    build_engine(onnx_files / "logits.onnx", engine,
                 [Profile((1, 3, 32, 32), (1, 3, 64, 64), (4, 3, 128, 128))],
                 "tensorrt-rtx", ["SM86"], log=lambda s: None)
    with pytest.raises(ExportError, match="onnxruntime backend"):
        export_triton(engine, tmp_path / "repo", "eng")
    assert not (tmp_path / "repo").exists()
