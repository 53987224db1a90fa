"""Simulated ``acl.rt``: devices, contexts, streams, memory (same names, signatures and return shapes).

Codes for misuse where the reference leaves them open (documented choices):
unknown pointer 107000, freeing with the wrong allocator or twice 207002, pointer inside a region passed to
free 107000, ``malloc(0)`` 107000, copies/memsets out of bounds or ``count > dest_max`` 107000, host memory
as a device operand in ACL_HOST run mode 107016, reset_device while explicit contexts/streams live 107000,
destroying a default or unknown context 107000, unknown stream 107000, stream of another context 107003.
"""
from __future__ import annotations

import logging
from typing import Tuple

import numpy as np

from .memory import DEVICE_KINDS, HOST_KINDS
from .state import (
    ACL_SUCCESS,
    ERR_RT_CONTEXT_NULL,
    ERR_RT_FEATURE_NOT_SUPPORT,
    ERR_RT_INVALID_DEVICEID,
    ERR_RT_INVALID_MEMORY_TYPE,
    ERR_RT_MEMORY_ALLOCATION,
    ERR_RT_MEMORY_FREE,
    ERR_RT_PARAM_INVALID,
    ERR_RT_STREAM_CONTEXT,
    N_DEVICES,
    STATE,
    Context,
    DeviceRecord,
    Stream,
    api,
)

log = logging.getLogger("vessel_seg.device.sim")

ACL_MEM_MALLOC_HUGE_FIRST = 0
ACL_MEM_MALLOC_HUGE_ONLY = 1
ACL_MEM_MALLOC_NORMAL_ONLY = 2
ACL_MEMCPY_HOST_TO_HOST = 0
ACL_MEMCPY_HOST_TO_DEVICE = 1
ACL_MEMCPY_DEVICE_TO_HOST = 2
ACL_MEMCPY_DEVICE_TO_DEVICE = 3
ACL_DEVICE = 0
ACL_HOST = 1


# ----------------------------------------------------------------------------- devices and contexts

@api("acl.rt.set_device")
def set_device(device_id: int) -> int:
    """Open device ``device_id`` (reference counted) and bind its default context if the thread has none."""
    if not isinstance(device_id, int) or not 0 <= device_id < N_DEVICES:
        return ERR_RT_INVALID_DEVICEID
    with STATE.lock:
        rec = STATE.devices.get(device_id)
        if rec is None:
            ctx = Context(STATE.new_handle(), device_id, default=True)
            STATE.contexts[ctx.handle] = ctx
            rec = DeviceRecord(device_id, ctx)
            STATE.devices[device_id] = rec
        rec.refcount += 1
        if STATE.current_ctx() is None:
            STATE.bind(rec.default_ctx)
    return ACL_SUCCESS


@api("acl.rt.reset_device")
def reset_device(device_id: int) -> int:
    """Release one reference; the last one frees the default context (explicit ones must be gone)."""
    with STATE.lock:
        rec = STATE.devices.get(device_id) if isinstance(device_id, int) else None
        if rec is None or rec.refcount <= 0:
            return ERR_RT_INVALID_DEVICEID
        if rec.refcount > 1:
            rec.refcount -= 1
            return ACL_SUCCESS
        explicit = [c for c in STATE.contexts.values() if c.alive and not c.default and c.device_id == device_id]
        streams = [s for c in explicit for s in c.streams]
        if explicit:
            STATE.note("reset_device(%d) with %d live context(s) and %d stream(s): destroy streams and "
                      "contexts first", device_id, len(explicit), len(streams))
            return ERR_RT_PARAM_INVALID
        _release_device(rec)
    return ACL_SUCCESS


def _release_device(rec: DeviceRecord) -> None:
    """Free what the last reset_device frees, reporting resources the user leaked."""
    dctx = rec.default_ctx
    for sh in list(dctx.streams):
        stream = STATE.streams.pop(sh, None)
        if stream is not None:
            stream.synchronize()
            stream.stop()
    dctx.streams.clear()
    dctx.alive = False
    for mid, model in list(STATE.models.items()):
        if model.device_id == rec.device_id:
            STATE.report_leak("model %d (%s) still loaded at reset_device(%d)" % (mid, model.source, rec.device_id))
            del STATE.models[mid]
    for region in STATE.memory.allocated():
        if region.device_id == rec.device_id:
            STATE.report_leak("%d bytes of %s memory at 0x%x not freed before reset_device(%d)"
                              % (region.requested, region.kind, region.base, rec.device_id))
            STATE.memory.release(region)
    rec.refcount = 0
    del STATE.devices[rec.device_id]


@api("acl.rt.create_context", returns="pair")
def create_context(device_id: int) -> Tuple[int, int]:
    """New explicit context on an opened device; it becomes current on the calling thread."""
    with STATE.lock:
        if not isinstance(device_id, int) or device_id not in STATE.devices:
            return 0, ERR_RT_INVALID_DEVICEID
        ctx = Context(STATE.new_handle(), device_id, default=False)
        STATE.contexts[ctx.handle] = ctx
        STATE.bind(ctx)
        return ctx.handle, ACL_SUCCESS


@api("acl.rt.destroy_context")
def destroy_context(context: int) -> int:
    """Destroy an explicit context (never a default one); streams left in it are reported and freed."""
    with STATE.lock:
        ctx = STATE.contexts.get(context) if isinstance(context, int) else None
        if ctx is None or not ctx.alive:
            return ERR_RT_PARAM_INVALID
        if ctx.default:
            STATE.note("destroy_context on the default context of device %d", ctx.device_id)
            return ERR_RT_PARAM_INVALID
        for sh in list(ctx.streams):
            STATE.report_leak("stream 0x%x not destroyed before destroy_context" % sh)
            stream = STATE.streams.pop(sh, None)
            if stream is not None:
                stream.stop()
        ctx.streams.clear()
        ctx.alive = False
        del STATE.contexts[context]
    return ACL_SUCCESS


@api("acl.rt.set_context")
def set_context(context: int) -> int:
    """Bind ``context`` to the calling thread."""
    with STATE.lock:
        ctx = STATE.contexts.get(context) if isinstance(context, int) else None
        if ctx is None or not ctx.alive:
            return ERR_RT_PARAM_INVALID
        STATE.bind(ctx)
    return ACL_SUCCESS


@api("acl.rt.get_context", returns="pair")
def get_context() -> Tuple[int, int]:
    """(current context of this thread, 0) or (0, 107002)."""
    ctx = STATE.current_ctx()
    if ctx is None:
        return 0, ERR_RT_CONTEXT_NULL
    return ctx.handle, ACL_SUCCESS


@api("acl.rt.get_run_mode", returns="pair")
def get_run_mode() -> Tuple[int, int]:
    """(0 ACL_DEVICE on the 200DK, or 1 ACL_HOST when the ``run_mode`` option says so, 0)."""
    return STATE.options.run_mode, ACL_SUCCESS


# ----------------------------------------------------------------------------- streams

@api("acl.rt.create_stream", returns="pair", need_ctx=True)
def create_stream() -> Tuple[int, int]:
    """New stream in the current context."""
    with STATE.lock:
        ctx = STATE.current_ctx()
        stream = Stream(STATE.new_handle(), ctx)  # type: ignore[arg-type]
        STATE.streams[stream.handle] = stream
        ctx.streams.add(stream.handle)  # type: ignore[union-attr]
        return stream.handle, ACL_SUCCESS


def lookup_stream(handle: int) -> Tuple[object, int]:
    """(stream, 0) for a live stream of the current context, else (None, code)."""
    stream = STATE.streams.get(handle) if isinstance(handle, int) else None
    if stream is None or not stream.alive:
        return None, ERR_RT_PARAM_INVALID
    if stream.ctx is not STATE.current_ctx():
        STATE.note("stream 0x%x belongs to another context", handle)
        return None, ERR_RT_STREAM_CONTEXT
    return stream, ACL_SUCCESS


@api("acl.rt.destroy_stream", need_ctx=True)
def destroy_stream(stream: int) -> int:
    """Drain and destroy a stream of the current context."""
    s, code = lookup_stream(stream)
    if code:
        return code
    s.synchronize()  # type: ignore[attr-defined]
    with STATE.lock:
        s.stop()  # type: ignore[attr-defined]
        STATE.streams.pop(stream, None)
        s.ctx.streams.discard(stream)  # type: ignore[attr-defined]
    return ACL_SUCCESS


def _drain_failed(stream: int, *_: object) -> None:
    """An injected synchronize failure still drains the stream, but publishes nothing (the tasks failed)."""
    s = STATE.streams.get(stream) if isinstance(stream, int) else None
    if s is not None and s.ctx is STATE.current_ctx():
        s.synchronize(publish=False)


@api("acl.rt.synchronize_stream", need_ctx=True, on_fault=_drain_failed)
def synchronize_stream(stream: int) -> int:
    """Wait for the stream to drain; async results become visible now; code of the first failed task."""
    s, code = lookup_stream(stream)
    if code:
        return code
    return s.synchronize()  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- memory

def _round_size(size: int) -> int:
    return (size + 31) // 32 * 32 + 32


def allocate(size: int, kind: str, align: int = 32) -> Tuple[int, int]:
    """Shared allocator for malloc/malloc_host/dvpp_malloc (caller did the entry checks)."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        STATE.note("%s size must be a positive int, got %r", kind, size)
        return 0, ERR_RT_PARAM_INVALID
    rounded = _round_size(size)
    with STATE.lock:
        limit = int(STATE.options.memory_limit_mb * 1024 * 1024)
        if kind in DEVICE_KINDS and STATE.memory.device_bytes + rounded > limit:
            STATE.note("out of device memory (%d + %d > %d bytes)", STATE.memory.device_bytes, rounded, limit)
            return 0, ERR_RT_MEMORY_ALLOCATION
        ctx = STATE.current_ctx()
        region = STATE.memory.allocate(rounded, kind, ctx.device_id if ctx else -1, align)  # type: ignore
        region.requested = size
        return region.base, ACL_SUCCESS


def release(ptr: int, kind: str, call: str) -> int:
    """Shared free for free/free_host/dvpp_free with provenance checks."""
    with STATE.lock:
        found = STATE.memory.find(ptr) if isinstance(ptr, int) else None
        if found is None:
            freed = STATE.memory.freed_kind(ptr) if isinstance(ptr, int) else None
            if freed is not None:
                STATE.note("%s(0x%x): double free", call, ptr)
                return ERR_RT_MEMORY_FREE
            STATE.note("%s(%r): unknown pointer", call, ptr)
            return ERR_RT_PARAM_INVALID
        region, offset = found
        if region.kind != kind:
            STATE.note("%s(0x%x): memory came from %s; free it with the matching call", call, ptr,
                       _ALLOCATOR[region.kind])
            return ERR_RT_MEMORY_FREE
        if offset:
            STATE.note("%s(0x%x): pointer is %d bytes inside a region", call, ptr, offset)
            return ERR_RT_PARAM_INVALID
        STATE.memory.release(region)
    return ACL_SUCCESS


_ALLOCATOR = {"malloc": "acl.rt.malloc", "host": "acl.rt.malloc_host", "dvpp": "acl.media.dvpp_malloc",
              "util": "acl.util (Python object memory)"}


@api("acl.rt.malloc", returns="pair", need_ctx=True)
def malloc(size: int, policy: int) -> Tuple[int, int]:
    """Device memory: size rounded up to 32 plus 32 bytes; contents are garbage, not zeros."""
    if policy not in (0, 1, 2, 3, 4, 5):
        return 0, ERR_RT_PARAM_INVALID
    if policy >= 3:
        STATE.note("P2P malloc policies are not supported on Ascend310")
        return 0, ERR_RT_FEATURE_NOT_SUPPORT
    return allocate(size, "malloc")


@api("acl.rt.free", need_ctx=True)
def free(ptr: int) -> int:
    """Free memory from acl.rt.malloc only."""
    return release(ptr, "malloc", "acl.rt.free")


@api("acl.rt.malloc_host", returns="pair", need_ctx=True)
def malloc_host(size: int) -> Tuple[int, int]:
    """Host memory (in ACL_DEVICE mode the real one returns device memory; both are CPU-visible here)."""
    return allocate(size, "host")


@api("acl.rt.free_host", need_ctx=True)
def free_host(ptr: int) -> int:
    """Free memory from acl.rt.malloc_host only."""
    return release(ptr, "host", "acl.rt.free_host")


def _is_device(kind: str) -> bool:
    return kind in DEVICE_KINDS


_KIND_SIDES = {ACL_MEMCPY_HOST_TO_HOST: (False, False), ACL_MEMCPY_HOST_TO_DEVICE: (True, False),
               ACL_MEMCPY_DEVICE_TO_HOST: (False, True), ACL_MEMCPY_DEVICE_TO_DEVICE: (True, True)}


@api("acl.rt.memcpy", need_ctx=True)
def memcpy(dst: int, dest_max: int, src: int, count: int, kind: int) -> int:
    """Synchronous copy with bounds and (in ACL_HOST mode) memory-kind checks."""
    if kind not in _KIND_SIDES:
        STATE.note("memcpy kind %r invalid (0..3)", kind)
        return ERR_RT_PARAM_INVALID
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (dest_max, count)) or count < 0:
        return ERR_RT_PARAM_INVALID
    if count > dest_max:
        STATE.note("memcpy count %d > dest_max %d", count, dest_max)
        return ERR_RT_PARAM_INVALID
    with STATE.memory.lock:
        d = STATE.memory.span(dst, count)
        s = STATE.memory.span(src, count)
        if d is None or s is None:
            STATE.note("memcpy of %d bytes: %s address %r is unknown or the range leaves its region",
                      count, "destination" if d is None else "source", dst if d is None else src)
            return ERR_RT_PARAM_INVALID
        if STATE.options.run_mode == ACL_HOST:
            want_dst_dev, want_src_dev = _KIND_SIDES[kind]
            if _is_device(d[0].kind) != want_dst_dev or _is_device(s[0].kind) != want_src_dev:
                STATE.note("memcpy kind %d does not match memory (dst %s, src %s) in ACL_HOST mode",
                          kind, d[0].kind, s[0].kind)
                return ERR_RT_INVALID_MEMORY_TYPE
        if count:
            d[1][...] = np.array(s[1], copy=True) if d[0] is s[0] else s[1]
    return ACL_SUCCESS


@api("acl.rt.memset", need_ctx=True)
def memset(dev_ptr: int, max_count: int, value: int, count: int) -> int:
    """Fill ``count`` bytes with ``value`` (count <= max_count, inside the region)."""
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (max_count, value, count)):
        return ERR_RT_PARAM_INVALID
    if count < 0 or count > max_count or not 0 <= value <= 255:
        STATE.note("memset count %d, max_count %d, value %d invalid", count, max_count, value)
        return ERR_RT_PARAM_INVALID
    with STATE.memory.lock:
        d = STATE.memory.span(dev_ptr, count)
        if d is None:
            STATE.note("memset of %d bytes at %r: unknown address or out of its region", count, dev_ptr)
            return ERR_RT_PARAM_INVALID
        d[1][...] = value
    return ACL_SUCCESS


__all__ = ["set_device", "reset_device", "create_context", "destroy_context", "set_context", "get_context",
           "get_run_mode", "create_stream", "destroy_stream", "synchronize_stream", "malloc", "free",
           "malloc_host", "free_host", "memcpy", "memset", "HOST_KINDS"]
