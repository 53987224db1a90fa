"""Simulator options (``sim_options`` / config ``device.sim``) and fault injection.

Options (all optional):

``precision``        ``fp32`` (cv2.dnn, default) or ``fp16`` (numpy executor emulating the NPU's FP16)
``executor``         ``auto`` (cv2.dnn for fp32, numpy for fp16), ``cv2`` or ``numpy``
``compute``          ``real`` (run the network) or ``surrogate`` (timing emulation: output = 1 - luminance,
                     no network; only for benchmarks/stress tests)
``device_time_ms``   fixed device time per execute: the call sleeps (CPU released) until at least this much
                     time has passed since it started; ``null`` = just the compute time
``faults``           list of ``{call: "acl.mdl.execute", code: 507011, times: 1, after: 0}``; ``times: -1`` (or
                     null) = every call from then on
``hang_execute``     execute blocks until un-hung (control.set_hang(False)) or ``hang_timeout_s`` passes, then
                     returns 507014 ACL_ERROR_RT_AICORE_TIMEOUT
``hang_timeout_s``   default 600
``hang_after``       null (default) or N >= 0: once N executes have completed in this process, executes hang as
                     with ``hang_execute`` (one-shot; ``control.set_hang(False)`` releases them). Lets a config
                     file make a running daemon hang mid-run (stress tests of the watchdog path)
``run_mode``         0 ACL_DEVICE (the 200DK, default) or 1 ACL_HOST
``hide_bytes_to_ptr`` mimic CANN 5.x (acl.util has no bytes_to_ptr/ptr_to_bytes)
``memory_limit_mb``  simulated device memory (malloc + dvpp), default 4096; beyond it malloc gives 207001
``soc_name``         what acl.get_soc_name() returns, default "Ascend310"
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

log = logging.getLogger(__name__)

__all__ = ["SimOptions", "FaultRule", "FaultInjector", "parse_options"]


@dataclass
class FaultRule:
    """Fail ``call`` with ``code`` ``times`` times (None = forever) after ``after`` successful calls."""

    call: str
    code: int
    times: Optional[int] = 1
    after: int = 0
    seen: int = 0
    fired: int = 0

    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


@dataclass
class SimOptions:
    """Validated simulator options (see module docstring)."""

    precision: str = "fp32"
    executor: str = "auto"
    compute: str = "real"
    device_time_ms: Optional[float] = None
    faults: List[Dict[str, Any]] = field(default_factory=list)
    hang_execute: bool = False
    hang_timeout_s: float = 600.0
    hang_after: Optional[int] = None
    run_mode: int = 0
    hide_bytes_to_ptr: bool = False
    memory_limit_mb: float = 4096.0
    soc_name: str = "Ascend310"

    def as_dict(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


_CHOICES = {"precision": ("fp32", "fp16"), "executor": ("auto", "cv2", "numpy"), "compute": ("real", "surrogate"),
            "run_mode": (0, 1)}


def parse_options(options: Optional[Dict[str, Any]]) -> SimOptions:
    """Validate a ``sim_options`` mapping; raise ValueError naming the bad key."""
    opts = SimOptions()
    if not options:
        return opts
    if not isinstance(options, dict):
        raise ValueError("sim_options must be a mapping, got %s" % type(options).__name__)
    for key, value in options.items():
        if key not in opts.__dataclass_fields__:
            raise ValueError("sim_options: unknown option %r (known: %s)"
                             % (key, ", ".join(sorted(opts.__dataclass_fields__))))
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ValueError("sim_options: %s must be one of %s, got %r" % (key, _CHOICES[key], value))
        if key in ("device_time_ms",) and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError("sim_options: device_time_ms must be a number >= 0 or null, got %r" % value)
            value = float(value)
        if key in ("hang_timeout_s", "memory_limit_mb"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError("sim_options: %s must be a positive number, got %r" % (key, value))
            value = float(value)
        if key == "hang_after" and value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError("sim_options: hang_after must be an integer >= 0 or null, got %r" % (value,))
        if key in ("hang_execute", "hide_bytes_to_ptr") and not isinstance(value, bool):
            raise ValueError("sim_options: %s must be true or false, got %r" % (key, value))
        if key == "faults":
            if not isinstance(value, list):
                raise ValueError("sim_options: faults must be a list of {call, code, times, after}")
            value = [validate_fault(f) for f in value]
        setattr(opts, key, value)
    return opts


def validate_fault(spec: Any) -> Dict[str, Any]:
    """Check one fault spec mapping and return it normalised."""
    if not isinstance(spec, dict) or "call" not in spec or "code" not in spec:
        raise ValueError("sim_options: each fault needs 'call' and 'code', got %r" % (spec,))
    extra = set(spec) - {"call", "code", "times", "after"}
    if extra:
        raise ValueError("sim_options: fault has unknown keys %s" % sorted(extra))
    call, code = spec["call"], spec["code"]
    times = spec.get("times", 1)
    after = spec.get("after", 0)
    if not isinstance(call, str) or not call.startswith("acl."):
        raise ValueError("sim_options: fault call must be an acl call name like 'acl.mdl.execute', got %r" % call)
    if not isinstance(code, int) or isinstance(code, bool) or code == 0:
        raise ValueError("sim_options: fault code must be a non-zero integer, got %r" % code)
    if times is not None and (not isinstance(times, int) or isinstance(times, bool) or (times < 1 and times != -1)):
        raise ValueError("sim_options: fault times must be >= 1, or -1/null for always, got %r" % times)
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise ValueError("sim_options: fault after must be >= 0, got %r" % after)
    return {"call": call, "code": code, "times": None if times in (None, -1) else times, "after": after}


class FaultInjector:
    """Thread-safe fault rules consulted at the entry of every simulated ACL call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: List[FaultRule] = []
        self.fired: List[Dict[str, Any]] = []

    def add(self, call: str, code: int, times: Optional[int] = 1, after: int = 0) -> None:
        spec = validate_fault({"call": call, "code": code, "times": times, "after": after})
        with self._lock:
            self._rules.append(FaultRule(**spec))

    def clear(self) -> None:
        with self._lock:
            self._rules = []
            self.fired = []

    def pending(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [{"call": r.call, "code": r.code, "times": r.times, "after": r.after, "fired": r.fired}
                    for r in self._rules if not r.exhausted()]

    def check(self, call: str) -> int:
        """Error code to inject for this invocation of ``call`` (0 = none).  Counts the call."""
        with self._lock:
            code = 0
            for rule in self._rules:
                if rule.call != call or rule.exhausted():
                    continue
                rule.seen += 1
                if code == 0 and rule.seen > rule.after:
                    rule.fired += 1
                    code = rule.code
            if code:
                self.fired.append({"call": call, "code": code})
                log.info("sim: injected fault %s -> %d", call, code)
            return code
