"""ResilientDevice: the pipeline's handle on the NPU, with retries, re-initialisation and health state.

Failure handling per ACL error class (:func:`device.errors.classify`):

* transient (507011, 507013, 507014, 3xxxxx): retry the whole operation (write, execute, read) up to ``retries``
  times with exponential backoff (``backoff_s`` doubling up to ``max_backoff_s``);
* device (other 507xxx, 5xxxxx, allocation failures) or transient failures that outlived their retries:
  re-initialise the session (close without finalize, i.e. reset the device, then reopen and reload the model),
  up to ``max_reinits`` times per operation;
* permanent (1xxxxx, 2000xx, ...), errors that are not ACL codes (missing model.om, bundle/model mismatch), or
  failures after all re-initialisations: ``state = DeviceState.FAILED`` with ``last_error``; every later call raises
  :class:`DeviceError` until :meth:`restart`.

Watchdog support: ``last_progress`` (time.monotonic of the last completed execute, or of construction) and
``busy_since`` (monotonic start of the oldest execute in flight, None when idle).
A submission counts as in flight from :meth:`submit` until its :meth:`collect` returns or raises; a caller that
abandons a submission (e.g. to redo the job synchronously) must :meth:`discard` it.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar, Union

import numpy as np

from .bundle import ModelBundle, load_bundle
from .errors import AclError, DeviceError
from .interface import InferenceDevice
from .session import DeviceSession, open_session
from .state import DeviceState

log = logging.getLogger(__name__)

__all__ = ["ResilientDevice"]

T = TypeVar("T")


class ResilientDevice(InferenceDevice):
    """Owns a :class:`DeviceSession`; thread-safe; see the module docstring for the failure policy."""

    def __init__(self, bundle: Union[ModelBundle, str], runtime: str = "auto",
                 sim_options: Optional[Dict[str, Any]] = None, retries: int = 3, device_id: int = 0,
                 n_slots: int = 2, backoff_s: float = 0.05, max_backoff_s: float = 2.0, max_reinits: int = 2,
                 reinit_backoff_s: float = 0.2, drain_timeout_s: float = 30.0) -> None:
        self.bundle = bundle if isinstance(bundle, ModelBundle) else load_bundle(str(bundle))
        self.runtime = runtime
        self.sim_options = sim_options
        self.retries = retries
        self.device_id = device_id
        self.n_slots = n_slots
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_reinits = max_reinits
        self.reinit_backoff_s = reinit_backoff_s
        self.drain_timeout_s = drain_timeout_s
        self.state = DeviceState.STARTING
        self.last_error = ""
        self.runtime_info: Dict[str, Any] = {}
        self.stats: Dict[str, int] = {"executes": 0, "retries": 0, "reinits": 0, "failures": 0}
        self.last_progress = time.monotonic()
        self._cond = threading.Condition(threading.RLock())
        self._session: Optional[DeviceSession] = None
        self._gen = 0
        self._active = 0
        self._reinitialising = False
        self._inflight: Dict[int, float] = {}
        self._tokens = itertools.count(1)
        self._submitted: Dict[int, Tuple[np.ndarray, int]] = {}
        self._sim_configured = False

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "ResilientDevice":
        """Open the session now (otherwise the first call does); raises DeviceError if the device FAILED."""
        self._run(lambda s: None)
        return self

    def restart(self) -> None:
        """Leave FAILED: drop the session and try again from scratch."""
        with self._cond:
            old, self._session = self._session, None
            self._gen += 1
            self.state = DeviceState.STARTING
            self.last_error = ""
        self._close_quietly(old)
        self.start()

    def close(self, finalize: bool = False) -> None:
        """Close the session (``finalize=True`` also finalizes pyACL; see DeviceSession.close)."""
        with self._cond:
            old, self._session = self._session, None
            self._gen += 1
            self.state = DeviceState.CLOSED
            for slot in list(self._submitted):  # nothing can complete on a closed device
                self._drop_submission_locked(slot)
        if old is not None:
            old.close(finalize=finalize)

    @property
    def session(self) -> Optional[DeviceSession]:
        """The current session (None before start, while recovering, or after close)."""
        return self._session

    # -- watchdog --------------------------------------------------------------------------------
    @property
    def busy_since(self) -> Optional[float]:
        """time.monotonic() at which the oldest execute still in flight started; None when idle.

        In-flight marks: positive keys are running infer/collect calls, ``-slot - 1`` a submission not yet
        collected; a submission mark without its submission (should one ever be left behind) is not counted.
        """
        with self._cond:
            times = [t for key, t in self._inflight.items() if key > 0 or (-key - 1) in self._submitted]
            return min(times) if times else None

    def _busy(self) -> int:
        token = next(self._tokens)
        with self._cond:
            self._inflight[token] = time.monotonic()
        return token

    def _idle(self, token: int, progressed: bool) -> None:
        with self._cond:
            self._inflight.pop(token, None)
            if progressed:
                self.last_progress = time.monotonic()
                self.stats["executes"] += 1

    def _run_tracked(self, op: Callable[[DeviceSession], T], token: int) -> T:
        """Run ``op`` under the failure policy while ``token`` counts as in flight; a success is progress."""
        ok = False
        try:
            out = self._run(op)
            ok = True
            return out
        finally:
            self._idle(token, ok)

    # -- inference -------------------------------------------------------------------------------
    def infer(self, slot: int, array: np.ndarray) -> np.ndarray:
        """write_input + execute + read_output on ``slot`` with the failure policy; returns float32 output."""
        def op(s: DeviceSession) -> np.ndarray:
            s.write_input(slot, array)
            s.execute(slot)
            return s.read_output(slot)

        return self._run_tracked(op, self._busy())

    def submit(self, slot: int, array: np.ndarray) -> None:
        """Write ``array`` into ``slot`` and enqueue an async execute; pair with :meth:`collect`."""
        def op(s: DeviceSession) -> int:
            s.write_input(slot, array)
            s.execute_async(slot)
            return self._gen

        gen = self._run(op)
        with self._cond:
            self._submitted[slot] = (array, gen)
            self._inflight[-slot - 1] = time.monotonic()

    def discard(self, slot: int) -> None:
        """Forget the uncollected submission on ``slot`` (its job is redone elsewhere); idempotent.

        It no longer counts as in flight for :attr:`busy_since`; a later write to the slot waits for the
        abandoned execute to finish on the device and never returns its output.
        """
        with self._cond:
            self._drop_submission_locked(slot)

    def _drop_submission_locked(self, slot: int) -> None:
        self._submitted.pop(slot, None)
        self._inflight.pop(-slot - 1, None)

    def collect(self, slot: int) -> np.ndarray:
        """Wait for the async execute of ``slot`` and return its output (re-executed if that failed)."""
        with self._cond:
            if slot not in self._submitted:
                raise ValueError("collect(%d): nothing was submitted on that slot" % slot)
            array, gen = self._submitted.pop(slot)
            # in flight since the submit, until this collect returns or raises
            token = next(self._tokens)
            self._inflight[token] = self._inflight.pop(-slot - 1, time.monotonic())
        first = [True]

        def op(s: DeviceSession) -> np.ndarray:
            if first[0] and gen == self._gen:
                first[0] = False
                # drains the stream; raises THIS slot's async failure instead of returning a stale buffer
                return s.read_output(slot)
            first[0] = False  # this slot's async run failed or its session is gone: run it again synchronously
            s.write_input(slot, array)
            s.execute(slot)
            return s.read_output(slot)

        return self._run_tracked(op, token)

    # -- failure policy --------------------------------------------------------------------------
    def _run(self, op: Callable[[DeviceSession], T]) -> T:
        retries_left = self.retries
        reinits_left = self.max_reinits
        delay = self.backoff_s
        while True:
            try:
                session, gen = self._enter()
            except AclError as exc:  # opening the session failed
                if exc.kind in ("transient", "device") and reinits_left > 0:
                    reinits_left -= 1
                    self._note_reinit(exc)
                    time.sleep(self.reinit_backoff_s)
                    continue
                raise self._fail(exc)
            except DeviceError as exc:
                if self.state in (DeviceState.FAILED, DeviceState.CLOSED):
                    raise
                raise self._fail(exc)  # not an ACL code (missing model.om, model/bundle mismatch): permanent
            try:
                result = op(session)
            except AclError as exc:
                self._exit()
                if exc.transient and retries_left > 0:
                    retries_left -= 1
                    with self._cond:
                        self.stats["retries"] += 1
                    log.warning("device: %s; retrying in %.2f s", exc, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, self.max_backoff_s)
                    continue
                if exc.kind in ("transient", "device") and reinits_left > 0:
                    reinits_left -= 1
                    self._reinit(gen, exc)
                    continue
                raise self._fail(exc)
            except DeviceError as exc:
                self._exit()
                if gen != self._gen:  # the session was replaced under us: try again on the new one
                    continue
                raise self._fail(exc)
            except BaseException:
                self._exit()
                raise
            self._exit()
            return result

    def _enter(self) -> Tuple[DeviceSession, int]:
        with self._cond:
            while self._reinitialising:
                self._cond.wait()
            if self.state == DeviceState.FAILED:
                raise DeviceError("device failed: %s" % self.last_error)
            if self.state == DeviceState.CLOSED:
                raise DeviceError("device is closed")
            if self._session is None:
                self._open_locked()
            self._active += 1
            return self._session, self._gen  # type: ignore[return-value]

    def _exit(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def _open_locked(self) -> None:
        # sim_options are applied once: re-initialisations must not re-arm injected faults
        options = self.sim_options if not self._sim_configured else None
        session = open_session(self.bundle, self.runtime, self.device_id, self.n_slots, options)
        self._sim_configured = True
        self._session = session
        self._gen += 1
        self.runtime_info = dict(session.runtime_info)
        self.state = DeviceState.READY
        self.last_error = ""
        log.info("device ready: %s", session)

    def _note_reinit(self, exc: BaseException) -> None:
        with self._cond:
            self.stats["reinits"] += 1
            self.state = DeviceState.RECOVERING
            self.last_error = str(exc)
        log.warning("device: %s; re-initialising", exc)

    def _reinit(self, gen: int, exc: AclError) -> None:
        with self._cond:
            if gen != self._gen or self._reinitialising:
                while self._reinitialising:
                    self._cond.wait()
                return  # another thread already re-initialised after this failure
            self._reinitialising = True
            deadline = time.monotonic() + self.drain_timeout_s
            while self._active > 0 and time.monotonic() < deadline:
                self._cond.wait(0.1)
            if self._active > 0:
                log.error("device: %d operation(s) still in flight after %.0f s; re-initialising anyway",
                          self._active, self.drain_timeout_s)
            old, self._session = self._session, None
            self._gen += 1
        self._note_reinit(exc)
        try:
            self._close_quietly(old)
            time.sleep(self.reinit_backoff_s)
        finally:
            with self._cond:
                self._reinitialising = False
                self._cond.notify_all()

    @staticmethod
    def _close_quietly(session: Optional[DeviceSession]) -> None:
        if session is None:
            return
        try:
            session.close()
        except (AclError, DeviceError) as exc:
            log.warning("device: closing the failed session: %s", exc)

    def _fail(self, exc: BaseException) -> DeviceError:
        with self._cond:
            self.state = DeviceState.FAILED
            self.stats["failures"] += 1
            self.last_error = str(exc)
            old, self._session = self._session, None
            self._gen += 1
        log.error("device FAILED: %s", exc)
        self._close_quietly(old)
        err = DeviceError("device failed: %s" % exc)
        err.__cause__ = exc
        return err

    def status(self) -> Dict[str, Any]:
        """Snapshot for the daemon/status page."""
        with self._cond:
            return {"state": str(self.state), "last_error": self.last_error, "stats": dict(self.stats),
                    "runtime_info": dict(self.runtime_info), "busy_since": self.busy_since,
                    "last_progress": self.last_progress}
