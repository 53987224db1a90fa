"""InferenceDevice: everything the rest of the appliance may use of the NPU, as one abstract class.

:class:`~.resilient.ResilientDevice` (the real pyACL session or the simulator, with retries and re-initialisation)
implements it, and so do the fakes in the tests; nothing outside ``device/`` uses a device any other way.

Slots: ``n_slots`` input/output buffer pairs. ``submit(slot, x)`` starts an execute and returns at once;
``collect(slot)`` waits for it and returns the output (never a stale one); ``infer`` does both. While one
slot executes, the host fills the other (double buffering). A submission the caller gives up on (to redo its
job synchronously) must be ``discard``-ed so ``busy_since`` does not report it as still in flight.
"""
from __future__ import annotations

import abc
from typing import Any, Dict, Optional

import numpy as np

from .state import DeviceState


class InferenceDevice(abc.ABC):
    """One model on one NPU (or its simulation), shared by the threads of one pipeline.

    Attributes every implementation keeps current: ``state`` (:class:`DeviceState`), ``last_error`` (text,
    empty when none), ``runtime_info`` (``{"runtime": "acl"|"sim", "soc": ..., "warning": ...}``), ``stats``
    (counters: executes, retries, reinits, failures).
    """

    state: DeviceState
    last_error: str
    runtime_info: Dict[str, Any]
    stats: Dict[str, int]

    @abc.abstractmethod
    def start(self) -> "InferenceDevice":
        """Open the device and load the model; raises DeviceError when it cannot."""

    @abc.abstractmethod
    def restart(self) -> None:
        """Leave ``FAILED``: drop everything and open again."""

    @abc.abstractmethod
    def close(self, finalize: bool = False) -> None:
        """Release the device (``finalize``: also the runtime, once per process)."""

    @abc.abstractmethod
    def infer(self, slot: int, array: np.ndarray) -> np.ndarray:
        """Execute ``array`` on ``slot`` and return the output (synchronous)."""

    @abc.abstractmethod
    def submit(self, slot: int, array: np.ndarray) -> None:
        """Start executing ``array`` on ``slot``; returns once the execute is queued."""

    @abc.abstractmethod
    def collect(self, slot: int) -> np.ndarray:
        """Wait for ``slot``'s execute and return its output; raises its error."""

    @abc.abstractmethod
    def discard(self, slot: int) -> None:
        """Forget a submission on ``slot`` that will not be collected."""

    @property
    @abc.abstractmethod
    def busy_since(self) -> Optional[float]:
        """``time.monotonic()`` at which the oldest execute still in flight started; None when idle."""

    def __enter__(self) -> "InferenceDevice":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
