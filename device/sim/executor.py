"""A small numpy ONNX executor with an FP16 mode that emulates the NPU's numerics.

FP16 mode: weights and the input are rounded to float16; every node's output is rounded to float16; convolutions
multiply fp16 values and accumulate in float32 (like the Cube unit) before rounding.  Arithmetic is done in
float32 arrays holding fp16-representable values, so BLAS does the heavy lifting.

Op set: Conv (group 1, dilations 1), ConvTranspose (kernel 2, stride 2, pads 0, group 1), Relu, LeakyRelu,
MaxPool / AveragePool (2x2 stride 2, no pads), Concat, Sigmoid, Add, Mul, BatchNormalization (inference),
Resize / Upsample (nearest, integer scale), Identity, Constant.  Anything else raises
:class:`UnsupportedOpError` naming the op.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..onnx_proto import Graph, Node

log = logging.getLogger(__name__)

__all__ = ["OnnxExecutor", "UnsupportedOpError", "SUPPORTED_OPS"]

_COL_BUDGET = 24 * 1024 * 1024  # bytes of im2col matrix per chunk


class UnsupportedOpError(ValueError):
    """The graph uses an op (or op configuration) the executor does not implement."""


def _fp16(x: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest float16 value (ties to even), returned as float32.

    Fast path on the bit pattern for fp16-normal magnitudes; zeros stay; everything else (fp16 subnormals,
    overflow to inf, NaN) goes through numpy's float16 conversion.  Bit-exact with ``astype(float16)``.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32)
    r = (u >> 13) & 1
    r += 0x0FFF
    r += u
    r &= 0xFFFFE000
    out = r.view(np.float32)
    e = (u >> 23) & 0xFF
    outside = (e - 113) > 28  # biased exponent outside [113, 141] (zero wraps around and is caught too)
    if outside.any():
        idx = np.flatnonzero(outside & (e != 0))
        if idx.size:
            with np.errstate(over="ignore"):
                out.reshape(-1)[idx] = x.reshape(-1)[idx].astype(np.float16).astype(np.float32)
    return out


# ops whose outputs are exact copies/selections of fp16 input values: no rounding needed after them
_VALUE_PRESERVING = {"Relu", "MaxPool", "Concat", "Identity", "Resize", "Upsample"}


def _ints(node: Node, key: str, default: List[int]) -> List[int]:
    return [int(v) for v in node.attrs.get(key, default)]


def _conv2d(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray], node: Node) -> np.ndarray:
    """x (N,C,H,W) float32, w (M,C,kh,kw): im2col by row chunks + one GEMM per chunk (fp32 accumulate)."""
    if int(node.attrs.get("group", 1)) != 1:
        raise UnsupportedOpError("Conv %r: group != 1 is not supported" % node.name)
    if any(d != 1 for d in _ints(node, "dilations", [1, 1])):
        raise UnsupportedOpError("Conv %r: dilations != 1 are not supported" % node.name)
    if node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
        raise UnsupportedOpError("Conv %r: auto_pad is not supported (use explicit pads)" % node.name)
    m, c, kh, kw = w.shape
    n, cx, h, wd = x.shape
    if cx != c:
        raise ValueError("Conv %r: input has %d channels, weights expect %d" % (node.name, cx, c))
    pt, pl, pb, pr = _ints(node, "pads", [0, 0, 0, 0])
    sh, sw = _ints(node, "strides", [1, 1])
    ho = (h + pt + pb - kh) // sh + 1
    wo = (wd + pl + pr - kw) // sw + 1
    w2 = w.reshape(m, c * kh * kw)
    out = np.empty((n, m, ho, wo), dtype=np.float32)
    rows = max(1, min(ho, _COL_BUDGET // max(1, c * kh * kw * wo * 4)))
    for i in range(n):
        xp = np.pad(x[i], ((0, 0), (pt, pb), (pl, pr))) if (pt or pb or pl or pr) else x[i]
        xp = np.ascontiguousarray(xp)
        s_c, s_h, s_w = xp.strides
        if kh == 1 and kw == 1 and sh == 1 and sw == 1:
            out[i] = (w2 @ xp.reshape(c, -1)).reshape(m, ho, wo)
        else:
            for r0 in range(0, ho, rows):
                r1 = min(ho, r0 + rows)
                view = as_strided(xp[:, r0 * sh:, :], shape=(c, kh, kw, r1 - r0, wo),
                                  strides=(s_c, s_h, s_w, s_h * sh, s_w * sw), writeable=False)
                col = view.reshape(c * kh * kw, (r1 - r0) * wo)
                out[i, :, r0:r1, :] = (w2 @ col).reshape(m, r1 - r0, wo)
        if b is not None:
            out[i] += b.reshape(m, 1, 1)
    return out


def _conv_transpose(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray], node: Node) -> np.ndarray:
    """Kernel 2, stride 2, no padding: four GEMMs writing interleaved output pixels."""
    cin, m, kh, kw = w.shape
    if (kh, kw) != (2, 2) or _ints(node, "strides", [1, 1]) != [2, 2] or any(_ints(node, "pads", [0] * 4)) \
            or int(node.attrs.get("group", 1)) != 1 or any(_ints(node, "output_padding", [0, 0])) \
            or any(d != 1 for d in _ints(node, "dilations", [1, 1])):
        raise UnsupportedOpError("ConvTranspose %r: only kernel 2x2, stride 2, pads 0, group 1 is supported"
                                 % node.name)
    n, c, h, wd = x.shape
    out = np.empty((n, m, 2 * h, 2 * wd), dtype=np.float32)
    for i in range(n):
        flat = x[i].reshape(c, h * wd)
        for ky in range(2):
            for kx in range(2):
                out[i, :, ky::2, kx::2] = (w[:, :, ky, kx].T @ flat).reshape(m, h, wd)
        if b is not None:
            out[i] += b.reshape(m, 1, 1)
    return out


def _pool(x: np.ndarray, node: Node, kind: str) -> np.ndarray:
    if _ints(node, "kernel_shape", []) != [2, 2] or _ints(node, "strides", [1, 1]) != [2, 2] \
            or any(_ints(node, "pads", [0] * 4)) or int(node.attrs.get("ceil_mode", 0)):
        raise UnsupportedOpError("%s %r: only 2x2 stride 2 without padding is supported" % (node.op_type, node.name))
    h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
    a, b = x[:, :, 0:h:2, 0:w:2], x[:, :, 0:h:2, 1:w:2]
    c, d = x[:, :, 1:h:2, 0:w:2], x[:, :, 1:h:2, 1:w:2]
    if kind == "max":
        return np.maximum(np.maximum(a, b), np.maximum(c, d))
    return ((a + b) + (c + d)) * np.float32(0.25)


def _nearest_upsample(x: np.ndarray, scales: np.ndarray, node: Node) -> np.ndarray:
    if len(scales) != 4 or scales[0] != 1 or scales[1] != 1:
        raise UnsupportedOpError("%s %r: only spatial scaling of NCHW is supported" % (node.op_type, node.name))
    fy, fx = float(scales[2]), float(scales[3])
    if fy != int(fy) or fx != int(fx) or fy < 1 or fx < 1:
        raise UnsupportedOpError("%s %r: only integer nearest scales are supported, got %s"
                                 % (node.op_type, node.name, list(scales)))
    return np.repeat(np.repeat(x, int(fy), axis=2), int(fx), axis=3)


SUPPORTED_OPS = ("Conv", "ConvTranspose", "Relu", "LeakyRelu", "MaxPool", "AveragePool", "Concat", "Sigmoid",
                 "Add", "Mul", "BatchNormalization", "Resize", "Upsample", "Identity", "Constant")


class OnnxExecutor:
    """Run a :class:`Graph` with numpy in ``fp32`` or ``fp16`` (NPU-emulating) precision."""

    def __init__(self, graph: Graph, precision: str = "fp32") -> None:
        if precision not in ("fp32", "fp16"):
            raise ValueError("precision must be fp32 or fp16, got %r" % precision)
        unsupported = sorted({n.op_type for n in graph.nodes if n.op_type not in SUPPORTED_OPS})
        if unsupported:
            raise UnsupportedOpError("numpy executor: unsupported ONNX op(s): %s (supported: %s)"
                                     % (", ".join(unsupported), ", ".join(SUPPORTED_OPS)))
        self.graph = graph
        self.precision = precision
        self._q: Callable[[np.ndarray], np.ndarray] = _fp16 if precision == "fp16" else (lambda a: a)
        self._consts: Dict[str, np.ndarray] = {}
        for name, arr in graph.initializers.items():
            if arr.dtype.kind == "f":
                self._consts[name] = self._q(np.ascontiguousarray(arr, dtype=np.float32))
            else:
                self._consts[name] = arr
        self._bn: Dict[str, tuple] = {}

    def run(self, x: np.ndarray) -> np.ndarray:
        """Execute the graph on its single input; returns the single output as float32."""
        if len(self.graph.inputs) != 1 or len(self.graph.outputs) != 1:
            raise UnsupportedOpError("numpy executor: graphs need exactly one input and one output")
        values: Dict[str, np.ndarray] = dict(self._consts)
        values[self.graph.inputs[0].name] = self._q(np.ascontiguousarray(x, dtype=np.float32))
        for node in self.graph.nodes:
            try:
                args = [values[name] if name else None for name in node.inputs]
            except KeyError as exc:
                raise ValueError("node %r (%s): input %s is not produced by any earlier node"
                                 % (node.name, node.op_type, exc))
            result = self._op(node, args)
            if result.dtype == np.float32 and node.op_type not in _VALUE_PRESERVING:
                result = self._q(result)
            values[node.outputs[0]] = result
        return np.asarray(values[self.graph.outputs[0].name], dtype=np.float32)

    def _op(self, node: Node, a: List[Optional[np.ndarray]]) -> np.ndarray:
        op = node.op_type
        if op == "Conv":
            return _conv2d(a[0], a[1], a[2] if len(a) > 2 else None, node)  # type: ignore[arg-type]
        if op == "ConvTranspose":
            return _conv_transpose(a[0], a[1], a[2] if len(a) > 2 else None, node)  # type: ignore[arg-type]
        if op == "Relu":
            return np.maximum(a[0], 0, dtype=np.float32)  # type: ignore[call-overload]
        if op == "LeakyRelu":
            alpha = np.float32(node.attrs.get("alpha", 0.01))
            x = a[0]
            return np.where(x >= 0, x, x * alpha).astype(np.float32)  # type: ignore[operator]
        if op == "Sigmoid":
            return (1.0 / (1.0 + np.exp(-a[0].astype(np.float32)))).astype(np.float32)  # type: ignore[union-attr]
        if op == "MaxPool":
            return _pool(a[0], node, "max")  # type: ignore[arg-type]
        if op == "AveragePool":
            return _pool(a[0], node, "avg")  # type: ignore[arg-type]
        if op == "Concat":
            return np.concatenate(a, axis=int(node.attrs.get("axis", 1))).astype(np.float32)  # type: ignore
        if op == "Add":
            return np.add(a[0], a[1], dtype=np.float32)
        if op == "Mul":
            return np.multiply(a[0], a[1], dtype=np.float32)
        if op == "Identity":
            return a[0]  # type: ignore[return-value]
        if op == "Constant":
            value = node.attrs.get("value")
            if not isinstance(value, np.ndarray):
                raise UnsupportedOpError("Constant %r: only 'value' tensors are supported" % node.name)
            return self._q(value.astype(np.float32)) if value.dtype.kind == "f" else value
        if op == "BatchNormalization":
            return self._batchnorm(node, a)
        if op == "Upsample":
            if node.attrs.get("mode", "nearest") != "nearest":
                raise UnsupportedOpError("Upsample %r: only mode nearest is supported" % node.name)
            scales = a[1] if len(a) > 1 and a[1] is not None else np.asarray(node.attrs.get("scales", []))
            return _nearest_upsample(a[0], np.asarray(scales, dtype=np.float64), node)  # type: ignore[arg-type]
        if op == "Resize":
            return self._resize(node, a)
        raise UnsupportedOpError("numpy executor: unsupported ONNX op %s" % op)

    def _batchnorm(self, node: Node, a: List[Optional[np.ndarray]]) -> np.ndarray:
        key = node.outputs[0]
        if key not in self._bn:
            scale, bias, mean, var = (np.asarray(v, dtype=np.float64) for v in a[1:5])
            eps = float(node.attrs.get("epsilon", 1e-5))
            mul = scale / np.sqrt(var + eps)
            add = bias - mean * mul
            shape = (1, -1, 1, 1)
            self._bn[key] = (mul.astype(np.float32).reshape(shape), add.astype(np.float32).reshape(shape))
        mul32, add32 = self._bn[key]
        return (a[0] * mul32 + add32).astype(np.float32)  # type: ignore[operator]

    def _resize(self, node: Node, a: List[Optional[np.ndarray]]) -> np.ndarray:
        mode = node.attrs.get("mode", "nearest")
        if mode != "nearest":
            raise UnsupportedOpError("Resize %r: only mode nearest is supported, got %r" % (node.name, mode))
        ctm = node.attrs.get("coordinate_transformation_mode", "half_pixel")
        x = a[0]
        scales = a[2] if len(a) > 2 and a[2] is not None and a[2].size else None
        if scales is None and len(a) > 3 and a[3] is not None and a[3].size:
            sizes = np.asarray(a[3], dtype=np.int64)
            scales = sizes.astype(np.float64) / np.asarray(x.shape, dtype=np.float64)  # type: ignore[union-attr]
        if scales is None:
            raise UnsupportedOpError("Resize %r: needs scales or sizes" % node.name)
        if ctm in ("tf_crop_and_resize", "align_corners"):
            raise UnsupportedOpError("Resize %r: coordinate_transformation_mode %s is not supported" % (node.name, ctm))
        # for integer upscaling nearest with asymmetric/half_pixel/align_corners-free modes is plain replication
        return _nearest_upsample(x, np.asarray(scales, dtype=np.float64), node)  # type: ignore[arg-type]
