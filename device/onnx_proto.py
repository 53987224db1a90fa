"""Minimal pure-Python ONNX (protobuf wire format) encoder/decoder.

Only the parts of ``onnx.proto`` that vessel-seg needs: a ModelProto with one GraphProto holding
nodes, float/int initializers and tensor inputs/outputs.  No dependency on the ``onnx`` package.

Field numbers follow onnx/onnx.proto (IR version 6, opset 11):
ModelProto(ir_version=1, producer_name=2, producer_version=3, graph=7, opset_import=8),
GraphProto(node=1, name=2, initializer=5, input=11, output=12, value_info=13),
NodeProto(input=1, output=2, name=3, op_type=4, attribute=5, domain=7),
AttributeProto(name=1, f=2, i=3, s=4, t=5, floats=7, ints=8, strings=9, type=20),
TensorProto(dims=1, data_type=2, float_data=4, int32_data=5, int64_data=7, name=8, raw_data=9,
double_data=10), ValueInfoProto(name=1, type=2), TypeProto(tensor_type=1),
TypeProto.Tensor(elem_type=1, shape=2), TensorShapeProto(dim=1), Dimension(dim_value=1, dim_param=2).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Tuple, Union

import numpy as np

__all__ = [
    "ValueInfo", "Node", "Graph", "OnnxError", "encode_model", "decode_model",
    "load_model", "save_model", "IR_VERSION",
]

IR_VERSION = 6

# TensorProto.DataType <-> numpy
_ONNX_TO_NP = {
    1: np.dtype("<f4"), 2: np.dtype("u1"), 3: np.dtype("i1"), 4: np.dtype("<u2"), 5: np.dtype("<i2"),
    6: np.dtype("<i4"), 7: np.dtype("<i8"), 9: np.dtype("bool"), 10: np.dtype("<f2"),
    11: np.dtype("<f8"), 12: np.dtype("<u4"), 13: np.dtype("<u8"),
}
_NP_TO_ONNX = {v: k for k, v in _ONNX_TO_NP.items()}

# AttributeProto.AttributeType
ATTR_FLOAT, ATTR_INT, ATTR_STRING, ATTR_TENSOR = 1, 2, 3, 4
ATTR_FLOATS, ATTR_INTS, ATTR_STRINGS = 6, 7, 8


class OnnxError(ValueError):
    """Raised for data that is not a (supported) ONNX model."""


@dataclass
class ValueInfo:
    """A graph input/output: tensor name, static shape and ONNX element type (1 = float32)."""

    name: str
    shape: List[int]
    elem_type: int = 1


@dataclass
class Node:
    """One graph node; ``attrs`` maps attribute names to int/float/str/bytes/lists/np.ndarray."""

    op_type: str
    inputs: List[str]
    outputs: List[str]
    name: str = ""
    attrs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """A whole model: nodes in topological order, initializers by name, inputs/outputs."""

    name: str
    nodes: List[Node]
    initializers: Dict[str, np.ndarray]
    inputs: List[ValueInfo]
    outputs: List[ValueInfo]
    opset: int = 11
    producer: str = "vessel-seg"


# ----------------------------------------------------------------------------- wire encoding

def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 negative numbers: two's complement, 10 bytes
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _key(field_no: int, wire_type: int) -> bytes:
    return _varint((field_no << 3) | wire_type)


def _f_varint(field_no: int, value: int) -> bytes:
    return _key(field_no, 0) + _varint(int(value))


def _f_bytes(field_no: int, value: Union[bytes, str]) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    return _key(field_no, 2) + _varint(len(value)) + value


def _f_float(field_no: int, value: float) -> bytes:
    return _key(field_no, 5) + struct.pack("<f", float(value))


def _tensor_proto(name: str, array: np.ndarray) -> bytes:
    arr = np.asarray(array)
    native = arr.dtype.newbyteorder("=") if arr.dtype.byteorder == ">" else arr.dtype
    if native not in _NP_TO_ONNX:
        raise OnnxError("initializer %r: unsupported dtype %s" % (name, arr.dtype))
    data_type = _NP_TO_ONNX[native]
    raw = np.ascontiguousarray(arr, dtype=_ONNX_TO_NP[data_type]).tobytes()
    out = b"".join(_f_varint(1, d) for d in arr.shape)
    out += _f_varint(2, data_type)
    if name:
        out += _f_bytes(8, name)
    out += _f_bytes(9, raw)
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _attribute_proto(name: str, value: Any) -> bytes:
    out = _f_bytes(1, name)
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if _is_int(value):
        return out + _f_varint(3, int(value)) + _f_varint(20, ATTR_INT)
    if isinstance(value, (float, np.floating)):
        return out + _f_float(2, float(value)) + _f_varint(20, ATTR_FLOAT)
    if isinstance(value, (str, bytes)):
        return out + _f_bytes(4, value) + _f_varint(20, ATTR_STRING)
    if isinstance(value, np.ndarray):
        return out + _f_bytes(5, _tensor_proto("", value)) + _f_varint(20, ATTR_TENSOR)
    if isinstance(value, (list, tuple)):
        items = list(value)
        if items and all(isinstance(v, (str, bytes)) for v in items):
            return out + b"".join(_f_bytes(9, v) for v in items) + _f_varint(20, ATTR_STRINGS)
        if all(_is_int(v) for v in items):
            packed = b"".join(_varint(int(v)) for v in items)
            return out + _f_bytes(8, packed) + _f_varint(20, ATTR_INTS)
        if all(isinstance(v, (int, float, np.integer, np.floating)) for v in items):
            packed = struct.pack("<%df" % len(items), *[float(v) for v in items])
            return out + _f_bytes(7, packed) + _f_varint(20, ATTR_FLOATS)
    raise OnnxError("attribute %r: unsupported value %r" % (name, value))


def _value_info_proto(vi: ValueInfo) -> bytes:
    dims = b"".join(_f_bytes(1, _f_varint(1, int(d))) for d in vi.shape)
    tensor_type = _f_varint(1, vi.elem_type) + _f_bytes(2, dims)
    type_proto = _f_bytes(1, tensor_type)
    return _f_bytes(1, vi.name) + _f_bytes(2, type_proto)


def _node_proto(node: Node) -> bytes:
    out = b"".join(_f_bytes(1, i) for i in node.inputs)
    out += b"".join(_f_bytes(2, o) for o in node.outputs)
    if node.name:
        out += _f_bytes(3, node.name)
    out += _f_bytes(4, node.op_type)
    for key in node.attrs:
        out += _f_bytes(5, _attribute_proto(key, node.attrs[key]))
    return out


def encode_model(graph: Graph) -> bytes:
    """Serialise ``graph`` as an ONNX ModelProto (IR version 6, default-domain opset ``graph.opset``)."""
    g = b"".join(_f_bytes(1, _node_proto(n)) for n in graph.nodes)
    g += _f_bytes(2, graph.name or "graph")
    for name, arr in graph.initializers.items():
        g += _f_bytes(5, _tensor_proto(name, arr))
    g += b"".join(_f_bytes(11, _value_info_proto(v)) for v in graph.inputs)
    g += b"".join(_f_bytes(12, _value_info_proto(v)) for v in graph.outputs)
    model = _f_varint(1, IR_VERSION)
    model += _f_bytes(2, graph.producer)
    model += _f_bytes(3, "1")
    model += _f_bytes(7, g)
    model += _f_bytes(8, _f_bytes(1, "") + _f_varint(2, graph.opset))
    return model


# ----------------------------------------------------------------------------- wire decoding

def _read_varint(data: bytes, pos: int) -> Tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise OnnxError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise OnnxError("varint too long")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _fields(data: bytes) -> Iterator[Tuple[int, int, Any]]:
    """Yield (field_no, wire_type, value): ints for varint/fixed, bytes for length-delimited."""
    pos = 0
    n = len(data)
    while pos < n:
        key, pos = _read_varint(data, pos)
        field_no, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 1:
            if pos + 8 > n:
                raise OnnxError("truncated fixed64")
            value = data[pos:pos + 8]
            pos += 8
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > n:
                raise OnnxError("truncated length-delimited field %d" % field_no)
            value = data[pos:pos + length]
            pos += length
        elif wire == 5:
            if pos + 4 > n:
                raise OnnxError("truncated fixed32")
            value = data[pos:pos + 4]
            pos += 4
        else:
            raise OnnxError("unsupported wire type %d" % wire)
        yield field_no, wire, value


def _packed_varints(value: Any, wire: int) -> List[int]:
    if wire == 0:
        return [_signed(value)]
    out = []
    pos = 0
    while pos < len(value):
        v, pos = _read_varint(value, pos)
        out.append(_signed(v))
    return out


def _packed_fixed(value: bytes, fmt: str, size: int) -> List[Any]:
    return list(struct.unpack("<%d%s" % (len(value) // size, fmt), value))


def _decode_tensor(data: bytes) -> Tuple[str, np.ndarray]:
    dims: List[int] = []
    data_type = 0
    name = ""
    raw = None
    floats: List[float] = []
    ints: List[int] = []
    doubles: List[float] = []
    for f, wire, v in _fields(data):
        if f == 1:
            dims.extend(_packed_varints(v, wire))
        elif f == 2:
            data_type = v
        elif f == 4:
            floats.extend(_packed_fixed(v, "f", 4) if wire == 2 else struct.unpack("<f", v))
        elif f in (5, 7):
            ints.extend(_packed_varints(v, wire))
        elif f == 8:
            name = v.decode("utf-8")
        elif f == 9:
            raw = bytes(v)
        elif f == 10:
            doubles.extend(_packed_fixed(v, "d", 8) if wire == 2 else struct.unpack("<d", v))
        elif f == 14 and v == 1:
            raise OnnxError("tensor %r uses external data (not supported)" % name)
    if data_type not in _ONNX_TO_NP:
        raise OnnxError("tensor %r: unsupported data type %d" % (name, data_type))
    dtype = _ONNX_TO_NP[data_type]
    if raw is not None:
        arr = np.frombuffer(raw, dtype=dtype).copy()
    elif data_type == 1:
        arr = np.array(floats, dtype=dtype)
    elif data_type == 11:
        arr = np.array(doubles, dtype=dtype)
    elif data_type == 10:  # float16 stored as uint16 bit patterns in int32_data
        arr = np.array(ints, dtype=np.uint16).view(np.float16)
    else:
        arr = np.array(ints, dtype=dtype)
    count = int(np.prod(dims)) if dims else 1
    if arr.size != count:
        raise OnnxError("tensor %r: %d values for shape %s" % (name, arr.size, dims))
    return name, arr.reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def _decode_attribute(data: bytes) -> Tuple[str, Any]:
    name = ""
    atype = 0
    f_val = 0.0
    i_val = 0
    s_val = b""
    t_val = None
    floats: List[float] = []
    ints: List[int] = []
    strings: List[bytes] = []
    for f, wire, v in _fields(data):
        if f == 1:
            name = v.decode("utf-8")
        elif f == 2:
            f_val = struct.unpack("<f", v)[0]
        elif f == 3:
            i_val = _signed(v)
        elif f == 4:
            s_val = bytes(v)
        elif f == 5:
            t_val = _decode_tensor(v)[1]
        elif f == 7:
            floats.extend(_packed_fixed(v, "f", 4) if wire == 2 else struct.unpack("<f", v))
        elif f == 8:
            ints.extend(_packed_varints(v, wire))
        elif f == 9:
            strings.append(bytes(v))
        elif f == 20:
            atype = v
    if atype == ATTR_FLOAT:
        return name, float(f_val)
    if atype == ATTR_INT:
        return name, int(i_val)
    if atype == ATTR_STRING:
        try:
            return name, s_val.decode("utf-8")
        except UnicodeDecodeError:
            return name, s_val
    if atype == ATTR_TENSOR:
        return name, t_val
    if atype == ATTR_FLOATS:
        return name, [float(x) for x in floats]
    if atype == ATTR_INTS:
        return name, [int(x) for x in ints]
    if atype == ATTR_STRINGS:
        return name, [s.decode("utf-8", "replace") for s in strings]
    raise OnnxError("attribute %r: unsupported attribute type %d" % (name, atype))


def _decode_node(data: bytes) -> Node:
    node = Node(op_type="", inputs=[], outputs=[])
    for f, _wire, v in _fields(data):
        if f == 1:
            node.inputs.append(v.decode("utf-8"))
        elif f == 2:
            node.outputs.append(v.decode("utf-8"))
        elif f == 3:
            node.name = v.decode("utf-8")
        elif f == 4:
            node.op_type = v.decode("utf-8")
        elif f == 5:
            key, value = _decode_attribute(v)
            node.attrs[key] = value
        elif f == 7 and v not in (b"", b"ai.onnx"):
            raise OnnxError("node %r: unsupported op domain %r" % (node.name, v.decode("utf-8", "replace")))
    return node


def _decode_value_info(data: bytes) -> ValueInfo:
    vi = ValueInfo(name="", shape=[], elem_type=0)
    for f, _w, v in _fields(data):
        if f == 1:
            vi.name = v.decode("utf-8")
        elif f == 2:
            for tf, _tw, tv in _fields(v):
                if tf != 1:
                    continue
                for sf, _sw, sv in _fields(tv):
                    if sf == 1:
                        vi.elem_type = sv
                    elif sf == 2:
                        for df, _dw, dv in _fields(sv):
                            if df == 1:
                                dim = -1
                                for xf, _xw, xv in _fields(dv):
                                    if xf == 1:
                                        dim = _signed(xv)
                                vi.shape.append(dim)
    return vi


def decode_model(data: bytes) -> Graph:
    """Parse ONNX ModelProto bytes into a :class:`Graph` (raises :class:`OnnxError` on bad data)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise OnnxError("decode_model expects bytes, got %s" % type(data).__name__)
    data = bytes(data)
    graph_bytes = None
    opset = 0
    producer = ""
    ir_version = 0
    for f, _w, v in _fields(data):
        if f == 1:
            ir_version = v
        elif f == 2:
            producer = v.decode("utf-8", "replace")
        elif f == 7:
            graph_bytes = v
        elif f == 8:
            domain = ""
            version = 0
            for of, _ow, ov in _fields(v):
                if of == 1:
                    domain = ov.decode("utf-8")
                elif of == 2:
                    version = ov
            if domain in ("", "ai.onnx"):
                opset = version
    if graph_bytes is None or ir_version == 0:
        raise OnnxError("not an ONNX model (no graph or ir_version)")
    graph = Graph(name="", nodes=[], initializers={}, inputs=[], outputs=[], opset=opset, producer=producer)
    for f, _w, v in _fields(graph_bytes):
        if f == 1:
            graph.nodes.append(_decode_node(v))
        elif f == 2:
            graph.name = v.decode("utf-8")
        elif f == 5:
            name, arr = _decode_tensor(v)
            graph.initializers[name] = arr
        elif f == 11:
            graph.inputs.append(_decode_value_info(v))
        elif f == 12:
            graph.outputs.append(_decode_value_info(v))
    # ONNX IR < 4 lists initializers among inputs too: keep only real inputs
    graph.inputs = [vi for vi in graph.inputs if vi.name not in graph.initializers]
    return graph


def save_model(graph: Graph, path: str) -> None:
    """Write ``encode_model(graph)`` to ``path``."""
    with open(path, "wb") as fh:
        fh.write(encode_model(graph))


def load_model(path: str) -> Graph:
    """Read and decode an ONNX file."""
    with open(path, "rb") as fh:
        return decode_model(fh.read())
