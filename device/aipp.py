"""AIPP (Ascend AI pre-processing) configuration parsing and a bit-faithful CPU model of it.

The config is the ATC ``--insert_op_conf`` text format::

    aipp_op {
      aipp_mode: static
      input_format: YUV420SP_U8   # comments start with '#'
      ...
    }

Supported: static AIPP on input 0 with ``input_format: YUV420SP_U8`` (NV12, or NV21 with
``rbuv_swap_switch: true``), CSC, per-channel normalisation.  Crop, padding, dynamic AIPP and other input
formats are rejected with a clear message.

Conversion (reference section 6.3): chroma is upsampled by 2x2 replication;
``out_k = (sum_j m_kj * (in_j - input_bias_j)) >> 8`` with an arithmetic (flooring) shift, then clamped to
[0, 255] (clamping is our documented assumption: the hardware's CSC output is an 8-bit value); then
``(x - mean_chn - min_chn) * var_reci_chn`` computed in FP16 (as on the NPU) or FP32.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Tuple, Union

import numpy as np

__all__ = ["AippConfig", "AippError", "parse_aipp_cfg", "load_aipp_cfg", "aipp_nv12_to_nchw",
           "default_aipp_cfg_text", "JPEG_FULL_RANGE_RGB_MATRIX", "JPEG_FULL_RANGE_BIAS"]

JPEG_FULL_RANGE_RGB_MATRIX = ((256, 0, 359), (256, -88, -183), (256, 454, 0))
JPEG_FULL_RANGE_BIAS = (0, 128, 128)
_VAR_RECI_255 = 0.00392156862745098

Number = Union[int, float]


class AippError(ValueError):
    """Invalid or unsupported AIPP configuration."""


_INT_KEYS = {"related_input_rank", "src_image_size_w", "src_image_size_h", "load_start_pos_w",
             "load_start_pos_h", "crop_size_w", "crop_size_h", "left_padding_size", "right_padding_size",
             "top_padding_size", "bottom_padding_size", "max_src_image_size"}
_INT_KEYS.update("matrix_r%dc%d" % (r, c) for r in range(3) for c in range(3))
_INT_KEYS.update("input_bias_%d" % i for i in range(3))
_INT_KEYS.update("output_bias_%d" % i for i in range(3))
_INT_KEYS.update("mean_chn_%d" % i for i in range(4))
_FLOAT_KEYS = {"min_chn_%d" % i for i in range(4)} | {"var_reci_chn_%d" % i for i in range(4)}
_FLOAT_KEYS.add("padding_value")
_BOOL_KEYS = {"csc_switch", "rbuv_swap_switch", "ax_swap_switch", "crop", "padding", "support_rotation",
              "single_line_mode"}
_NAME_KEYS = {"aipp_mode", "input_format"}
_KNOWN_KEYS = _INT_KEYS | _FLOAT_KEYS | _BOOL_KEYS | _NAME_KEYS

_TOKEN = re.compile(r'\s*(?:(\{)|(\})|(:)|("(?:[^"\\]|\\.)*")|([A-Za-z_][A-Za-z0-9_]*)|'
                    r'([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))')


@dataclass
class AippConfig:
    """Parsed static AIPP configuration (only what vessel-seg supports)."""

    input_format: str
    src_w: int
    src_h: int
    csc_switch: bool = False
    rbuv_swap: bool = False
    matrix: Tuple[Tuple[int, int, int], ...] = JPEG_FULL_RANGE_RGB_MATRIX
    input_bias: Tuple[int, int, int] = JPEG_FULL_RANGE_BIAS
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    min: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    var_reci: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    raw: Dict[str, Union[str, Number, bool]] = field(default_factory=dict)

    @property
    def nv12_shape(self) -> Tuple[int, int]:
        """Host buffer shape of one NV12 image: (H * 3 / 2, W) uint8."""
        return (self.src_h * 3 // 2, self.src_w)

    @property
    def nbytes(self) -> int:
        """Bytes of one NV12 input image."""
        return self.src_w * self.src_h * 3 // 2


def _tokenize(text: str) -> List[Tuple[str, str]]:
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    body = "\n".join(lines)
    tokens: List[Tuple[str, str]] = []
    pos = 0
    while pos < len(body):
        if body[pos:].strip() == "":
            break
        m = _TOKEN.match(body, pos)
        if not m or m.end() == pos:
            snippet = body[pos:pos + 20].strip()
            raise AippError("aipp.cfg: unexpected text near %r" % snippet)
        kinds = ("{", "}", ":", "str", "name", "num")
        for kind, value in zip(kinds, m.groups()):
            if value is not None:
                tokens.append((kind, value))
        pos = m.end()
    return tokens


def _convert(key: str, kind: str, value: str) -> Union[str, Number, bool]:
    if key in _BOOL_KEYS:
        if kind == "name" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if kind == "num" and value in ("0", "1"):
            return value == "1"
        raise AippError("aipp.cfg: %s must be true or false, got %r" % (key, value))
    if key in _INT_KEYS:
        if kind != "num" or not re.match(r"^[-+]?\d+$", value):
            raise AippError("aipp.cfg: %s must be an integer, got %r" % (key, value))
        return int(value)
    if key in _FLOAT_KEYS:
        if kind != "num":
            raise AippError("aipp.cfg: %s must be a number, got %r" % (key, value))
        return float(value)
    if kind == "str":
        return value[1:-1]
    return value


def _parse_blocks(text: str) -> List[Dict[str, Union[str, Number, bool]]]:
    tokens = _tokenize(text)
    blocks: List[Dict[str, Union[str, Number, bool]]] = []
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind != "name" or value != "aipp_op":
            raise AippError("aipp.cfg: expected 'aipp_op {', got %r" % value)
        if i + 1 >= len(tokens) or tokens[i + 1][0] != "{":
            raise AippError("aipp.cfg: expected '{' after aipp_op")
        i += 2
        block: Dict[str, Union[str, Number, bool]] = {}
        while True:
            if i >= len(tokens):
                raise AippError("aipp.cfg: missing '}' closing aipp_op")
            kind, value = tokens[i]
            if kind == "}":
                i += 1
                break
            if kind != "name":
                raise AippError("aipp.cfg: expected a key, got %r" % value)
            if value not in _KNOWN_KEYS:
                raise AippError("aipp.cfg: unknown key %r" % value)
            if i + 2 >= len(tokens) or tokens[i + 1][0] != ":":
                raise AippError("aipp.cfg: expected '%s: value'" % value)
            vkind, vtext = tokens[i + 2]
            if vkind not in ("name", "num", "str"):
                raise AippError("aipp.cfg: missing value for %r" % value)
            if value in block:
                raise AippError("aipp.cfg: key %r given twice" % value)
            block[value] = _convert(value, vkind, vtext)
            i += 3
        blocks.append(block)
    return blocks


def parse_aipp_cfg(text: str) -> AippConfig:
    """Parse and validate aipp.cfg text; raise :class:`AippError` saying what is wrong."""
    blocks = _parse_blocks(text)
    if not blocks:
        raise AippError("aipp.cfg: no aipp_op block")
    if len(blocks) > 1:
        raise AippError("aipp.cfg: %d aipp_op blocks; vessel-seg models have one input" % len(blocks))
    kv = blocks[0]
    mode = kv.get("aipp_mode", "static")
    if mode != "static":
        raise AippError("aipp.cfg: aipp_mode %r not supported (only static)" % mode)
    if int(kv.get("related_input_rank", 0)) != 0:
        raise AippError("aipp.cfg: related_input_rank must be 0 (single-input model)")
    if "input_format" not in kv:
        raise AippError("aipp.cfg: input_format is mandatory")
    fmt = kv["input_format"]
    if fmt != "YUV420SP_U8":
        raise AippError("aipp.cfg: input_format %r not supported; vessel-seg feeds YUV420SP_U8 (NV12)" % fmt)
    for flag in ("crop", "padding", "ax_swap_switch", "support_rotation", "single_line_mode"):
        if kv.get(flag):
            raise AippError("aipp.cfg: %s: true is not supported by vessel-seg" % flag)
    for key in ("src_image_size_w", "src_image_size_h"):
        if key not in kv:
            raise AippError("aipp.cfg: %s is required (the NV12 buffer size depends on it)" % key)
        val = int(kv[key])
        if val <= 0 or val % 2:
            raise AippError("aipp.cfg: %s must be a positive even number for YUV420SP_U8, got %d" % (key, val))
    for i in range(3):
        if int(kv.get("output_bias_%d" % i, 0)) != 0:
            raise AippError("aipp.cfg: output_bias_%d is for RGB->YUV conversion; not supported" % i)
    csc = bool(kv.get("csc_switch", False))
    if csc:
        missing = ["matrix_r%dc%d" % (r, c) for r in range(3) for c in range(3) if "matrix_r%dc%d" % (r, c) not in kv]
        if missing:
            raise AippError("aipp.cfg: csc_switch is true but %s missing (write the whole matrix)" % ", ".join(missing))
    matrix = tuple(tuple(int(kv.get("matrix_r%dc%d" % (r, c), 0)) for c in range(3)) for r in range(3))
    for r in range(3):
        for c in range(3):
            if not -32768 <= matrix[r][c] <= 32767:
                raise AippError("aipp.cfg: matrix_r%dc%d out of int16 range" % (r, c))
    bias = tuple(int(kv.get("input_bias_%d" % i, 0)) for i in range(3))
    for i, b in enumerate(bias):
        if not 0 <= b <= 255:
            raise AippError("aipp.cfg: input_bias_%d must be in [0, 255], got %d" % (i, b))
    mean = tuple(float(kv.get("mean_chn_%d" % i, 0)) for i in range(3))
    mins = tuple(float(kv.get("min_chn_%d" % i, 0.0)) for i in range(3))
    var = tuple(float(kv.get("var_reci_chn_%d" % i, 1.0)) for i in range(3))
    return AippConfig(input_format=str(fmt), src_w=int(kv["src_image_size_w"]), src_h=int(kv["src_image_size_h"]),
                      csc_switch=csc, rbuv_swap=bool(kv.get("rbuv_swap_switch", False)),
                      matrix=matrix, input_bias=bias,  # type: ignore[arg-type]
                      mean=mean, min=mins, var_reci=var, raw=dict(kv))  # type: ignore[arg-type]


def load_aipp_cfg(path: str) -> AippConfig:
    """Read and parse an aipp.cfg file."""
    with open(path, "r", encoding="utf-8") as fh:
        return parse_aipp_cfg(fh.read())


def _csc_uint8(nv12: np.ndarray, cfg: AippConfig) -> np.ndarray:
    """Integer CSC of one NV12/NV21 image -> (3, H, W) int32 values in [0, 255]."""
    h, w = cfg.src_h, cfg.src_w
    y = nv12[:h].astype(np.int32)
    uv = nv12[h:].reshape(h // 2, w // 2, 2).astype(np.int32)
    u, v = uv[..., 0], uv[..., 1]
    if cfg.rbuv_swap:
        u, v = v, u
    u = np.repeat(np.repeat(u, 2, axis=0), 2, axis=1)
    v = np.repeat(np.repeat(v, 2, axis=0), 2, axis=1)
    planes = (y, u, v)
    if not cfg.csc_switch:
        return np.stack(planes)
    centred = [p - b for p, b in zip(planes, cfg.input_bias)]
    out = np.empty((3, h, w), dtype=np.int32)
    for k in range(3):
        acc = cfg.matrix[k][0] * centred[0] + cfg.matrix[k][1] * centred[1] + cfg.matrix[k][2] * centred[2]
        out[k] = np.clip(acc >> 8, 0, 255)
    return out


def aipp_csc_rgb(nv12: np.ndarray, cfg: AippConfig) -> np.ndarray:
    """What AIPP's colour conversion makes of one NV12 image, as (H, W, 3) uint8 (before mean/scale):
    the image a model behind this AIPP really sees, for training on the same input."""
    arr = np.asarray(nv12, dtype=np.uint8).reshape(cfg.nv12_shape)
    return _csc_uint8(arr, cfg).transpose(1, 2, 0).astype(np.uint8, order="C")


def aipp_nv12_to_nchw(nv12: np.ndarray, cfg: AippConfig, precision: str = "fp16") -> np.ndarray:
    """Apply AIPP to one NV12 image (H*3/2, W) uint8 -> (1, 3, H, W) float16 (fp16) or float32 (fp32)."""
    arr = np.asarray(nv12)
    if arr.dtype != np.uint8:
        raise ValueError("AIPP input must be uint8 NV12, got %s" % arr.dtype)
    if arr.shape != cfg.nv12_shape:
        if arr.size != cfg.nbytes:
            raise ValueError("AIPP input must have shape %s, got %s" % (cfg.nv12_shape, arr.shape))
        arr = arr.reshape(cfg.nv12_shape)
    if precision not in ("fp16", "fp32"):
        raise ValueError("precision must be 'fp16' or 'fp32', got %r" % precision)
    dtype = np.float16 if precision == "fp16" else np.float32
    csc = _csc_uint8(arr, cfg)
    out = np.empty((1, 3, cfg.src_h, cfg.src_w), dtype=dtype)
    for k in range(3):
        x = csc[k].astype(dtype)
        x = x - dtype(cfg.mean[k])
        x = x - dtype(cfg.min[k])
        out[0, k] = x * dtype(cfg.var_reci[k])
    return out


def default_aipp_cfg_text(width: int, height: int) -> str:
    """aipp.cfg text for NV12 (JPEG full-range BT.601) -> RGB scaled to [0, 1]."""
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise AippError("AIPP source size must be positive and even, got %dx%d" % (width, height))
    m = JPEG_FULL_RANGE_RGB_MATRIX
    lines = [
        "# AIPP for vessel-seg: NV12 (YUV420SP_U8, JPEG full-range BT.601) -> RGB in [0, 1]",
        "# Used by ATC (--insert_op_conf) when converting model.onnx to model.om, and by the simulator.",
        "aipp_op {",
        "  aipp_mode: static",
        "  related_input_rank: 0",
        "  input_format: YUV420SP_U8",
        "  src_image_size_w: %d" % width,
        "  src_image_size_h: %d" % height,
        "  csc_switch: true",
        "  rbuv_swap_switch: false",
    ]
    for r in range(3):
        lines.append("  " + " ".join("matrix_r%dc%d: %d" % (r, c, m[r][c]) for c in range(3)))
    lines.append("  " + " ".join("input_bias_%d: %d" % (i, b) for i, b in enumerate(JPEG_FULL_RANGE_BIAS)))
    lines.append("  mean_chn_0: 0 mean_chn_1: 0 mean_chn_2: 0")
    lines.append("  min_chn_0: 0.0 min_chn_1: 0.0 min_chn_2: 0.0")
    lines.append("  " + " ".join("var_reci_chn_%d: %s" % (i, repr(_VAR_RECI_255)) for i in range(3)))
    lines.append("}")
    return "\n".join(lines) + "\n"
