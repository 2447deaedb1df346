"""Reading an ONNX file's metadata and graph I/O without parsing its weights.

An ONNX file is one serialized ``ModelProto``. Its top-level fields are walked with the
protobuf wire format: ``metadata_props`` (field 14) is decoded, the graph (field 7) is
entered only for its inputs (11) and outputs (12), and everything else, the initializers
above all (hundreds of MB), is skipped with a seek. No onnx or protobuf import needed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from fcn_deploy.errors import ArtifactError

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MODEL_GRAPH, _MODEL_PROPS = 7, 14
_GRAPH_INPUT, _GRAPH_OUTPUT = 11, 12
# TensorProto.DataType numbers -> numpy dtype names.
ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool",
              10: "float16", 11: "float64", 16: "bfloat16"}


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: name, element type and dims (ints, or names of free dims)."""

    name: str
    dtype: str
    dims: tuple[int | str, ...]


def read_props(path: str | Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as key -> value strings, weights left unread."""
    with _open(path) as f:
        props = {}
        for field, start, size in _fields(f, 0, _size(f), path):
            if field == _MODEL_PROPS:
                entry = dict(_decoded(_message_strings, _read(f, start, size, path), path))
                props[entry.get(1, "")] = entry.get(2, "")
        return props


def read_io(path: str | Path) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """(inputs, outputs) of an ONNX file's graph, initializers left unread."""
    with _open(path) as f:
        inputs, outputs = [], []
        for field, start, size in _fields(f, 0, _size(f), path):
            if field != _MODEL_GRAPH:
                continue
            for sub, s, n in _fields(f, start, start + size, path):
                if sub in (_GRAPH_INPUT, _GRAPH_OUTPUT):
                    info = _decoded(_value_info, _read(f, s, n, path), path)
                    (inputs if sub == _GRAPH_INPUT else outputs).append(info)
        return inputs, outputs


def _decoded(decode, data: bytes, path):
    try:
        value = decode(data)
        return list(value) if isinstance(value, Iterator) else value
    except ValueError as e:  # bad varints, wire types, UTF-8
        raise ArtifactError(f"{path} is not a readable ONNX model ({e})") from e


def _open(path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as e:
        raise ArtifactError(f"cannot read {path}: {e.strerror or e}") from e


def _size(f: BinaryIO) -> int:
    return os.fstat(f.fileno()).st_size


def _read(f: BinaryIO, start: int, size: int, path) -> bytes:
    f.seek(start)
    data = f.read(size)
    if len(data) != size:
        raise ArtifactError(f"{path} is not a readable ONNX model (cut off)")
    return data


def _fields(f: BinaryIO, start: int, end: int, path) -> Iterator[tuple[int, int, int]]:
    """(field number, offset, length) of each length-delimited field in [start, end) of the
    file; other wire types are skipped. The file position is free for the caller between
    items: each step seeks to where it left off."""
    pos = start
    while pos < end:
        f.seek(pos)
        key, pos = _file_varint(f, pos, path)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, pos = _file_varint(f, pos, path)
        elif wire == _I64:
            pos += 8
        elif wire == _I32:
            pos += 4
        elif wire == _LEN:
            size, pos = _file_varint(f, pos, path)
            if pos + size > end:
                raise ArtifactError(f"{path} is not a readable ONNX model (field {field} runs "
                                    "past its end)")
            yield field, pos, size
            pos += size
        else:
            raise ArtifactError(f"{path} is not a readable ONNX model (wire type {wire})")
    if pos != end:
        raise ArtifactError(f"{path} is not a readable ONNX model (cut off)")


def _file_varint(f: BinaryIO, pos: int, path) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = f.read(1)
        if not byte or shift > 63:
            raise ArtifactError(f"{path} is not a readable ONNX model (bad varint)")
        value |= (byte[0] & 0x7F) << shift
        shift, pos = shift + 7, pos + 1
        if byte[0] < 0x80:
            return value, pos


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("bad varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        shift, pos = shift + 7, pos + 1
        if byte < 0x80:
            return value, pos


def _message(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field, value) pairs of an in-memory message: ints for varints, bytes for the rest."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(data, pos)
        elif wire in (_I64, _I32):
            width = 8 if wire == _I64 else 4
            value, pos = data[pos:pos + width], pos + width
        elif wire == _LEN:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f"wire type {wire}")
        yield field, value


def _message_strings(data: bytes) -> Iterator[tuple[int, str]]:
    for field, value in _message(data):
        if isinstance(value, bytes):
            yield field, value.decode("utf-8", "replace")


def _value_info(data: bytes) -> TensorInfo:
    """ValueInfoProto: name (1), type (2) -> TypeProto.tensor_type (1) -> elem_type (1),
    shape (2) -> dim (1) -> dim_value (1) or dim_param (2)."""
    name, elem, dims = "", 0, []
    for field, value in _message(data):
        if field == 1:
            name = value.decode()
        elif field == 2:
            tensor = next((v for f, v in _message(value) if f == 1), b"")
            for f, v in _message(tensor):
                if f == 1:
                    elem = v
                elif f == 2:
                    dims = [_dim(d) for g, d in _message(v) if g == 1]
    return TensorInfo(name, ELEM_TYPES.get(elem, f"type{elem}"), tuple(dims))


def _dim(data: bytes) -> int | str:
    for field, value in _message(data):
        if field == 1:
            return value
        if field == 2:
            return value.decode()
    return "?"
