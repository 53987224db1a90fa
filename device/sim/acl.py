"""The simulated ``acl`` module: ``from device.sim import acl`` gives pyACL's names and return shapes.

Top level: ``init``, ``finalize``, ``get_soc_name``, ``get_recent_err_msg``, data buffers; namespaces
``acl.rt``, ``acl.mdl``, ``acl.util``, ``acl.media``.  Init follows CANN 5.x: a second ``init`` returns 100002 even
after ``finalize``; a second ``finalize`` returns 100037; calls after ``finalize`` return 100001.
``finalize`` reports (logs and records, see ``device.sim.control.leak_report``) every resource still alive.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

from . import mdl, media, rt, util
from .state import (
    ACL_SUCCESS,
    ERR_INVALID_FILE,
    ERR_INVALID_PARAM,
    ERR_REPEAT_FINALIZE,
    ERR_REPEAT_INITIALIZE,
    ERR_UNINITIALIZE,
    STATE,
    api,
)

log = logging.getLogger("vessel_seg.device.sim")

__all__ = ["init", "finalize", "get_soc_name", "get_recent_err_msg", "create_data_buffer", "destroy_data_buffer",
           "get_data_buffer_addr", "get_data_buffer_size", "get_data_buffer_size_v2", "rt", "mdl", "util", "media"]


@api("acl.init", need_init=False)
def init(config_path: Optional[str] = None) -> int:
    """Initialise pyACL once per process (JSON config path optional)."""
    with STATE.lock:
        if STATE.initialized or STATE.finalized:
            # Expected when a process opens a second session (callers treat 100002 as "already up"),
            # so it is not logged as an error; after finalize it is one.
            STATE.note("acl.init called again%s", " after finalize (CANN 5.x: once per process)"
                       if STATE.finalized else "", level=logging.ERROR if STATE.finalized else logging.INFO)
            return ERR_REPEAT_INITIALIZE
        if config_path is not None and (not isinstance(config_path, str) or not os.path.isfile(config_path)):
            STATE.note("acl.init: config file %r not found", config_path)
            return ERR_INVALID_FILE
        STATE.initialized = True
        STATE.init_pid = os.getpid()
    log.info("sim: acl.init (simulated %s, pid %d)", STATE.options.soc_name, os.getpid())
    return ACL_SUCCESS


@api("acl.finalize", need_init=False)
def finalize() -> int:
    """Tear pyACL down; every resource still alive is reported as a leak and released."""
    with STATE.lock:
        if STATE.finalized:
            return ERR_REPEAT_FINALIZE
        if not STATE.initialized:
            return ERR_UNINITIALIZE
        _report_leaks_at_finalize()
        STATE.initialized = False
        STATE.finalized = True
    return ACL_SUCCESS


def _report_leaks_at_finalize() -> None:
    for stream in list(STATE.streams.values()):
        STATE.report_leak("stream 0x%x not destroyed before finalize" % stream.handle)
        stream.stop()
    STATE.streams.clear()
    for ctx in list(STATE.contexts.values()):
        if ctx.alive and not ctx.default:
            STATE.report_leak("context 0x%x not destroyed before finalize" % ctx.handle)
        ctx.alive = False
    STATE.contexts.clear()
    for dev_id, rec in list(STATE.devices.items()):
        STATE.report_leak("device %d still set (%d set_device without reset_device)" % (dev_id, rec.refcount))
    STATE.devices.clear()
    for mid, model in list(STATE.models.items()):
        STATE.report_leak("model %d (%s) not unloaded before finalize" % (mid, model.source))
    STATE.models.clear()
    for handle in list(STATE.descs):
        STATE.report_leak("model description 0x%x not destroyed" % handle)
    STATE.descs.clear()
    for handle in list(STATE.datasets):
        STATE.report_leak("dataset 0x%x not destroyed" % handle)
    STATE.datasets.clear()
    for handle in list(STATE.data_buffers):
        STATE.report_leak("data buffer 0x%x not destroyed" % handle)
    STATE.data_buffers.clear()
    for region in STATE.memory.allocated():
        STATE.report_leak("%d bytes of %s memory at 0x%x not freed" % (region.requested, region.kind, region.base))
        STATE.memory.release(region)


@api("acl.get_soc_name", returns="str", need_init=False)
def get_soc_name() -> str:
    """SoC name, "Ascend310" unless the ``soc_name`` option says otherwise."""
    return STATE.options.soc_name


def get_recent_err_msg() -> str:
    """The last error message recorded on this thread by the simulator (then cleared)."""
    return STATE.recent_error()


@api("acl.create_data_buffer", returns="value")
def create_data_buffer(data: int, size: int) -> int:
    """Wrap (ptr, size) in a data buffer handle; the memory is not owned by it."""
    if not isinstance(data, int) or not isinstance(size, int) or size < 0:
        STATE.note("create_data_buffer(%r, %r): bad arguments", data, size)
        return 0
    with STATE.lock:
        handle = STATE.new_handle()
        STATE.data_buffers[handle] = (data, size)
        return handle


@api("acl.destroy_data_buffer")
def destroy_data_buffer(data_buffer: int) -> int:
    """Destroy a data buffer handle (never frees the memory)."""
    with STATE.lock:
        if STATE.data_buffers.pop(data_buffer, None) is None:
            return ERR_INVALID_PARAM
    return ACL_SUCCESS


@api("acl.get_data_buffer_addr", returns="value")
def get_data_buffer_addr(data_buffer: int) -> int:
    return STATE.data_buffers.get(data_buffer, (0, 0))[0]


@api("acl.get_data_buffer_size", returns="value")
def get_data_buffer_size(data_buffer: int) -> int:
    return STATE.data_buffers.get(data_buffer, (0, 0))[1]


@api("acl.get_data_buffer_size_v2", returns="value")
def get_data_buffer_size_v2(data_buffer: int) -> int:
    return STATE.data_buffers.get(data_buffer, (0, 0))[1]
