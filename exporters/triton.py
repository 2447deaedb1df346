"""Triton Inference Server model repositories from fcn-deploy ONNX files and engines.

``<repo>/<name>/config.pbtxt`` + ``<repo>/<name>/1/model.onnx|model.plan`` + ``labels.txt``,
with shapes, dtypes and classes read from the artifact's own metadata. For a logits model an
ensemble ``<name>_labels`` chains it with a small ArgMax model so clients can ask for uint8
label maps (1 byte per pixel over the wire instead of 4 x classes).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from fcn_deploy.artifacts import artifact_kind
from fcn_deploy.atomic import atomic_dir
from fcn_deploy.errors import ExportError

KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
_TYPES = {"float": "TYPE_FP32", "float32": "TYPE_FP32", "half": "TYPE_FP16", "uint8": "TYPE_UINT8"}


def model_config_pb2():
    """Triton's ModelConfig protobuf module (shipped by ``tritonclient[grpc]``)."""
    try:
        from tritonclient.grpc import model_config_pb2 as mc
    except (ImportError, RuntimeError):  # tritonclient without grpc raises RuntimeError
        raise ExportError("Triton configs are checked against Triton's own schema: "
                          "pip install 'fcn-deploy[triton]' (tritonclient[grpc])") from None
    return mc


def _io(meta: dict, engine: bool) -> tuple[dict, dict, int]:
    """Input and output tensor descriptions (batch dimension left out) and max batch size."""
    if engine:
        out = meta["outputs"][0]
        out_type = _TYPES[out["dtype"]]
        max_batch = max(p["max"][0] for p in meta["profiles"])
    else:
        out_type = "TYPE_UINT8" if meta["output"] == "labels" else "TYPE_FP32"
        max_batch = None
    if meta["output"] == "labels":
        out_dims = [-1, -1]
    else:
        out_dims = [meta["num_classes"], -1, -1]
    return ({"name": "input", "data_type": "TYPE_FP32", "dims": [3, -1, -1]},
            {"name": meta["output"], "data_type": out_type, "dims": out_dims}, max_batch)


def model_config(meta: dict, name: str, engine: bool, max_batch_size: int, instances: int,
                 kind: str):
    """The ModelConfig message for one fcn-deploy artifact."""
    mc = model_config_pb2()
    inp, out, engine_batch = _io(meta, engine)
    if engine_batch is not None and max_batch_size > engine_batch:
        raise ExportError(f"--max-batch-size {max_batch_size} exceeds the engine's largest "
                          f"profile batch {engine_batch}")
    config = mc.ModelConfig(name=name, max_batch_size=max_batch_size)
    if engine:
        config.platform = "tensorrt_plan"
    else:
        config.backend = "onnxruntime"
    config.input.add(name=inp["name"], data_type=inp["data_type"], dims=inp["dims"])
    output = config.output.add(name=out["name"], data_type=out["data_type"], dims=out["dims"])
    if meta["output"] == "logits":
        output.label_filename = "labels.txt"
    config.dynamic_batching.max_queue_delay_microseconds = 100
    config.instance_group.add(count=instances, kind=KINDS[kind])
    for key in ("arch", "mean", "std", "stride", "precision"):
        config.parameters[key].string_value = json.dumps(meta.get(key))
    return config


def argmax_model(num_classes: int) -> onnx.ModelProto:
    """N x K x H x W float logits -> N x H x W uint8 labels (ArgMax over classes, then Cast)."""
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes, "H", "W"])
    labels = helper.make_tensor_value_info("labels", TensorProto.UINT8, ["N", "H", "W"])
    nodes = [helper.make_node("ArgMax", ["logits"], ["index"], axis=1, keepdims=0),
             helper.make_node("Cast", ["index"], ["labels"], to=TensorProto.UINT8)]
    graph = helper.make_graph(nodes, "fcn_argmax", [logits], [labels])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def argmax_config(name: str, num_classes: int, max_batch_size: int, instances: int, kind: str):
    mc = model_config_pb2()
    config = mc.ModelConfig(name=name, backend="onnxruntime", max_batch_size=max_batch_size)
    config.input.add(name="logits", data_type="TYPE_FP32", dims=[num_classes, -1, -1])
    config.output.add(name="labels", data_type="TYPE_UINT8", dims=[-1, -1])
    config.instance_group.add(count=instances, kind=KINDS[kind])
    return config


def ensemble_config(name: str, model: str, argmax: str, num_classes: int, max_batch_size: int):
    """``input`` -> model -> ``logits`` -> argmax -> ``labels``, one request for the client."""
    mc = model_config_pb2()
    config = mc.ModelConfig(name=name, platform="ensemble", max_batch_size=max_batch_size)
    config.input.add(name="input", data_type="TYPE_FP32", dims=[3, -1, -1])
    config.output.add(name="labels", data_type="TYPE_UINT8", dims=[-1, -1])
    first = config.ensemble_scheduling.step.add(model_name=model, model_version=-1)
    first.input_map["input"] = "input"
    first.output_map["logits"] = "scores"
    second = config.ensemble_scheduling.step.add(model_name=argmax, model_version=-1)
    second.input_map["logits"] = "scores"
    second.output_map["labels"] = "labels"
    return config


def export_triton(artifact: Path, repo: Path, name: str = "fcn", max_batch_size: int = 8,
                  instances: int = 1, kind: str = "gpu", labels_ensemble: bool = True,
                  force: bool = False) -> list[Path]:
    """Write a Triton model repository for ``artifact``; returns the model folders written."""
    from google.protobuf import text_format

    from .onnx_export import read_metadata
    from .tensorrt_build import read_sidecar

    if kind not in KINDS:
        raise ExportError(f"unknown instance kind {kind!r}; choose {', '.join(KINDS)}")
    if max_batch_size < 1 or instances < 1:
        raise ExportError("--max-batch-size and --instances must be at least 1")
    what = artifact_kind(artifact)
    if what == "checkpoint":
        raise ExportError(f"{artifact} is a checkpoint; export it to ONNX (or an engine) first")
    engine = what == "engine"
    meta = read_sidecar(artifact) if engine else read_metadata(artifact)
    models = {name: (model_config(meta, name, engine, max_batch_size, instances, kind),
                     {"model.plan" if engine else "model.onnx": artifact})}
    if labels_ensemble and meta["output"] == "logits":
        k = meta["num_classes"]
        models[f"{name}_argmax"] = (argmax_config(f"{name}_argmax", k, max_batch_size, instances, kind),
                                    {"model.onnx": argmax_model(k)})
        models[f"{name}_labels"] = (ensemble_config(f"{name}_labels", name, f"{name}_argmax", k,
                                                    max_batch_size), {})
    for model_name in models:
        if (repo / model_name).exists() and not force:
            raise ExportError(f"{repo / model_name} exists; pass --force to replace it")
    written = []
    for model_name, (config, files) in models.items():
        with atomic_dir(repo / model_name, replace=force) as tmp:
            (tmp / "1").mkdir(parents=True)
            (tmp / "config.pbtxt").write_text(text_format.MessageToString(config))
            if config.output[0].label_filename:
                (tmp / "labels.txt").write_text("\n".join(meta["class_names"]) + "\n")
            for filename, source in files.items():
                if isinstance(source, onnx.ModelProto):
                    onnx.save(source, str(tmp / "1" / filename))
                else:
                    shutil.copyfile(source, tmp / "1" / filename)
        written.append(repo / model_name)
    return written
