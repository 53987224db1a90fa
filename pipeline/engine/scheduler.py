"""The scheduler: host workers around ONE device thread, with an explicit state machine and backpressure.

Threads and queues (all queues bounded; every put blocks when full, so a slow stage throttles the ones
before it, back to the capture watcher; nothing is dropped)::

    submit() -> [in_q] -> pre workers (decode, preprocess, resize) -> [dev_q] -> device thread
             -> [post_q] -> post workers (probability.bin, render, result.json) -> callbacks.on_done

The device thread owns the device and double-buffers over two input slots: while slot A executes
(``execute_async``), the next job's input is written into slot B; then it waits for A, starts B at once,
and only then hands A's output on.

States (``PipelineState``): starting -> running <-> paused -> draining -> stopped. Paused has reasons
by kind ("disk", "device", "manual"): new inputs are held while any reason is active; in-flight work
continues (or retries every ``retry_interval_s``). ``stop(timeout)`` drains: no new inputs are taken,
in-flight jobs finish; what is still queued stays in the journal for the next start.

Error policy: ``DecodeError`` in the pre stage -> ``on_rejected`` (quarantine; permanent). Other exceptions
in host stages -> ``on_rejected`` with reason "processing_error" (the file is preserved in quarantine).
Device errors -> pause("device") and retry the same job until it succeeds or the scheduler is aborted
(the item stays 'processing' in the journal: never lost). OSError while writing results (ENOSPC, EIO,
permissions) -> pause("disk") and retry the same write; nothing partial is left behind.
"""
from __future__ import annotations

import collections
import enum
import logging
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from vessel_seg.device.interface import InferenceDevice
from vessel_seg.device.state import DeviceState
from vessel_seg.pipeline.engine.decode import DecodeError
from vessel_seg.pipeline.engine.stages import Job, Stages, WorkItem
from vessel_seg.pipeline.engine.telemetry import Metrics
from vessel_seg.pipeline.engine.workqueue import WorkQueue
from vessel_seg.pipeline.store.atomic import is_disk_full

log = logging.getLogger(__name__)


class PipelineState(str, enum.Enum):
    """Life cycle of the pipeline."""

    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    DRAINING = "draining"
    STOPPED = "stopped"


TRANSITIONS = {
    PipelineState.STARTING: {PipelineState.RUNNING, PipelineState.PAUSED, PipelineState.DRAINING,
                             PipelineState.STOPPED},
    PipelineState.RUNNING: {PipelineState.PAUSED, PipelineState.DRAINING},
    PipelineState.PAUSED: {PipelineState.RUNNING, PipelineState.DRAINING},
    PipelineState.DRAINING: {PipelineState.STOPPED},
    PipelineState.STOPPED: set(),
}


class InvalidTransition(RuntimeError):
    """A state change the state machine does not allow."""


class SchedulerCallbacks(object):
    """What the scheduler reports; the daemon overrides these (journal, quarantine, archive)."""

    def on_start(self, item: WorkItem) -> None:
        """An item left the input queue and is being processed."""

    def on_done(self, job: Job) -> None:
        """The result is complete (result.json written)."""

    def on_rejected(self, item: WorkItem, reason: str, detail: str) -> None:
        """The input cannot be processed (permanent)."""

    def on_state(self, state: PipelineState, reason: str) -> None:
        """The pipeline state or pause reason changed."""


class Scheduler(object):
    """Runs ``Stages`` around a device in worker threads (see module docstring)."""

    def __init__(self, stages: Stages, device: InferenceDevice, callbacks: Optional[SchedulerCallbacks] = None,
                 pre_workers: int = 2, post_workers: int = 2, queue_size: int = 8,
                 retry_interval_s: float = 5.0, metrics: Optional[Metrics] = None) -> None:
        self.stages = stages
        self.device = device
        self.callbacks = callbacks or SchedulerCallbacks()
        self.metrics = metrics or Metrics()
        self.retry_interval_s = retry_interval_s
        self.n_pre = pre_workers
        self.n_post = post_workers
        self.in_q = WorkQueue(queue_size, "input")
        # Jobs carry decoded images: keep the inner queues short (memory), but deep enough to overlap.
        self.dev_q = WorkQueue(max(2, pre_workers), "device")
        self.post_q = WorkQueue(max(2, post_workers), "post")
        self._lock = threading.RLock()
        self._state = PipelineState.STARTING
        self._pauses: Dict[str, str] = {}
        self._abort = threading.Event()
        self._threads: List[threading.Thread] = []
        self._pre_alive = 0
        self._in_flight = 0
        self._executing = 0

    # ------------------------------------------------------------------ state machine
    @property
    def state(self) -> PipelineState:
        return self._state

    @property
    def paused_reason(self) -> str:
        with self._lock:
            return "; ".join(self._pauses[k] for k in sorted(self._pauses))

    def _transition(self, new: PipelineState) -> None:
        with self._lock:
            old = self._state
            if new == old:
                return
            if new not in TRANSITIONS[old]:
                raise InvalidTransition("pipeline cannot go from %s to %s" % (old.value, new.value))
            self._state = new
            reason = self.paused_reason
        log.info("pipeline %s -> %s%s", old.value, new.value, (" (%s)" % reason) if reason else "")
        self._notify_state()

    def _notify_state(self) -> None:
        try:
            self.callbacks.on_state(self._state, self.paused_reason)
        except Exception:
            log.exception("on_state callback failed")

    def pause(self, reason: str, kind: str = "manual") -> None:
        """Hold new inputs with a reason (several kinds may be active at once)."""
        with self._lock:
            changed = self._pauses.get(kind) != reason
            self._pauses[kind] = reason
            self.in_q.hold(True)
            if self._state == PipelineState.RUNNING:
                self._transition(PipelineState.PAUSED)
            elif changed:
                self._notify_state()
        if changed:
            log.warning("pipeline paused: %s", reason)

    def resume(self, kind: str = "manual") -> None:
        """Clear one pause reason; running again when none is left."""
        with self._lock:
            if self._pauses.pop(kind, None) is None:
                return
            log.info("pause reason %r cleared", kind)
            if self._pauses:
                self._notify_state()
                return
            self.in_q.hold(False)
            if self._state == PipelineState.PAUSED:
                self._transition(PipelineState.RUNNING)

    # ------------------------------------------------------------------ public API
    def start(self) -> None:
        """Start the worker threads; the state becomes running."""
        with self._lock:
            if self._threads:
                raise InvalidTransition("scheduler already started")
            self._pre_alive = self.n_pre
            for i in range(self.n_pre):
                self._spawn(self._pre_worker, "pre-%d" % i)
            self._spawn(self._device_loop, "device")
            for i in range(self.n_post):
                self._spawn(self._post_worker, "post-%d" % i)
            self._transition(PipelineState.PAUSED if self._pauses else PipelineState.RUNNING)

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name="vs-" + name, daemon=True)
        self._threads.append(t)
        t.start()

    def submit(self, item: WorkItem, timeout: Optional[float] = None) -> bool:
        """Queue an item, blocking while the input queue is full. False: not accepted (stopping)."""
        if self._state in (PipelineState.DRAINING, PipelineState.STOPPED):
            return False
        return self.in_q.put(item, timeout)

    def begin_drain(self) -> None:
        """Stop accepting: blocked ``submit`` calls return False at once; queued items stay for ``leftover``."""
        with self._lock:
            if self._state in (PipelineState.DRAINING, PipelineState.STOPPED):
                return
            self._transition(PipelineState.DRAINING)
            self.in_q.close(discard=True)
            self.in_q.hold(False)

    def stop(self, timeout: float) -> bool:
        """Drain: take no new inputs, finish in-flight jobs within ``timeout`` seconds. True if all finished."""
        with self._lock:
            if self._state == PipelineState.STOPPED:
                return True
            self.begin_drain()
            if not self._threads:
                self._transition(PipelineState.STOPPED)
                return True
        deadline = time.monotonic() + max(0.0, timeout)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        finished = not any(t.is_alive() for t in self._threads)
        if not finished:
            log.warning("shutdown timeout (%.1f s): %d job(s) unfinished; they stay in the journal",
                        timeout, self._in_flight)
            self._abort.set()
            self.dev_q.close(discard=True)
            self.post_q.close(discard=True)
        self._transition(PipelineState.STOPPED)
        return finished

    def leftover(self) -> List[WorkItem]:
        """Items still queued (not started) after ``stop``; they remain 'queued' in the journal."""
        return self.in_q.drain()

    def depths(self) -> Dict[str, int]:
        """Queue depths and in-flight count."""
        return {"input": len(self.in_q), "device": len(self.dev_q), "post": len(self.post_q),
                "in_flight": self._in_flight, "executing": self._executing}

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def dead_threads(self) -> List[str]:
        """Names of the worker and device threads that have ended (they only should while draining)."""
        return [t.name for t in list(self._threads) if not t.is_alive()]

    # ------------------------------------------------------------------ helpers
    def _finished_item(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _reject(self, item: WorkItem, reason: str, detail: str) -> None:
        self.metrics.inc("failed")
        try:
            self.callbacks.on_rejected(item, reason, detail)
        except Exception:
            log.exception("on_rejected callback failed for %s", item.source)
        finally:
            self._finished_item()

    # ------------------------------------------------------------------ pre workers
    def _pre_worker(self) -> None:
        try:
            while True:
                item = self.in_q.get()
                if item is None:
                    break
                with self._lock:
                    self._in_flight += 1
                try:
                    self.callbacks.on_start(item)
                except Exception:
                    log.exception("on_start callback failed for %s", item.source)
                try:
                    job = self.stages.prepare(item)
                except DecodeError as exc:
                    self._reject(item, exc.reason, exc.detail)
                    continue
                except Exception as exc:
                    log.exception("host preprocessing failed for %s", item.source)
                    self._reject(item, "processing_error", "%s: %s" % (type(exc).__name__, exc))
                    continue
                if not self.dev_q.put(job):   # closed only on abort
                    self._finished_item()
                    break
        finally:
            with self._lock:
                self._pre_alive -= 1
                last = self._pre_alive == 0
            if last:
                self.dev_q.close()

    # ------------------------------------------------------------------ device thread
    def _submit(self, slot: int, job: Job, tile: int) -> None:
        """Write tile ``tile`` of the job's input into ``slot`` and enqueue its execute (returns at once)."""
        if tile == 0:
            job.tile_outputs = []
            job.timings_ms["_exec_t0"] = time.perf_counter()
        self.device.submit(slot, job.model_inputs[tile])

    def _collect(self, slot: int, job: Job, tile: int) -> bool:
        """Wait for the execute on ``slot`` and keep its output; True when it was the job's last tile (the
        outputs are then stitched into the job's probability)."""
        job.tile_outputs.append(np.asarray(self.device.collect(slot), dtype=np.float32))
        if tile + 1 < len(job.model_inputs):
            return False
        self.stages.stitch(job, job.tile_outputs)
        job.tile_outputs = []
        self._executed(job)
        return True

    @staticmethod
    def _executed(job: Job) -> None:
        t0 = job.timings_ms.pop("_exec_t0", None)
        if t0 is not None:
            job.timings_ms["execute"] = (time.perf_counter() - t0) * 1000.0

    def _execute_with_retry(self, slot: int, job: Job) -> bool:
        """Synchronous execute of every tile, retried every retry_interval_s while the device fails. False on
        abort."""
        while not self._abort.is_set():
            try:
                if self.device.state is DeviceState.FAILED:
                    log.info("restarting the failed device")
                    self.device.restart()
                job.timings_ms["_exec_t0"] = time.perf_counter()
                self.stages.run_model(job, lambda x: self.device.infer(slot, x))
                self._executed(job)
                self.resume("device")
                return True
            except Exception as exc:
                job.timings_ms.pop("_exec_t0", None)
                self._device_trouble(exc)
                if self._abort.wait(self.retry_interval_s):
                    break
        return False

    def _device_trouble(self, exc: BaseException) -> None:
        self.metrics.inc("device_errors")
        log.warning("device error: %s", exc)
        self.pause("device error (%s): %s" % (self.device.state.value, exc), kind="device")

    def _emit(self, job: Job) -> bool:
        if not self.post_q.put(job):
            self._finished_item()
            return False
        return True

    def _device_loop(self) -> None:
        """Double buffering: keep up to two executes submitted (one per slot); collect the oldest, refill.

        An execute is one tile of a job (most jobs have one; a high-resolution working size has several, run
        in order). While slot A executes, the next tile's input is already written into slot B and its execute
        queued, so the device never waits for the host. Failures fall back to a synchronous, retried execute
        of each affected job, all its tiles (never dropped).
        """
        pending: "collections.deque[Tuple[int, Job, int]]" = collections.deque()
        partly: Optional[Tuple[Job, int]] = None   # (job, next tile) of a job whose later tiles are not submitted

        def free_slot() -> int:
            return 1 - pending[-1][0] if pending else 0

        def next_unit(block: bool) -> Optional[Tuple[Job, int]]:
            nonlocal partly
            if partly is not None:
                job, tile = partly
            else:
                job = self.dev_q.get() if block else self.dev_q.get_nowait()
                if job is None:
                    return None
                tile = 0
            partly = (job, tile + 1) if tile + 1 < len(job.model_inputs) else None
            return job, tile

        def affected(first: List[Job]) -> List[Job]:
            """The jobs to redo: ``first``, those in flight, the partly submitted one; each once, in order."""
            nonlocal partly
            jobs = first + [j for _, j, _ in pending] + ([partly[0]] if partly is not None else [])
            partly = None
            out: List[Job] = []
            for j in jobs:
                if not any(j is o for o in out):
                    out.append(j)
            return out

        def submit(unit: Tuple[Job, int]) -> bool:
            """Submit into the free slot; on failure redo everything in flight synchronously."""
            job, tile = unit
            slot = free_slot()
            try:
                self._submit(slot, job, tile)
                pending.append((slot, job, tile))
                self._executing = len(pending)
                return True
            except Exception as exc:
                self._device_trouble(exc)
                redo = affected([])
                if not any(job is j for j in redo):
                    redo.append(job)
                self._abandon(pending)
                return self._redo(redo)

        try:
            while not self._abort.is_set():
                while len(pending) < 2:           # block for work only when nothing is in flight
                    unit = next_unit(block=not pending)
                    if unit is None:
                        break
                    if not submit(unit):
                        return
                if not pending:
                    if self.dev_q.closed and len(self.dev_q) == 0 and partly is None:
                        break
                    continue
                slot, job, tile = pending.popleft()
                try:
                    done = self._collect(slot, job, tile)
                except Exception as exc:
                    self._device_trouble(exc)
                    redo = affected([job])
                    self._abandon(pending)
                    if not self._redo(redo):
                        return
                    continue
                self._executing = len(pending)
                self.resume("device")
                # refill before handing the output on, so the device stays busy while post_q is full
                if len(pending) < 2:
                    unit = next_unit(block=False)
                    if unit is not None and not submit(unit):
                        return
                if done and not self._emit(job):
                    return
        except Exception:
            log.exception("device thread crashed")
        finally:
            self._executing = 0
            self.post_q.close()

    def _abandon(self, pending: "collections.deque[Tuple[int, Job, int]]") -> None:
        """Forget submissions whose jobs are redone synchronously (no stale in-flight mark for the watchdog)."""
        while pending:
            slot = pending.popleft()[0]
            self.device.discard(slot)

    def _redo(self, jobs: List[Job]) -> bool:
        """Run jobs synchronously (with retries) in order and hand them on; False on abort."""
        for j in jobs:
            j.timings_ms.pop("_exec_t0", None)
            self._executing = 1
            ok = self._execute_with_retry(0, j)
            self._executing = 0
            if not ok or not self._emit(j):
                return False
        return True

    # ------------------------------------------------------------------ post workers
    def _post_worker(self) -> None:
        while True:
            job = self.post_q.get()
            if job is None:
                break
            if not self._finish_with_retry(job):
                if self._abort.is_set():
                    break
                continue
            for stage, ms in job.timings_ms.items():
                if not stage.startswith("_"):
                    self.metrics.observe(stage, ms)
            self.metrics.inc("processed")
            self.metrics.event("completed")
            try:
                self.callbacks.on_done(job)
            except Exception:
                log.exception("on_done callback failed for %s", job.item.source)
            finally:
                self._finished_item()

    def _finish_with_retry(self, job: Job) -> bool:
        while not self._abort.is_set():
            try:
                self.stages.finish(job)
                self.resume("disk")
                return True
            except OSError as exc:
                what = "disk full" if is_disk_full(exc) else "cannot write results"
                self.metrics.inc("write_errors")
                self.pause("%s (%s); retrying every %g s" % (what, exc, self.retry_interval_s), kind="disk")
                if self._abort.wait(self.retry_interval_s):
                    break
            except Exception as exc:
                log.exception("rendering/writing failed for %s", job.item.source)
                self._reject(job.item, "processing_error", "%s: %s" % (type(exc).__name__, exc))
                return False
        self._finished_item()
        return False
