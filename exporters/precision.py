"""Precision conversion inside the ONNX graph: FP16 (FP32 I/O kept) and INT8 Q/DQ.

TensorRT 10+ reads precision from explicit Q/DQ nodes and TensorRT 11 removed implicit INT8
calibration and FP16 builder flags, so the precision of every artifact lives in its graph.
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from fcn_deploy.atomic import atomic_path
from fcn_deploy.contract.preprocess import model_input
from fcn_deploy.errors import ExportError, OptionError

from .onnx_export import load_onnx, metadata_of, preprocess_nodes, write_metadata
from .options import check_int8_options


def convert_fp16(src: str | Path, out: str | Path, keep_fp32: Sequence[str] = ()) -> None:
    """FP16 weights and compute, FP32 input/output kept; ``keep_fp32`` nodes and an rgb8
    graph's preprocessing stay FP32 (x / 255 and (x - mean) / std are exact there)."""
    from onnxconverter_common import float16  # FP16 exports only

    model = load_onnx(src)
    meta = metadata_of(model, src)
    _check_nodes(model, keep_fp32)
    with warnings.catch_warnings():
        # It warns for every weight below FP16's range that it flushes to +-1e-7: expected.
        warnings.filterwarnings("ignore", message="the float32 number", category=UserWarning)
        half = float16.convert_float_to_float16(model, keep_io_types=True,
                                                node_block_list=[*keep_fp32,
                                                                 *preprocess_nodes(model)])
    write_metadata(half, meta.replace(precision="fp16", keep_fp32=list(keep_fp32)))
    with atomic_path(out) as tmp:
        onnx.save(half, str(tmp))
        onnx.checker.check_model(str(tmp))


class _CalibrationReader:
    """onnxruntime CalibrationDataReader over uint8 images, fed one at a time as the graph
    takes them (normalized, or as they are for rgb8 graphs).

    ``set_range`` lets the quantizer calibrate in strides (``CalibStridedMinMax``): ranges are
    merged after every stride instead of holding every activation of every image (4.4 GB for
    eight 500x500 images through full-width FCN-8s).
    """

    def __init__(self, images: Sequence[np.ndarray], meta):
        self.images, self.meta = images, meta
        self.set_range(0, len(images))

    def __len__(self):
        return len(self.images)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next = iter(range(start_index, end_index))

    def get_next(self):
        i = next(self._next, None)
        return (None if i is None
                else {"input": model_input(self.images[i][None], self.meta)})


# x86 CPUs without VNNI multiply uint8 x int8 pairs into saturating int16 sums (vpmaddubsw):
# full-range 8-bit weights can overflow them, so onnxruntime and OpenVINO round differently
# from the graph's exact Q/DQ arithmetic and from each other; 7-bit weights cannot saturate.


def quantize_int8(src: str | Path, out: str | Path, calibration: Sequence[np.ndarray],
                  method: str = "minmax", scheme: str = "s8s8", keep_fp32: Sequence[str] = (),
                  only: Sequence[str] = (), keep_fp16: Sequence[str] = (),
                  upsample: str = "fp16", preprocessed: bool = False,
                  reduce_range: bool = False) -> None:
    """Static INT8 Q/DQ quantization, per-channel symmetric weights, calibrated on images.
    ``reduce_range``: 7-bit weights, for x86 CPUs without VNNI.
    ``keep_fp32``/``keep_fp16`` nodes stay float; ``only`` limits INT8 to the named nodes
    (per-layer sensitivity). Upsampling (ConvTranspose) layers run in FP16 (``upsample="fp16"``)
    or INT8 with one weight scale per tensor (``"int8"``). ``preprocessed``: ``src`` went
    through ``pre_process`` already (callers quantizing one graph many times)."""
    from onnxruntime.quantization import (  # INT8 only: loads ORT's Python quantizer
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    check_int8_options(method, scheme, upsample)
    if not len(calibration):
        raise ExportError("INT8 calibration needs at least one image")
    graph = load_onnx(src, load_weights=False)
    meta = metadata_of(graph, src)
    _check_nodes(graph, [*keep_fp32, *only])
    _check_nodes(graph, keep_fp16, convs_only=True)
    both = set(keep_fp32) & set(keep_fp16)
    if both:
        raise OptionError(f"layer {sorted(both)[0]!r} is in both --keep-fp32 and --keep-fp16")
    deconvs = [n for n in graph.graph.node if n.op_type == "ConvTranspose"]
    if upsample == "fp16":
        keep_fp16 = [*keep_fp16, *(n.name for n in deconvs
                                   if n.name not in [*keep_fp32, *only, *keep_fp16])]
    # The output head (softmax, argmax) stays float: INT8 probabilities would tie the argmax.
    # An rgb8 graph's preprocessing stays FP32: it feeds conv1_1's own Q/DQ pair.
    head = [n.name for n in graph.graph.node if n.op_type in ("Softmax", "ArgMax", "ReduceMax")]
    head += preprocess_nodes(graph)
    signed = scheme == "s8s8"
    with tempfile.TemporaryDirectory() as work, atomic_path(out) as tmp:
        pre = Path(src) if preprocessed else Path(work) / "pre.onnx"
        if not preprocessed:
            pre_process(src, pre)
        quantize_static(
            str(pre), str(tmp), _CalibrationReader(calibration, meta),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8 if signed else QuantType.QUInt8,
            weight_type=QuantType.QInt8, reduce_range=reduce_range,
            nodes_to_exclude=[*keep_fp32, *keep_fp16, *head],
            nodes_to_quantize=list(only) or None,
            calibrate_method={"minmax": CalibrationMethod.MinMax,
                              "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[method],
            # TensorRT rejects int32 bias DequantizeLinear nodes: S8S8 keeps biases float.
            # ConvTranspose weights get one scale per tensor: per-channel (axis 1) support for
            # them is unclear in TensorRT.
            extra_options={"ActivationSymmetric": signed, "WeightSymmetric": True,
                           "CalibTensorRangeSymmetric": signed, "QuantizeBias": not signed,
                           "CalibStridedMinMax": 1,
                           "TensorQuantOverrides": {n.input[1]: [{"symmetric": True}]
                                                    for n in deconvs}})
        model = onnx.load(str(tmp))
        for node in [n for n in model.graph.node if n.name in keep_fp16]:
            _conv_in_fp16(model, node)
        used = {i for n in model.graph.node for i in n.input}  # FP32 originals of FP16 copies
        kept = [i for i in model.graph.initializer if i.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
        prune_opsets(model)
        write_metadata(model, meta.replace(
            precision="int8", int8_scheme=scheme,
            calibration={"method": method, "samples": len(calibration),
                         "reduce_range": reduce_range},
            keep_fp32=list(keep_fp32), keep_fp16=list(keep_fp16), upsample=upsample))
        onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp))


def prune_opsets(model: onnx.ModelProto) -> None:
    """Keep only the opset domains some node uses (the default one always): the quantizer
    declares ai.onnx.ml, com.microsoft, ... whether used or not, which misstates what a
    runtime must support to run the file."""
    used = {"", *_node_domains(model.graph.node)}
    for function in model.functions:  # a called function's domain is its caller's node.domain
        used |= _node_domains(function.node)
    keep = [o for o in model.opset_import if (o.domain if o.domain != "ai.onnx" else "") in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def _node_domains(nodes) -> set[str]:
    return {d for node in nodes for d in _domains_of(node)}


def _domains_of(node: onnx.NodeProto) -> set[str]:
    """``node``'s domain and those of the nodes of its subgraphs (If, Loop, Scan bodies)."""
    domains = {node.domain if node.domain != "ai.onnx" else ""}
    for attr in node.attribute:
        for graph in [attr.g] if attr.HasField("g") else list(attr.graphs):
            domains |= _node_domains(graph.node)
    return domains


def pre_process(src: str | Path, out: str | Path) -> None:
    """Shape inference and constant folding, as onnxruntime's quantizer recommends before
    quantizing (9 s for full-width FCN-8s here: worth doing once per graph)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process  # INT8 only

    quant_pre_process(str(src), str(out), skip_symbolic_shape=True)


def _conv_in_fp16(model: onnx.ModelProto, node) -> None:
    """Run one float Conv/ConvTranspose in FP16: FP16 copies of its weights (copies: the
    optimizer may share equal initializers, e.g. zero biases, between layers), a Cast to FP16
    before it and one back to FP32 after it, so its neighbours (Q/DQ) are untouched."""
    weights = {i.name: i for i in model.graph.initializer}
    casts = []
    for k, name in enumerate(node.input):
        node.input[k] = f"{name}_{node.name}_fp16"
        if name in weights:
            model.graph.initializer.append(numpy_helper.from_array(
                numpy_helper.to_array(weights[name]).astype(np.float16), node.input[k]))
        else:  # the data, or a weight computed in the graph (e.g. a dequantized shared bias)
            casts.append(onnx.helper.make_node("Cast", [name], [node.input[k]],
                                               to=onnx.TensorProto.FLOAT16,
                                               name=f"{node.name}_input{k}_to_fp16"))
    y = node.output[0]
    node.output[0] = f"{y}_fp16"
    at = list(model.graph.node).index(node)
    model.graph.node.insert(at + 1, onnx.helper.make_node(
        "Cast", [node.output[0]], [y], name=f"{node.name}_to_fp32", to=onnx.TensorProto.FLOAT))
    for cast in casts:
        model.graph.node.insert(at, cast)


def quantized_ops(path: str | Path) -> dict[str, list[str]]:
    """Conv/ConvTranspose node names split into ``int8`` (activation and weight both come from
    DequantizeLinear nodes), ``fp16`` (FP16 weights) and ``float`` (FP32). A runtime may still
    leave an int8 node unfused."""
    model = load_onnx(path)
    produced_by = {o: n for n in model.graph.node for o in n.output}
    half = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    split = {"int8": [], "fp16": [], "float": []}
    for node in _convs(model):
        int8 = all(i in produced_by and produced_by[i].op_type == "DequantizeLinear"
                   for i in node.input[:2])
        split["int8" if int8 else "fp16" if node.input[1] in half else "float"].append(node.name)
    return split


def conv_layers(path: str | Path) -> list[str]:
    """Names of the Conv/ConvTranspose nodes of an ONNX file, in graph order."""
    return [n.name for n in _convs(load_onnx(path, load_weights=False))]


def _convs(model: onnx.ModelProto) -> list:
    return [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]


def _check_nodes(model: onnx.ModelProto, names: Sequence[str], convs_only: bool = False) -> None:
    convs = sorted(n.name for n in _convs(model))
    known = convs if convs_only else {n.name for n in model.graph.node}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise OptionError(f"unknown {'conv ' if convs_only else ''}layer {unknown[0]!r}; conv "
                          f"layers are: {', '.join(convs)}")


def scan_nonfinite(path: str | Path, images: Sequence[np.ndarray]) -> None:
    """Run ``path`` in onnxruntime on ``images`` (uint8 HxWx3) with every node's output exposed;
    ExportError naming the first tensor, in graph order, that holds NaN or Inf, and the node
    to keep in higher precision. Intermediates count: an FP16 overflow can vanish from the
    outputs (e.g. behind a zero-initialised score layer) and still be wrong."""
    import onnxruntime as ort  # 0.2-0.3 s: only when a graph is scanned

    model = load_onnx(path)
    meta = metadata_of(model, path)
    inferred = onnx.shape_inference.infer_shapes(model)
    typed = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    names = [n.output[0] for n in model.graph.node if n.output and n.output[0] in typed]
    del inferred.graph.output[:]
    inferred.graph.output.extend(typed[n] for n in names)
    with tempfile.TemporaryDirectory() as work:
        onnx.save(inferred, str(Path(work) / "probe.onnx"))
        session = ort.InferenceSession(str(Path(work) / "probe.onnx"),
                                       providers=["CPUExecutionProvider"])
    producer = {n.output[0]: n for n in model.graph.node if n.output}
    for i, image in enumerate(images):
        x = model_input(image[None], meta)
        for name, value in zip(names, session.run(names, {"input": x})):
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                node = producer[name]
                raise ExportError(f"{path}: NaN or Inf on calibration image {i} (first in {name}, "
                                  f"the output of {node.op_type} node {node.name}); keep it in "
                                  f"higher precision with --keep-fp32 {node.name}")
