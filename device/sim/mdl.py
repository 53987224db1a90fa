"""Simulated ``acl.mdl``: model load/unload, descriptors, datasets, execute and execute_async.

Execute checks (reference 3.1): dataset buffer count == model I/O count, non-null addresses,
``size + 64 < required`` -> 145000, larger buffers only warn; the model must belong to the current context
(107004); a model may not execute concurrently (two threads, two streams, or sync while async work is pending):
the second call returns 507011 ACL_ERROR_RT_MODEL_EXECUTE (our documented choice).  In ACL_HOST run mode
dataset memory must be device memory (107016).  Unknown model ids give 100011; loading a missing file 100003;
an unparsable model (or an .om, which the simulator cannot run) 100013.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..aipp import AippError, load_aipp_cfg
from ..onnx_proto import OnnxError, decode_model
from .executor import UnsupportedOpError
from .memory import DEVICE_KINDS
from .model import SimModel
from .state import (
    ACL_SUCCESS,
    ERR_GE_PARAM_INVALID,
    ERR_INTERNAL,
    ERR_INVALID_FILE,
    ERR_INVALID_MODEL_ID,
    ERR_INVALID_PARAM,
    ERR_PARSE_MODEL,
    ERR_RT_INVALID_MEMORY_TYPE,
    ERR_RT_MODEL_CONTEXT,
    ERR_RT_MODEL_EXECUTE,
    ERR_RT_PARAM_INVALID,
    STATE,
    api,
)

log = logging.getLogger("vessel_seg.device.sim")

_SIZE_SLACK = 64


# ----------------------------------------------------------------------------- load / unload

def _register(data: bytes, source: str, aipp_path: Optional[str]) -> Tuple[int, int]:
    try:
        graph = decode_model(data)
    except OnnxError as exc:
        STATE.note("cannot parse model %s: %s%s", source, exc,
                   " (the simulator runs the bundle's model.onnx, not .om files)" if source.endswith(".om") else "")
        return 0, ERR_PARSE_MODEL
    aipp = None
    if aipp_path is not None and os.path.isfile(aipp_path):
        try:
            aipp = load_aipp_cfg(aipp_path)
        except AippError as exc:
            STATE.note("model %s: %s", source, exc)
            return 0, ERR_PARSE_MODEL
    ctx = STATE.current_ctx()
    try:
        model = SimModel(graph, data, aipp, source, ctx.handle, ctx.device_id)  # type: ignore[union-attr]
        model.prepare(STATE.options.precision, STATE.options.executor)
    except (ValueError, UnsupportedOpError) as exc:
        STATE.note("model %s: %s", source, exc)
        return 0, ERR_PARSE_MODEL
    with STATE.lock:
        mid = STATE.new_handle()
        STATE.models[mid] = model
    log.info("sim: loaded %s as model %d (aipp=%s)", source, mid, aipp is not None)
    return mid, ACL_SUCCESS


@api("acl.mdl.load_from_file", returns="pair", need_ctx=True)
def load_from_file(model_path: str) -> Tuple[int, int]:
    """Load an ONNX model file; an ``aipp.cfg`` in the same folder is applied as ATC would have baked it in."""
    if not isinstance(model_path, str) or not os.path.isfile(model_path):
        STATE.note("model file %r does not exist", model_path)
        return 0, ERR_INVALID_FILE
    try:
        with open(model_path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        STATE.note("cannot read %s: %s", model_path, exc)
        return 0, ERR_INVALID_FILE
    return _register(data, model_path, os.path.join(os.path.dirname(os.path.abspath(model_path)), "aipp.cfg"))


@api("acl.mdl.load_from_mem", returns="pair", need_ctx=True)
def load_from_mem(model: int, model_size: int) -> Tuple[int, int]:
    """Load an ONNX model from memory (no AIPP)."""
    span = STATE.memory.span(model, model_size) if isinstance(model, int) and isinstance(model_size, int) else None
    if span is None:
        STATE.note("load_from_mem: %r bytes at %r are not valid memory", model_size, model)
        return 0, ERR_RT_PARAM_INVALID
    return _register(span[1].tobytes(), "<memory>", None)


def _model_in_ctx(model_id: Any) -> Tuple[Optional[SimModel], int]:
    model = STATE.models.get(model_id) if isinstance(model_id, int) else None
    if model is None:
        STATE.note("unknown model id %r", model_id)
        return None, ERR_INVALID_MODEL_ID
    ctx = STATE.current_ctx()
    if ctx is None or ctx.handle != model.ctx_handle:
        STATE.note("model %d was loaded in another context", model_id)
        return None, ERR_RT_MODEL_CONTEXT
    return model, ACL_SUCCESS


@api("acl.mdl.unload", need_ctx=True)
def unload(model_id: int) -> int:
    """Unload a model (same context as load; not while it executes)."""
    with STATE.lock:
        model, code = _model_in_ctx(model_id)
        if code:
            return code
        if model.busy is not None:  # type: ignore[union-attr]
            STATE.note("unload of model %d while it executes", model_id)
            return ERR_INVALID_PARAM
        del STATE.models[model_id]
    return ACL_SUCCESS


# ----------------------------------------------------------------------------- descriptors

@api("acl.mdl.create_desc", returns="value")
def create_desc() -> int:
    """New, empty model description handle."""
    with STATE.lock:
        handle = STATE.new_handle()
        STATE.descs[handle] = {}
        return handle


@api("acl.mdl.get_desc")
def get_desc(model_desc: int, model_id: int) -> int:
    """Fill a description from a loaded model."""
    with STATE.lock:
        if model_desc not in STATE.descs:
            STATE.note("get_desc: unknown description %r", model_desc)
            return ERR_INVALID_PARAM
        model = STATE.models.get(model_id) if isinstance(model_id, int) else None
        if model is None:
            STATE.note("get_desc: unknown model id %r", model_id)
            return ERR_INVALID_MODEL_ID
        STATE.descs[model_desc] = model.describe()
    return ACL_SUCCESS


@api("acl.mdl.destroy_desc")
def destroy_desc(model_desc: int) -> int:
    """Destroy a description."""
    with STATE.lock:
        if STATE.descs.pop(model_desc, None) is None:
            return ERR_INVALID_PARAM
    return ACL_SUCCESS


def _io(desc: Any, side: str, index: Any) -> Optional[Dict[str, Any]]:
    entries = STATE.descs.get(desc, {}).get(side) if isinstance(desc, int) else None
    if not entries or not isinstance(index, int) or not 0 <= index < len(entries):
        return None
    return entries[index]


@api("acl.mdl.get_num_inputs", returns="value")
def get_num_inputs(model_desc: int) -> int:
    return len(STATE.descs.get(model_desc, {}).get("inputs", []))


@api("acl.mdl.get_num_outputs", returns="value")
def get_num_outputs(model_desc: int) -> int:
    return len(STATE.descs.get(model_desc, {}).get("outputs", []))


@api("acl.mdl.get_input_size_by_index", returns="value")
def get_input_size_by_index(model_desc: int, index: int) -> int:
    e = _io(model_desc, "inputs", index)
    return e["size"] if e else 0


@api("acl.mdl.get_output_size_by_index", returns="value")
def get_output_size_by_index(model_desc: int, index: int) -> int:
    e = _io(model_desc, "outputs", index)
    return e["size"] if e else 0


def _dims(model_desc: int, side: str, index: int, key: str) -> Tuple[Dict[str, Any], int]:
    e = _io(model_desc, side, index)
    if e is None:
        STATE.note("%s index %r out of range (or description not filled)", side[:-1], index)
        return {}, ERR_INVALID_PARAM
    return {"name": e["name"], "dimCount": len(e[key]), "dims": list(e[key])}, ACL_SUCCESS


@api("acl.mdl.get_input_dims", returns="dims")
def get_input_dims(model_desc: int, index: int) -> Tuple[Dict[str, Any], int]:
    return _dims(model_desc, "inputs", index, "dims")


@api("acl.mdl.get_input_dims_v2", returns="dims")
def get_input_dims_v2(model_desc: int, index: int) -> Tuple[Dict[str, Any], int]:
    return _dims(model_desc, "inputs", index, "dims_v2")


@api("acl.mdl.get_output_dims", returns="dims")
def get_output_dims(model_desc: int, index: int) -> Tuple[Dict[str, Any], int]:
    return _dims(model_desc, "outputs", index, "dims")


@api("acl.mdl.get_input_data_type", returns="value")
def get_input_data_type(model_desc: int, index: int) -> int:
    e = _io(model_desc, "inputs", index)
    return e["dtype"] if e else -1


@api("acl.mdl.get_output_data_type", returns="value")
def get_output_data_type(model_desc: int, index: int) -> int:
    e = _io(model_desc, "outputs", index)
    return e["dtype"] if e else -1


@api("acl.mdl.get_input_format", returns="value")
def get_input_format(model_desc: int, index: int) -> int:
    e = _io(model_desc, "inputs", index)
    return e["format"] if e else -1


@api("acl.mdl.get_output_format", returns="value")
def get_output_format(model_desc: int, index: int) -> int:
    e = _io(model_desc, "outputs", index)
    return e["format"] if e else -1


@api("acl.mdl.get_input_name_by_index", returns="str")
def get_input_name_by_index(model_desc: int, index: int) -> str:
    e = _io(model_desc, "inputs", index)
    return e["name"] if e else ""


@api("acl.mdl.get_output_name_by_index", returns="str")
def get_output_name_by_index(model_desc: int, index: int) -> str:
    e = _io(model_desc, "outputs", index)
    return e["name"] if e else ""


def _index_by_name(model_desc: int, side: str, name: str) -> Tuple[int, int]:
    for i, e in enumerate(STATE.descs.get(model_desc, {}).get(side, [])):
        if e["name"] == name:
            return i, ACL_SUCCESS
    return 0, ERR_INVALID_PARAM


@api("acl.mdl.get_input_index_by_name", returns="pair")
def get_input_index_by_name(model_desc: int, name: str) -> Tuple[int, int]:
    return _index_by_name(model_desc, "inputs", name)


@api("acl.mdl.get_output_index_by_name", returns="pair")
def get_output_index_by_name(model_desc: int, name: str) -> Tuple[int, int]:
    return _index_by_name(model_desc, "outputs", name)


# ----------------------------------------------------------------------------- datasets

@api("acl.mdl.create_dataset", returns="value")
def create_dataset() -> int:
    """New empty dataset handle."""
    with STATE.lock:
        handle = STATE.new_handle()
        STATE.datasets[handle] = []
        return handle


@api("acl.mdl.add_dataset_buffer", returns="pair")
def add_dataset_buffer(dataset: int, data_buffer: int) -> Tuple[int, int]:
    """Append a data buffer to a dataset; returns (dataset, ret)."""
    with STATE.lock:
        if dataset not in STATE.datasets or data_buffer not in STATE.data_buffers:
            STATE.note("add_dataset_buffer: unknown dataset %r or data buffer %r", dataset, data_buffer)
            return 0, ERR_INVALID_PARAM
        STATE.datasets[dataset].append(data_buffer)
        return dataset, ACL_SUCCESS


@api("acl.mdl.get_dataset_num_buffers", returns="value")
def get_dataset_num_buffers(dataset: int) -> int:
    return len(STATE.datasets.get(dataset, []))


@api("acl.mdl.get_dataset_buffer", returns="value")
def get_dataset_buffer(dataset: int, index: int) -> int:
    bufs = STATE.datasets.get(dataset, [])
    return bufs[index] if isinstance(index, int) and 0 <= index < len(bufs) else 0


@api("acl.mdl.destroy_dataset")
def destroy_dataset(dataset: int) -> int:
    """Destroy a dataset (its data buffers and their memory stay alive)."""
    with STATE.lock:
        if STATE.datasets.pop(dataset, None) is None:
            return ERR_INVALID_PARAM
    return ACL_SUCCESS


# ----------------------------------------------------------------------------- execute

def _dataset_span(dataset: Any, required: int, what: str) -> Tuple[Optional[Tuple[int, int]], int]:
    """Validate the single-buffer dataset; (ptr, nbytes to use) or error code."""
    bufs = STATE.datasets.get(dataset) if isinstance(dataset, int) else None
    if bufs is None:
        STATE.note("execute: unknown %s dataset %r", what, dataset)
        return None, ERR_GE_PARAM_INVALID
    if len(bufs) != 1:
        STATE.note("execute: %s dataset has %d buffers, the model has 1 %s", what, len(bufs), what)
        return None, ERR_GE_PARAM_INVALID
    buf = STATE.data_buffers.get(bufs[0])
    if buf is None:
        STATE.note("execute: %s data buffer %r was destroyed", what, bufs[0])
        return None, ERR_GE_PARAM_INVALID
    ptr, size = buf
    if not ptr:
        STATE.note("execute: %s buffer address is null", what)
        return None, ERR_GE_PARAM_INVALID
    if size + _SIZE_SLACK < required:
        STATE.note("execute: %s buffer size %d < model size %d", what, size, required)
        return None, ERR_GE_PARAM_INVALID
    if size > required:
        log.warning("sim: %s buffer size %d > model size %d: MAY cause inference result ERROR", what, size, required)
    found = STATE.memory.find(ptr)
    if found is None:
        STATE.note("execute: %s buffer address 0x%x is not allocated memory", what, ptr)
        return None, ERR_GE_PARAM_INVALID
    region, _off = found
    if STATE.options.run_mode == 1 and region.kind not in DEVICE_KINDS:
        STATE.note("execute: %s buffer is %s memory, not device memory (ACL_HOST run mode)", what, region.kind)
        return None, ERR_RT_INVALID_MEMORY_TYPE
    return (ptr, min(size, required)), ACL_SUCCESS


def _read(ptr: int, nbytes: int, required: int) -> Optional[np.ndarray]:
    out = np.zeros(required, dtype=np.uint8)
    with STATE.memory.lock:
        found = STATE.memory.find(ptr)
        if found is None:
            return None
        region, off = found
        n = min(required, region.size - off)
        out[:n] = region.data[off:off + n]
    return out


def _write(ptr: int, nbytes: int, data: np.ndarray) -> None:
    raw = data.reshape(-1).view(np.uint8)
    with STATE.memory.lock:
        found = STATE.memory.find(ptr)
        if found is None:
            log.warning("sim: output memory 0x%x vanished before the result was written", ptr)
            return
        region, off = found
        n = min(len(raw), nbytes, region.size - off)
        region.data[off:off + n] = raw[:n]


def _run(model: SimModel, in_ptr: int, in_n: int, out_ptr: int, out_n: int
         ) -> Tuple[int, Optional[np.ndarray]]:
    """The device work of one execute: hang/timing emulation and computing the output (not yet written)."""
    started = time.monotonic()
    code = STATE.wait_if_hung()
    if code:
        return code, None
    raw = _read(in_ptr, in_n, model.input_size)
    if raw is None:
        STATE.note("execute: input memory vanished")
        return ERR_RT_MODEL_EXECUTE, None
    opts = STATE.options
    try:
        y = model.compute(raw, opts.precision, opts.executor, opts.compute)
    except Exception as exc:  # the NPU reports a failed task as a code, never an exception
        log.exception("sim: execute of %s failed", model.source)
        STATE.note("execute of %s failed: %s", model.source, exc)
        return ERR_INTERNAL, None
    if opts.device_time_ms:
        remaining = opts.device_time_ms / 1000.0 - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)
    STATE.counters["executes"] += 1
    return ACL_SUCCESS, y


def _prepare(model_id: Any, in_ds: Any, out_ds: Any
             ) -> Tuple[Optional[SimModel], Optional[Tuple[int, int]], Optional[Tuple[int, int]], int]:
    model, code = _model_in_ctx(model_id)
    if code:
        return None, None, None, code
    ins, code = _dataset_span(in_ds, model.input_size, "input")  # type: ignore[union-attr]
    if code:
        return None, None, None, code
    outs, code = _dataset_span(out_ds, model.output_size, "output")  # type: ignore[union-attr]
    if code:
        return None, None, None, code
    return model, ins, outs, ACL_SUCCESS


@api("acl.mdl.execute", need_ctx=True)
def execute(model_id: int, input_dataset: int, output_dataset: int) -> int:
    """Synchronous inference; the output buffer holds the result when this returns 0."""
    with STATE.lock:
        model, ins, outs, code = _prepare(model_id, input_dataset, output_dataset)
        if code:
            return code
        if model.busy is not None:  # type: ignore[union-attr]
            STATE.note("model %d executed concurrently (already running on %s)", model_id, model.busy)
            return ERR_RT_MODEL_EXECUTE
        model.busy = ("sync", threading.get_ident())  # type: ignore[union-attr]
    try:
        code, y = _run(model, ins[0], ins[1], outs[0], outs[1])  # type: ignore[arg-type,index]
        if code == ACL_SUCCESS:
            _write(outs[0], outs[1], y)  # type: ignore[arg-type,index]
        return code
    finally:
        with STATE.lock:
            model.busy = None  # type: ignore[union-attr]


@api("acl.mdl.execute_async", need_ctx=True)
def execute_async(model_id: int, input_dataset: int, output_dataset: int, stream: int) -> int:
    """Enqueue inference on ``stream``; results are visible only after ``acl.rt.synchronize_stream``."""
    from .rt import lookup_stream
    with STATE.lock:
        s, code = lookup_stream(stream)
        if code:
            return code
        model, ins, outs, code = _prepare(model_id, input_dataset, output_dataset)
        if code:
            return code
        if model.busy is not None and model.busy != ("stream", stream):  # type: ignore[union-attr]
            STATE.note("model %d executed concurrently (already running on %s)", model_id, model.busy)
            return ERR_RT_MODEL_EXECUTE
        model.busy = ("stream", stream)  # type: ignore[union-attr]
        model.pending_async += 1  # type: ignore[union-attr]

    def task() -> Tuple[int, Any]:
        code_, y = _run(model, ins[0], ins[1], outs[0], outs[1])  # type: ignore[arg-type,index]

        def commit(publish: bool) -> None:
            if code_ == ACL_SUCCESS and publish:
                _write(outs[0], outs[1], y)  # type: ignore[arg-type,index]
            with STATE.lock:
                model.pending_async -= 1  # type: ignore[union-attr]
                if model.pending_async == 0:  # type: ignore[union-attr]
                    model.busy = None  # type: ignore[union-attr]
        return code_, commit

    s.enqueue(task)  # type: ignore[attr-defined]
    return ACL_SUCCESS

