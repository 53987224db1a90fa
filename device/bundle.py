"""Model bundles (``models/<name>/``): loading with full validation, and writing new ones.

See docs/ARCHITECTURE.md "Model bundle".  ``load_bundle`` raises :class:`BundleError` whose message says
exactly what is wrong; the simulator loads ``model.onnx`` and the real runtime ``model.om`` from the same folder.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import yaml

from .aipp import AippConfig, AippError, parse_aipp_cfg
from .onnx_proto import Graph, OnnxError, decode_model, encode_model

__all__ = ["ModelBundle", "BundleError", "load_bundle", "write_bundle", "sha256_file", "convert_om_script",
           "FORMAT_NV12", "FORMAT_NCHW_FLOAT32"]

log = logging.getLogger(__name__)

FORMAT_NV12 = "NV12"
FORMAT_NCHW_FLOAT32 = "NCHW_FLOAT32"
ONNX_NAME = "model.onnx"
OM_NAME = "model.om"
AIPP_NAME = "aipp.cfg"
YAML_NAME = "model.yaml"
CONVERT_NAME = "convert_om.sh"


class BundleError(ValueError):
    """The bundle is incomplete or inconsistent; the message says what is wrong."""


@dataclass
class ModelBundle:
    """A validated model bundle."""

    path: str
    meta: Dict[str, Any]
    name: str
    version: str
    input_name: str
    input_shape: Tuple[int, int, int, int]
    input_format: str
    output_name: str
    output_shape: Tuple[int, int, int, int]
    threshold: float
    aipp: Optional[AippConfig] = None
    preprocess: Dict[str, Any] = field(default_factory=dict)

    @property
    def onnx_path(self) -> str:
        """Path of model.onnx (what the simulator loads)."""
        return os.path.join(self.path, ONNX_NAME)

    @property
    def om_path(self) -> str:
        """Path of model.om (what the real runtime loads; produced on a board by convert_om.sh)."""
        return os.path.join(self.path, OM_NAME)

    @property
    def has_om(self) -> bool:
        """Whether model.om exists in the bundle folder."""
        return os.path.isfile(self.om_path)

    @property
    def host_input_shape(self) -> Tuple[int, ...]:
        """What the host feeds the device: (H*3/2, W) for NV12, else the NCHW network shape."""
        if self.input_format == FORMAT_NV12:
            return (self.input_shape[2] * 3 // 2, self.input_shape[3])
        return tuple(self.input_shape)

    @property
    def host_input_dtype(self) -> np.dtype:
        """uint8 for NV12, float32 otherwise."""
        return np.dtype(np.uint8) if self.input_format == FORMAT_NV12 else np.dtype(np.float32)

    @property
    def host_input_nbytes(self) -> int:
        """Bytes of one host input."""
        return int(np.prod(self.host_input_shape)) * self.host_input_dtype.itemsize

    @property
    def output_nbytes(self) -> int:
        """Bytes of one float32 output."""
        return int(np.prod(self.output_shape)) * 4


def sha256_file(path: str) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _require(meta: Dict[str, Any], key: str, types: Union[type, Tuple[type, ...]], where: str = "") -> Any:
    label = where + key
    if key not in meta:
        raise BundleError("model.yaml: missing key %r" % label)
    value = meta[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise BundleError("model.yaml: %r must be %s, got a boolean" % (label, _type_names(types)))
    if not isinstance(value, types):
        raise BundleError("model.yaml: %r must be %s, got %r" % (label, _type_names(types), value))
    return value


def _type_names(types: Union[type, Tuple[type, ...]]) -> str:
    if not isinstance(types, tuple):
        types = (types,)
    return " or ".join(t.__name__ for t in types)


def _shape(meta: Dict[str, Any], where: str) -> Tuple[int, int, int, int]:
    shape = _require(meta, "shape", list, where)
    if len(shape) != 4 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise BundleError("model.yaml: %r must be 4 positive integers (NCHW), got %r" % (where + "shape", shape))
    return (shape[0], shape[1], shape[2], shape[3])


def _check_graph_io(graph: Graph, input_name: str, input_shape: Tuple[int, ...], output_name: str,
                    output_shape: Tuple[int, ...]) -> None:
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise BundleError("model.onnx: expected 1 input and 1 output, found %d and %d"
                          % (len(graph.inputs), len(graph.outputs)))
    gi, go = graph.inputs[0], graph.outputs[0]
    if gi.name != input_name:
        raise BundleError("model.onnx input is named %r but model.yaml input.name is %r" % (gi.name, input_name))
    if go.name != output_name:
        raise BundleError("model.onnx output is named %r but model.yaml output.name is %r" % (go.name, output_name))
    if gi.shape and tuple(gi.shape) != tuple(input_shape):
        raise BundleError("model.onnx input shape %s != model.yaml input.shape %s" % (gi.shape, list(input_shape)))
    if go.shape and tuple(go.shape) != tuple(output_shape):
        raise BundleError("model.onnx output shape %s != model.yaml output.shape %s"
                          % (go.shape, list(output_shape)))
    if gi.elem_type != 1 or go.elem_type != 1:
        raise BundleError("model.onnx input and output must be float32")


def load_bundle(path: str, check_hashes: bool = True) -> ModelBundle:
    """Load and validate the bundle in folder ``path``; raise :class:`BundleError` on any problem."""
    path = os.path.abspath(str(path))
    if not os.path.isdir(path):
        raise BundleError("model bundle %s: not a directory" % path)
    yaml_path = os.path.join(path, YAML_NAME)
    if not os.path.isfile(yaml_path):
        raise BundleError("model bundle %s: %s is missing" % (path, YAML_NAME))
    try:
        with open(yaml_path, "r", encoding="utf-8") as fh:
            meta = yaml.safe_load(fh)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BundleError("model.yaml: not valid YAML: %s" % exc)
    if not isinstance(meta, dict):
        raise BundleError("model.yaml: must be a mapping at top level")
    try:
        return _validate(path, meta, check_hashes)
    except BundleError as exc:
        raise BundleError("model bundle %s: %s" % (path, exc))


def _validate(path: str, meta: Dict[str, Any], check_hashes: bool) -> ModelBundle:
    name = _require(meta, "name", str)
    version = _require(meta, "version", str)
    inp = _require(meta, "input", dict)
    out = _require(meta, "output", dict)
    input_name = _require(inp, "name", str, "input.")
    input_shape = _shape(inp, "input.")
    input_format = _require(inp, "format", str, "input.")
    if input_format not in (FORMAT_NV12, FORMAT_NCHW_FLOAT32):
        raise BundleError("model.yaml: input.format must be NV12 or NCHW_FLOAT32, got %r" % input_format)
    output_name = _require(out, "name", str, "output.")
    output_shape = _shape(out, "output.")
    dtype = out.get("dtype", "float32")
    if dtype != "float32":
        raise BundleError("model.yaml: output.dtype must be float32, got %r" % dtype)
    if input_shape[0] != 1 or input_shape[1] != 3:
        raise BundleError("model.yaml: input.shape must be [1, 3, H, W], got %r" % list(input_shape))
    if output_shape[0] != 1 or output_shape[1] != 1:
        raise BundleError("model.yaml: output.shape must be [1, 1, H, W], got %r" % list(output_shape))
    aipp_flag = _require(meta, "aipp", bool)
    threshold = _require(meta, "threshold", (int, float))
    if not 0.0 < float(threshold) < 1.0:
        raise BundleError("model.yaml: threshold must be in (0, 1), got %r" % threshold)
    preprocess = _require(meta, "preprocess", dict)
    for key in ("parameters", "macs_512"):
        if key in meta and (not isinstance(meta[key], int) or isinstance(meta[key], bool) or meta[key] < 0):
            raise BundleError("model.yaml: %r must be a non-negative integer, got %r" % (key, meta[key]))
    files = _require(meta, "files", dict)

    onnx_path = os.path.join(path, ONNX_NAME)
    aipp_path = os.path.join(path, AIPP_NAME)
    if not os.path.isfile(onnx_path):
        raise BundleError("%s is missing" % ONNX_NAME)
    has_cfg = os.path.isfile(aipp_path)
    if aipp_flag and not has_cfg:
        raise BundleError("model.yaml says aipp: true but %s is missing" % AIPP_NAME)
    if has_cfg and not aipp_flag:
        raise BundleError("%s is present but model.yaml says aipp: false" % AIPP_NAME)
    if aipp_flag != (input_format == FORMAT_NV12):
        raise BundleError("model.yaml: input.format must be NV12 exactly when aipp is true "
                          "(aipp: %s, input.format: %s)" % (aipp_flag, input_format))

    if check_hashes:
        _check_hashes(path, files, has_cfg)

    aipp_cfg: Optional[AippConfig] = None
    if aipp_flag:
        try:
            with open(aipp_path, "r", encoding="utf-8") as fh:
                aipp_cfg = parse_aipp_cfg(fh.read())
        except (AippError, UnicodeDecodeError) as exc:
            raise BundleError(str(exc))
        if (aipp_cfg.src_h, aipp_cfg.src_w) != (input_shape[2], input_shape[3]):
            raise BundleError("aipp.cfg source size %dx%d (w x h) != network input %dx%d"
                              % (aipp_cfg.src_w, aipp_cfg.src_h, input_shape[3], input_shape[2]))
    try:
        with open(onnx_path, "rb") as fh:
            graph = decode_model(fh.read())
    except OnnxError as exc:
        raise BundleError("model.onnx: %s" % exc)
    _check_graph_io(graph, input_name, input_shape, output_name, output_shape)
    return ModelBundle(path=path, meta=meta, name=name, version=version, input_name=input_name,
                       input_shape=input_shape, input_format=input_format, output_name=output_name,
                       output_shape=output_shape, threshold=float(threshold), aipp=aipp_cfg,
                       preprocess=dict(preprocess))


def _check_hashes(path: str, files: Dict[str, Any], has_cfg: bool) -> None:
    required = [ONNX_NAME] + ([AIPP_NAME] if has_cfg else [])
    for req in required:
        if req not in files:
            raise BundleError("model.yaml: files: has no sha256 for %s" % req)
    for fname, digest in files.items():
        if not isinstance(fname, str) or os.path.basename(fname) != fname:
            raise BundleError("model.yaml: files: entry %r must be a plain file name" % (fname,))
        if not isinstance(digest, str) or len(digest) != 64:
            raise BundleError("model.yaml: files: %s must be a 64-hex-digit sha256, got %r" % (fname, digest))
        fpath = os.path.join(path, fname)
        if not os.path.isfile(fpath):
            if fname == OM_NAME:
                continue  # built on the board by convert_om.sh, never shipped
            raise BundleError("model.yaml: files: lists %s but the file is missing" % fname)
        actual = sha256_file(fpath)
        if actual != digest.lower():
            raise BundleError("%s: sha256 mismatch (model.yaml says %s..., file is %s...)"
                              % (fname, digest[:12], actual[:12]))


def convert_om_script(input_name: str, input_shape: Tuple[int, ...], with_aipp: bool) -> str:
    """Text of convert_om.sh: the documented ATC command producing model.om for Ascend310."""
    shape = ",".join(str(int(d)) for d in input_shape)
    cmd = ["atc", "--model=model.onnx", "--framework=5", "--output=model", "--soc_version=Ascend310",
           '--input_shape="%s:%s"' % (input_name, shape), "--input_format=NCHW"]
    if with_aipp:
        cmd.append("--insert_op_conf=aipp.cfg")
    cmd += ["--output_type=FP32", "--log=error"]
    return "\n".join([
        "#!/bin/sh",
        "# Convert model.onnx to model.om for the Ascend 310 NPU (Atlas 200 DK) with ATC.",
        "# Prerequisites: a machine with the CANN toolkit (ATC) installed, and its environment loaded, e.g.",
        "#   . /usr/local/Ascend/ascend-toolkit/set_env.sh   (or ${HOME}/Ascend/ascend-toolkit/set_env.sh)",
        "# The toolkit version should match the CANN runtime on the board, or the .om will not load.",
        "# Run from anywhere; the command works in this bundle's folder.  Output: model.om (not kept in git).",
        ("# AIPP: aipp.cfg makes the model take NV12 (YUV420SP_U8) input and convert it to RGB on the NPU."
         if with_aipp else "# No AIPP: the model takes float32 NCHW RGB input in [0, 1]."),
        "set -e",
        'cd "$(dirname "$0")"',
        " ".join(cmd),
        "",
    ])


def write_bundle(directory: str, graph_or_onnx_bytes: Union[Graph, bytes], meta: Dict[str, Any],
                 aipp_cfg_text: Optional[str] = None) -> ModelBundle:
    """Write model.onnx, aipp.cfg (optional), convert_om.sh and model.yaml (with sha256 ``files:``) to ``directory``.

    ``meta`` needs at least ``name``, ``version``, ``threshold`` and ``preprocess``; ``input``/``output`` names and
    shapes default to the graph's, ``aipp`` and ``input.format`` follow from ``aipp_cfg_text``.  Returns the bundle
    as loaded back by :func:`load_bundle`.
    """
    if isinstance(graph_or_onnx_bytes, Graph):
        data = encode_model(graph_or_onnx_bytes)
    elif isinstance(graph_or_onnx_bytes, (bytes, bytearray)):
        data = bytes(graph_or_onnx_bytes)
    else:
        raise TypeError("write_bundle needs a Graph or ONNX bytes, got %s" % type(graph_or_onnx_bytes).__name__)
    try:
        graph = decode_model(data)
    except OnnxError as exc:
        raise BundleError("cannot write bundle: model is not valid ONNX: %s" % exc)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise BundleError("cannot write bundle: model must have exactly 1 input and 1 output")
    with_aipp = aipp_cfg_text is not None
    if with_aipp:
        try:
            parse_aipp_cfg(aipp_cfg_text)  # type: ignore[arg-type]
        except AippError as exc:
            raise BundleError("cannot write bundle: %s" % exc)
    meta = dict(meta)
    inp = dict(meta.get("input") or {})
    inp.setdefault("name", graph.inputs[0].name)
    inp.setdefault("shape", [int(d) for d in graph.inputs[0].shape])
    wanted_format = FORMAT_NV12 if with_aipp else FORMAT_NCHW_FLOAT32
    if inp.setdefault("format", wanted_format) != wanted_format:
        raise BundleError("cannot write bundle: input.format %r contradicts %s" % (
            inp["format"], "the AIPP config" if with_aipp else "having no AIPP config"))
    out = dict(meta.get("output") or {})
    out.setdefault("name", graph.outputs[0].name)
    out.setdefault("shape", [int(d) for d in graph.outputs[0].shape])
    out.setdefault("dtype", "float32")
    meta["input"], meta["output"], meta["aipp"] = inp, out, with_aipp

    os.makedirs(directory, exist_ok=True)
    files: Dict[str, str] = {}

    def _write(fname: str, content: Union[bytes, str], mode: Optional[int] = None) -> None:
        raw = content.encode("utf-8") if isinstance(content, str) else content
        target = os.path.join(directory, fname)
        tmp = target + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
        files[fname] = hashlib.sha256(raw).hexdigest()

    _write(ONNX_NAME, data)
    cfg_path = os.path.join(directory, AIPP_NAME)
    if with_aipp:
        _write(AIPP_NAME, aipp_cfg_text)  # type: ignore[arg-type]
    elif os.path.exists(cfg_path):
        os.remove(cfg_path)
    exec_mode = stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    _write(CONVERT_NAME, convert_om_script(inp["name"], inp["shape"], with_aipp), exec_mode)
    meta["files"] = files
    text = yaml.safe_dump(meta, sort_keys=False, default_flow_style=None)
    tmp = os.path.join(directory, YAML_NAME + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, os.path.join(directory, YAML_NAME))
    log.info("wrote model bundle %s (%s %s, aipp=%s)", directory, meta.get("name"), meta.get("version"), with_aipp)
    return load_bundle(directory)
