"""Triton Inference Server model repositories from fcn-deploy ONNX files and engines.

``<repo>/<name>/config.pbtxt`` + ``<repo>/<name>/1/model.onnx|model.plan`` + ``labels.txt``,
with shapes, dtypes and classes read from the artifact itself. For a logits or probs model an
ensemble ``<name>_labels`` chains it with a small ArgMax model so clients can ask for uint8
label maps (1 byte per pixel over the wire instead of 4 x classes).

``backend="python"`` serves the artifact through fcn_deploy's own runtime in Triton's Python
backend instead (``1/model.py``, copied from ``triton_python_model.py``): for servers without
the onnxruntime backend (PyTriton's ``tritonserver``), or engines built with TensorRT-RTX.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from fcn_deploy.atomic import atomic_dir
from fcn_deploy.contract.kinds import artifact_kind, sidecar_path
from fcn_deploy.contract.metadata import ArtifactMeta, EngineInfo, onnx_metadata
from fcn_deploy.contract.onnx_file import read_io
from fcn_deploy.contract.outputs import PER_CLASS
from fcn_deploy.contract.sidecar import read_sidecar
from fcn_deploy.errors import ExportError, OptionError

from .options import TRITON_BACKENDS, TRITON_KINDS

PYTHON_MODEL = Path(__file__).with_name("triton_python_model.py")
_TYPES = {"float": "TYPE_FP32", "float32": "TYPE_FP32", "half": "TYPE_FP16", "float16": "TYPE_FP16",
          "uint8": "TYPE_UINT8"}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _type(dtype: str) -> str:
    if dtype not in _TYPES:
        raise ExportError(f"no Triton data type for {dtype!r}")
    return _TYPES[dtype]


def model_config_pb2():
    """Triton's ModelConfig protobuf module (shipped by ``tritonclient[grpc]``)."""
    try:
        from tritonclient.grpc import model_config_pb2 as mc  # the triton extra
    except (ImportError, RuntimeError):  # tritonclient without grpc raises RuntimeError
        raise ExportError("Triton configs are checked against Triton's own schema: "
                          "pip install 'fcn-deploy[triton]' (tritonclient[grpc])") from None
    return mc


def _io(artifact: Path, meta: ArtifactMeta, engine: bool) -> tuple[dict, list[dict]]:
    """Input and output tensors with the dtypes and dims the artifact itself declares (the
    engine's sidecar, or the ONNX graph); the batch dimension is left out: it is Triton's."""
    if engine:
        tensors = [(t["name"], t["dtype"], t["shape"])
                   for t in meta.engine.inputs + meta.engine.outputs]
    else:
        tensors = [(t.name, t.dtype, [d if isinstance(d, int) else -1 for d in t.dims])
                   for t in sum(read_io(artifact), [])]
    inp, *outs = [{"name": n, "data_type": _type(t), "dims": [int(d) for d in shape[1:]]}
                  for n, t, shape in tensors]
    return inp, outs


def _check_engine(engine: EngineInfo, max_batch_size: int, kind: str, python: bool) -> None:
    # fcn_deploy's runtime (the Python backend) runs TensorRT-RTX engines too
    if engine.backend != "tensorrt" and not python:
        raise ExportError("Triton's tensorrt_plan backend loads engines of full TensorRT; "
                          f"this one was built with {engine.backend} {engine.backend_version}: "
                          "serve its ONNX file (onnxruntime backend) instead")
    if kind != "gpu":
        raise ExportError("TensorRT engines run on GPU instances only (--kind gpu)")
    largest = max(p["max"][0] for p in engine.profiles)
    if max_batch_size > largest:
        raise OptionError(f"--max-batch-size {max_batch_size} exceeds the engine's largest "
                          f"profile batch {largest}")
    if min(p["min"][0] for p in engine.profiles) > 1:
        raise ExportError("every profile of the engine needs batches > 1, but Triton's dynamic "
                          "batcher sends single requests; rebuild with a profile min batch of 1")


def model_config(artifact: Path, meta: ArtifactMeta, name: str, engine: bool, max_batch_size: int,
                 instances: int, kind: str, backend: str = "auto"):
    """The ModelConfig message for one fcn-deploy artifact (served by ``backend``)."""
    mc = model_config_pb2()
    python = backend == "python"
    if engine:
        _check_engine(meta.engine, max_batch_size, kind, python)
    inp, outs = _io(artifact, meta, engine)
    config = mc.ModelConfig(name=name, max_batch_size=max_batch_size)
    if python:
        _python_model(config, "segmenter")
    elif engine:
        config.platform = "tensorrt_plan"
    else:
        config.backend = "onnxruntime"
    config.input.add(name=inp["name"], data_type=inp["data_type"], dims=inp["dims"])
    for out in outs:
        config.output.add(name=out["name"], data_type=out["data_type"], dims=out["dims"])
    config.dynamic_batching.max_queue_delay_microseconds = 100
    group = config.instance_group.add(count=instances, kind=TRITON_KINDS[kind])
    if engine and not python:  # without this list an instance uses profile 0 alone
        group.profile.extend(str(i) for i in range(len(meta.engine.profiles)))
    _describe(config, meta)
    return config


def _python_model(config, role: str) -> None:
    """Make ``config`` a Python-backend model whose ``model.py`` serves ``role``."""
    config.backend = "python"
    config.parameters["fcn_python_model"].string_value = role


def _describe(config, meta: ArtifactMeta) -> None:
    """What a client needs beside the tensors: preprocessing (none to do for rgb8 models:
    ``input_format``) and the class names file. (Not ``label_filename``: Triton's
    classification extension would flatten K x H x W.)"""
    facts = {key: getattr(meta, key) for key in ("arch", "mean", "std", "stride", "precision")}
    facts.update(input_convention=meta.convention, input_format=meta.input.format,
                 input_layout=meta.input.layout, input_color=meta.input.color)
    for key, value in facts.items():
        # Plain text, as Triton's own parameters are: "fcn8s-vgg16", "0.485,0.456,0.406".
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        config.parameters[key].string_value = text
    config.parameters["class_names_file"].string_value = "labels.txt"


def argmax_model(num_classes: int, scores: str = "logits") -> onnx.ModelProto:
    """N x K x H x W float ``scores`` (logits or probs) -> N x H x W uint8 labels (ArgMax over
    classes, then Cast)."""
    logits = helper.make_tensor_value_info(scores, TensorProto.FLOAT, ["N", num_classes, "H", "W"])
    labels = helper.make_tensor_value_info("labels", TensorProto.UINT8, ["N", "H", "W"])
    nodes = [helper.make_node("ArgMax", [scores], ["index"], axis=1, keepdims=0),
             helper.make_node("Cast", ["index"], ["labels"], to=TensorProto.UINT8)]
    graph = helper.make_graph(nodes, "fcn_argmax", [logits], [labels])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def argmax_config(name: str, scores: str, num_classes: int, max_batch_size: int, instances: int,
                  kind: str, backend: str = "auto"):
    """The ArgMax model's config: onnxruntime, or numpy in the Python backend."""
    mc = model_config_pb2()
    config = mc.ModelConfig(name=name, backend="onnxruntime", max_batch_size=max_batch_size)
    if backend == "python":
        _python_model(config, "argmax")
    config.input.add(name=scores, data_type="TYPE_FP32", dims=[num_classes, -1, -1])
    config.output.add(name="labels", data_type="TYPE_UINT8", dims=[-1, -1])
    config.instance_group.add(count=instances, kind=TRITON_KINDS[kind])
    config.parameters["class_names_file"].string_value = "labels.txt"
    return config


def ensemble_config(name: str, model, argmax: str, scores: str, meta: ArtifactMeta,
                    max_batch_size: int):
    """``input`` -> ``model`` (its config) -> ``scores`` -> argmax -> ``labels``, one request
    for the client; the ensemble takes the model's own input (float NCHW or uint8 frames)."""
    mc = model_config_pb2()
    config = mc.ModelConfig(name=name, platform="ensemble", max_batch_size=max_batch_size)
    config.input.add().CopyFrom(model.input[0])
    _describe(config, meta)
    config.output.add(name="labels", data_type="TYPE_UINT8", dims=[-1, -1])
    first = config.ensemble_scheduling.step.add(model_name=model.name, model_version=-1)
    first.input_map["input"] = "input"
    first.output_map[scores] = "scores"
    second = config.ensemble_scheduling.step.add(model_name=argmax, model_version=-1)
    second.input_map[scores] = "scores"
    second.output_map["labels"] = "labels"
    return config


def _model_files(artifact: Path, engine: bool, backend: str) -> dict[str, Path]:
    """Version-folder file name -> source: the artifact (an engine with its sidecar, which the
    runtime reads), and for the Python backend the ``model.py`` that serves it."""
    files = {"model.plan" if engine else "model.onnx": artifact}
    if backend == "python":
        files["model.py"] = PYTHON_MODEL
        if engine:
            files["model.plan.json"] = sidecar_path(artifact)
    return files


def export_triton(artifact: Path, repo: Path, name: str = "fcn", max_batch_size: int = 8,
                  instances: int = 1, kind: str = "gpu", labels_ensemble: bool = True,
                  force: bool = False, backend: str = "auto") -> list[Path]:
    """Write a Triton model repository for ``artifact``; returns the model folders written.
    ``backend``: auto (onnxruntime for ONNX files, tensorrt_plan for engines) or python."""
    from google.protobuf import text_format  # protobuf: comes with tritonclient

    if backend not in TRITON_BACKENDS:
        raise OptionError(f"unknown Triton backend {backend!r}; "
                          f"choose {', '.join(TRITON_BACKENDS)}")
    if kind not in TRITON_KINDS:
        raise OptionError(f"unknown instance kind {kind!r}; choose {', '.join(TRITON_KINDS)}")
    if not _NAME.match(name) or name in (".", ".."):
        raise OptionError(f"model name {name!r}: use letters, digits, '_', '-' and '.' only")
    if max_batch_size < 1 or instances < 1:
        raise OptionError("--max-batch-size and --instances must be at least 1")
    what = artifact_kind(artifact)
    if what == "checkpoint":
        raise ExportError(f"{artifact} is a checkpoint; export it to ONNX (or an engine) first")
    engine = what == "engine"
    meta = read_sidecar(artifact) if engine else onnx_metadata(artifact)
    config = model_config(artifact, meta, name, engine, max_batch_size, instances, kind, backend)
    models = {name: (config, _model_files(artifact, engine, backend))}
    scores = meta.output
    if labels_ensemble and scores in PER_CLASS:
        k = meta.num_classes
        files = ({"model.py": PYTHON_MODEL} if backend == "python"
                 else {"model.onnx": argmax_model(k, scores)})
        models[f"{name}_argmax"] = (argmax_config(f"{name}_argmax", scores, k, max_batch_size,
                                                  instances, kind, backend), files)
        models[f"{name}_labels"] = (ensemble_config(f"{name}_labels", models[name][0],
                                                    f"{name}_argmax", scores, meta,
                                                    max_batch_size), {})
    for model_name in models:
        if (repo / model_name).exists() and not force:
            raise ExportError(f"{repo / model_name} exists; pass --force to replace it")
        if Path(artifact).resolve().is_relative_to((repo / model_name).resolve()):
            raise ExportError(f"{artifact} is inside {repo / model_name}, which this export "
                              "replaces: copy the artifact elsewhere first")
    written = []
    for model_name, (config, files) in models.items():
        with atomic_dir(repo / model_name, replace=force) as tmp:
            (tmp / "1").mkdir(parents=True)
            (tmp / "config.pbtxt").write_text(text_format.MessageToString(config))
            (tmp / "labels.txt").write_text("\n".join(meta.class_names) + "\n")
            for filename, source in files.items():
                if isinstance(source, onnx.ModelProto):
                    onnx.save(source, str(tmp / "1" / filename))
                else:
                    shutil.copyfile(source, tmp / "1" / filename)
        written.append(repo / model_name)
    return written
