"""Process-wide state of the simulated ACL runtime and the checks every simulated call goes through.

Rules enforced at the entry of each call (``api`` decorator), in this order:

1. forked child: any call in a process other than the one that called ``acl.init`` returns 500000
   ACL_ERROR_INTERNAL_ERROR (the real driver state does not survive ``fork``; use threads);
2. injected faults for this call name (``device.sim.control.inject_fault`` / ``sim_options.faults``);
3. ``acl.init`` done: else 100001 (after ``finalize`` too);
4. a live current context on the calling thread for resource-touching calls: else 107002.
Failures are return codes in the call's own return shape, never exceptions.
"""
from __future__ import annotations

import collections
import functools
import itertools
import logging
import os
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from .faults import FaultInjector, SimOptions
from .memory import MemoryRegistry

log = logging.getLogger("vessel_seg.device.sim")

ACL_SUCCESS = 0
ERR_INVALID_PARAM = 100000
ERR_UNINITIALIZE = 100001
ERR_REPEAT_INITIALIZE = 100002
ERR_INVALID_FILE = 100003
ERR_INVALID_MODEL_ID = 100011
ERR_PARSE_MODEL = 100013
ERR_REPEAT_FINALIZE = 100037
ERR_RT_PARAM_INVALID = 107000
ERR_RT_INVALID_DEVICEID = 107001
ERR_RT_CONTEXT_NULL = 107002
ERR_RT_STREAM_CONTEXT = 107003
ERR_RT_MODEL_CONTEXT = 107004
ERR_RT_INVALID_MEMORY_TYPE = 107016
ERR_GE_PARAM_INVALID = 145000
ERR_RT_FEATURE_NOT_SUPPORT = 207000
ERR_RT_MEMORY_ALLOCATION = 207001
ERR_RT_MEMORY_FREE = 207002
ERR_INTERNAL = 500000
ERR_RT_MODEL_EXECUTE = 507011
ERR_RT_AICORE_TIMEOUT = 507014

N_DEVICES = 1  # the Atlas 200 DK has device 0 only


class Context:
    """A simulated context (explicit, or a device's default context)."""

    def __init__(self, handle: int, device_id: int, default: bool) -> None:
        self.handle = handle
        self.device_id = device_id
        self.default = default
        self.alive = True
        self.streams: Set[int] = set()


class Stream:
    """A simulated stream: a FIFO of tasks run by its own worker thread.

    A task returns ``(code, commit)``; ``commit`` (writing results to device memory) runs only at
    ``synchronize_stream``, so results of ``execute_async`` are not visible before it.
    """

    def __init__(self, handle: int, ctx: Context) -> None:
        self.handle = handle
        self.ctx = ctx
        self.alive = True
        self._cond = threading.Condition()
        self._queue: Deque[Callable[[], Tuple[int, Optional[Callable[[bool], None]]]]] = collections.deque()
        self._running = False
        self._done: List[Tuple[int, Optional[Callable[[bool], None]]]] = []
        self._thread = threading.Thread(target=self._work, name="sim-stream-%x" % handle, daemon=True)
        self._thread.start()

    def enqueue(self, task: Callable[[], Tuple[int, Optional[Callable[[bool], None]]]]) -> None:
        with self._cond:
            self._queue.append(task)
            self._cond.notify_all()

    def pending(self) -> bool:
        with self._cond:
            return bool(self._queue) or self._running or bool(self._done)

    def _work(self) -> None:
        while True:
            with self._cond:
                while self.alive and not self._queue:
                    self._cond.wait()
                if not self.alive and not self._queue:
                    return
                task = self._queue.popleft()
                self._running = True
            try:
                result = task()
            except Exception:  # a simulator bug must not kill the stream silently
                log.exception("sim: stream task crashed")
                result = (ERR_INTERNAL, None)
            with self._cond:
                self._done.append(result)
                self._running = False
                self._cond.notify_all()

    def synchronize(self, publish: bool = True) -> int:
        """Block until the queue drains, then commit results; first failing task's code (or 0).

        ``publish=False`` drains without making results visible (a failed synchronize)."""
        with self._cond:
            while self._queue or self._running:
                self._cond.wait()
            done, self._done = self._done, []
        code = ACL_SUCCESS
        for task_code, commit in done:
            if commit is not None:
                commit(publish)  # publishes results of successful tasks and releases the model either way
            if task_code != ACL_SUCCESS and code == ACL_SUCCESS:
                code = task_code
        return code

    def stop(self) -> None:
        with self._cond:
            self.alive = False
            self._cond.notify_all()


class DeviceRecord:
    """set_device reference count and the device's default context."""

    def __init__(self, device_id: int, default_ctx: Context) -> None:
        self.device_id = device_id
        self.refcount = 0
        self.default_ctx = default_ctx


class SimState:
    """Everything a simulated process knows; ``reset()`` makes it a fresh process again."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.options = SimOptions()
        self.faults = FaultInjector()
        self.hang_release = threading.Event()
        self.leaks: List[str] = []
        self.counters: Dict[str, int] = collections.Counter()
        self._init_fields()

    def _init_fields(self) -> None:
        self.initialized = False
        self.finalized = False
        self.init_pid: Optional[int] = None
        self.tls = threading.local()
        self.devices: Dict[int, DeviceRecord] = {}
        self.contexts: Dict[int, Context] = {}
        self.streams: Dict[int, Stream] = {}
        self.models: Dict[int, Any] = {}
        self.descs: Dict[int, Dict[str, Any]] = {}
        self.datasets: Dict[int, List[int]] = {}
        self.data_buffers: Dict[int, Tuple[int, int]] = {}
        self.memory = MemoryRegistry()
        self._handles = itertools.count(0x10001)

    def reset(self) -> None:
        """Forget everything (a new process): stops stream workers, releases hung executes, clears leaks."""
        with self.lock:
            for stream in self.streams.values():
                stream.stop()
            self.hang_release.set()
            self._init_fields()
            self.leaks = []
            self.counters = collections.Counter()
            self.hang_release = threading.Event()

    def new_handle(self) -> int:
        return next(self._handles)

    # -- contexts -----------------------------------------------------------------------------
    def current_ctx(self) -> Optional[Context]:
        handle = getattr(self.tls, "ctx", 0)
        ctx = self.contexts.get(handle) if handle else None
        return ctx if ctx is not None and ctx.alive else None

    def bind(self, ctx: Optional[Context]) -> None:
        self.tls.ctx = ctx.handle if ctx is not None else 0

    def precheck(self, name: str, need_init: bool, need_ctx: bool) -> Tuple[int, bool]:
        """Common entry checks (module docstring); (0 or the error code, whether it was an injected fault)."""
        if self.init_pid is not None and os.getpid() != self.init_pid:
            self.note("%s called in a forked child (pid %d, acl.init in pid %d): use threads, not fork",
                      name, os.getpid(), self.init_pid)
            return ERR_INTERNAL, False
        code = self.faults.check(name)
        if code:
            self.note("%s: injected fault %d", name, code)
            return code, True
        if need_init and not self.initialized:
            self.note("%s before acl.init (or after acl.finalize)", name)
            return ERR_UNINITIALIZE, False
        if need_ctx and self.current_ctx() is None:
            self.note("%s on thread %s without a current context (call acl.rt.set_context first)",
                      name, threading.current_thread().name)
            return ERR_RT_CONTEXT_NULL, False
        return ACL_SUCCESS, False

    def note(self, fmt: str, *args: Any, level: int = logging.ERROR) -> None:
        """Log a simulated-runtime error and keep it as this thread's recent error message."""
        msg = fmt % args if args else fmt
        self.tls.err = msg
        log.log(level, "sim: %s", msg)

    def recent_error(self) -> str:
        msg = getattr(self.tls, "err", "")
        self.tls.err = ""
        return msg

    def report_leak(self, text: str) -> None:
        self.leaks.append(text)
        log.warning("sim leak: %s", text)

    def wait_if_hung(self) -> int:
        """Block while ``hang_execute`` is set (until un-hung or ``hang_timeout_s``); 0 or 507014.

        ``hang_after``: once that many executes have completed, set ``hang_execute`` (one-shot)."""
        after = self.options.hang_after
        if after is not None and not self.options.hang_execute and self.counters["executes"] >= after:
            with self.lock:
                if self.options.hang_after is not None:
                    log.warning("sim: %d executes completed: executes hang from now on (hang_after)",
                                self.counters["executes"])
                    self.options.hang_after = None
                    self.hang_release.clear()
                    self.options.hang_execute = True
        if not self.options.hang_execute:
            return ACL_SUCCESS
        event = self.hang_release
        deadline = time.monotonic() + self.options.hang_timeout_s
        log.warning("sim: execute hangs (hang_execute set)")
        while self.options.hang_execute:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.error("sim: hung execute timed out after %.1f s", self.options.hang_timeout_s)
                return ERR_RT_AICORE_TIMEOUT
            if event.wait(min(remaining, 0.5)):
                break
        return ACL_SUCCESS


STATE = SimState()

_FAILURE_SHAPES: Dict[str, Callable[[int], Any]] = {
    "ret": lambda code: code,
    "pair": lambda code: (0, code),
    "value": lambda code: 0,
    "dims": lambda code: ({}, code),
    "str": lambda code: "",
}


def api(name: str, returns: str = "ret", need_init: bool = True, need_ctx: bool = False,
        on_fault: Optional[Callable[..., None]] = None) -> Callable:
    """Decorate a simulated ACL call with the common entry checks and failure return shape.

    ``on_fault(*args)`` runs when a fault is injected into this call (e.g. a failed synchronize still drains)."""
    fail = _FAILURE_SHAPES[returns]

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            STATE.counters[name] += 1
            code, injected = STATE.precheck(name, need_init, need_ctx)
            if code:
                if injected and on_fault is not None:
                    on_fault(*args, **kwargs)
                return fail(code)
            return fn(*args, **kwargs)

        wrapper.acl_name = name  # type: ignore[attr-defined]
        return wrapper

    return deco
