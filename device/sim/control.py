"""Test and configuration API of the simulated runtime (``device.sim.control``).

``configure(options)`` applies ``sim_options`` (see :mod:`device.sim.faults`); ``reset()`` makes the simulator a
fresh process (no init, no resources, default options, no leaks recorded).  Fault injection:
``inject_fault(call, code, times=1, after=0)`` makes the named call (e.g. ``"acl.mdl.execute"``) return ``code``
``times`` times (``None``/-1: always) after ``after`` successful calls.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from . import util
from .faults import SimOptions, parse_options
from .state import STATE

log = logging.getLogger("vessel_seg.device.sim")

__all__ = ["configure", "options", "reset", "inject_fault", "clear_faults", "pending_faults", "set_hang",
           "set_device_time_ms", "set_precision", "set_compute", "leak_report", "stats", "live_resources",
           "is_initialized"]


def configure(sim_options: Optional[Dict[str, Any]] = None) -> SimOptions:
    """Replace all options (defaults for keys not given) and the fault list; returns the validated options."""
    opts = parse_options(sim_options)
    with STATE.lock:
        STATE.options = opts
        STATE.faults.clear()
        for spec in opts.faults:
            STATE.faults.add(spec["call"], spec["code"], spec["times"], spec["after"])
        _apply_hang(opts.hang_execute)
        _apply_util_visibility(opts.hide_bytes_to_ptr)
    log.info("sim: options %s", {k: v for k, v in opts.as_dict().items() if k != "faults"})
    return opts


def options() -> Dict[str, Any]:
    """Current options as a dict."""
    return STATE.options.as_dict()


def reset() -> None:
    """Fresh simulated process with default options."""
    STATE.reset()
    configure(None)


def inject_fault(call: str, code: int, times: Optional[int] = 1, after: int = 0) -> None:
    """Make ``call`` return ``code`` ``times`` times (None or -1: always) after ``after`` calls."""
    STATE.faults.add(call, code, times, after)


def clear_faults() -> None:
    STATE.faults.clear()


def pending_faults() -> List[Dict[str, Any]]:
    return STATE.faults.pending()


def _apply_hang(on: bool) -> None:
    STATE.options.hang_execute = bool(on)
    if on:
        STATE.hang_release.clear()
    else:
        STATE.hang_release.set()


def set_hang(on: bool) -> None:
    """Make executes block (True) or release blocked ones (False)."""
    _apply_hang(on)


def set_device_time_ms(ms: Optional[float]) -> None:
    """Fixed device time per execute in ms (None: compute time only)."""
    if ms is not None and (isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms < 0):
        raise ValueError("device_time_ms must be a number >= 0 or None, got %r" % (ms,))
    STATE.options.device_time_ms = None if ms is None else float(ms)


def set_precision(precision: str) -> None:
    if precision not in ("fp32", "fp16"):
        raise ValueError("precision must be fp32 or fp16, got %r" % (precision,))
    STATE.options.precision = precision


def set_compute(compute: str) -> None:
    if compute not in ("real", "surrogate"):
        raise ValueError("compute must be real or surrogate, got %r" % (compute,))
    STATE.options.compute = compute


def _apply_util_visibility(hide: bool) -> None:
    STATE.options.hide_bytes_to_ptr = bool(hide)
    for name in util.HIDEABLE:
        if hide and hasattr(util, name):
            delattr(util, name)
        elif not hide:
            setattr(util, name, util.ORIGINALS[name])


def leak_report() -> List[str]:
    """Leaks found at reset_device/finalize since the last reset (empty after a clean teardown)."""
    return list(STATE.leaks)


def stats() -> Dict[str, int]:
    """Call counters (by ACL call name) plus ``executes`` (completed device executions)."""
    return dict(STATE.counters)


def live_resources() -> Dict[str, int]:
    """Counts of live simulated resources (for leak assertions in tests)."""
    with STATE.lock:
        return {
            "devices": len(STATE.devices),
            "contexts": sum(1 for c in STATE.contexts.values() if c.alive and not c.default),
            "streams": len(STATE.streams),
            "models": len(STATE.models),
            "descs": len(STATE.descs),
            "datasets": len(STATE.datasets),
            "data_buffers": len(STATE.data_buffers),
            "memory_regions": len(STATE.memory.allocated()),
        }


def is_initialized() -> bool:
    return STATE.initialized
