"""Scheduler: state machine, double buffering on one device thread, backpressure, pause/retry, draining."""
from __future__ import annotations

import errno
import threading
import time

import pytest
from pipefakes import FakeDevice, fundus_like, make_stages, tiny_bundle, write_image

from vessel_seg.device import DeviceState
from vessel_seg.pipeline.engine.scheduler import InvalidTransition, PipelineState, Scheduler, SchedulerCallbacks
from vessel_seg.pipeline.engine.stages import WorkItem
from vessel_seg.pipeline.store import results as results_mod
from vessel_seg.pipeline.store.results import is_complete


class Recorder(SchedulerCallbacks):
    def __init__(self):
        self.started, self.done, self.rejected, self.states = [], [], [], []
        self.cond = threading.Condition()

    def on_start(self, item):
        self.started.append(item.id)

    def on_done(self, job):
        with self.cond:
            self.done.append(job.item.id)
            self.cond.notify_all()

    def on_rejected(self, item, reason, detail):
        with self.cond:
            self.rejected.append((item.source, reason))
            self.cond.notify_all()

    def on_state(self, state, reason):
        self.states.append((state.value, reason))

    def wait_for(self, n, timeout=20.0):
        with self.cond:
            return self.cond.wait_for(lambda: len(self.done) + len(self.rejected) >= n, timeout)


def _items(tmp_path, n, size=(160, 150)):
    out = []
    for i in range(n):
        p = write_image(tmp_path / ("img%02d.png" % i), fundus_like(size[0], size[1], seed=i))
        out.append(WorkItem.for_file(p))
    return out


def _scheduler(tmp_path, device, rec, **kw):
    args = dict(pre_workers=2, post_workers=2, queue_size=4, retry_interval_s=0.05)
    args.update(kw)
    return Scheduler(make_stages(tmp_path / "results"), device, rec, **args)


def test_all_items_complete_and_the_state_machine_runs_its_course(tmp_path):
    rec, dev = Recorder(), FakeDevice(device_time_s=0.01)
    s = _scheduler(tmp_path, dev, rec)
    assert s.state == PipelineState.STARTING
    s.start()
    assert s.state == PipelineState.RUNNING
    items = _items(tmp_path, 5)
    for it in items:
        assert s.submit(it)
    assert rec.wait_for(5)
    assert sorted(rec.done) == sorted(i.id for i in items) and rec.rejected == []
    assert all(is_complete(tmp_path / "results" / i.id) for i in items)
    assert s.stop(5.0)
    assert s.state == PipelineState.STOPPED
    assert [st for st, _ in rec.states] == ["running", "draining", "stopped"]
    assert s.metrics.value("processed") == 5
    assert set(s.metrics.median_ms()) >= {"decode", "preprocess", "resize", "execute", "write_bin", "render"}


def test_device_thread_double_buffers_over_two_slots(tmp_path):
    rec, dev = Recorder(), FakeDevice(device_time_s=0.15)
    s = _scheduler(tmp_path, dev, rec)
    items = _items(tmp_path, 4)
    # fill the device queue before starting so the next job is always ready
    s.start()
    s.pause("test", kind="manual")
    for it in items:
        s.submit(it)
    s.resume("manual")
    assert rec.wait_for(4)
    s.stop(5.0)
    launches = [slot for kind, slot, _ in dev.events if kind == "launch"]
    assert len(launches) == 4 and set(launches) == {0, 1}
    # the next input was written into the other slot while a slot was executing
    overlapped = 0
    running = None
    for kind, slot, _ in dev.events:
        if kind == "launch":
            running = slot
        elif kind == "done":
            running = None
        elif kind == "write" and running is not None and slot != running:
            overlapped += 1
    assert overlapped >= 1


def test_bad_input_is_rejected_and_the_rest_continue(tmp_path):
    rec, dev = Recorder(), FakeDevice()
    s = _scheduler(tmp_path, dev, rec)
    s.start()
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = _items(tmp_path, 2)
    s.submit(WorkItem.for_file(bad))
    for it in good:
        s.submit(it)
    assert rec.wait_for(3)
    s.stop(5.0)
    assert rec.rejected == [("broken.png", "not_an_image")]
    assert sorted(rec.done) == sorted(i.id for i in good)


def test_device_errors_pause_and_the_same_job_is_retried(tmp_path):
    rec, dev = Recorder(), FakeDevice()
    dev.fail_next = 3
    s = _scheduler(tmp_path, dev, rec)
    s.start()
    items = _items(tmp_path, 2)
    for it in items:
        s.submit(it)
    assert rec.wait_for(2)
    s.stop(5.0)
    assert sorted(rec.done) == sorted(i.id for i in items) and rec.rejected == []
    assert s.metrics.value("device_errors") == 3
    paused = [r for st, r in rec.states if st == "paused"]
    assert paused and "device error" in paused[0] and "507011" in paused[0]
    assert ("running", "") in rec.states[rec.states.index(("paused", paused[0])):]


def test_a_failed_device_is_restarted_before_the_job_is_retried(tmp_path):
    rec, dev = Recorder(), FakeDevice()
    dev.fail_next, dev.fail_state = 1, DeviceState.FAILED
    s = _scheduler(tmp_path, dev, rec)
    s.start()
    (item,) = _items(tmp_path, 1)
    s.submit(item)
    assert rec.wait_for(1)
    s.stop(5.0)
    assert rec.done == [item.id] and dev.restarts == 1 and dev.state is DeviceState.READY


def test_disk_full_pauses_with_a_reason_and_resumes_when_space_returns(tmp_path, monkeypatch):
    rec, dev = Recorder(), FakeDevice()
    s = _scheduler(tmp_path, dev, rec, post_workers=1)
    real = results_mod.atomic_write_bytes
    full = threading.Event()
    full.set()

    def maybe_full(path, data, *a, **k):
        if full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, *a, **k)

    monkeypatch.setattr(results_mod, "atomic_write_bytes", maybe_full)
    s.start()
    (item,) = _items(tmp_path, 1)
    s.submit(item)
    deadline = time.time() + 10
    while s.state != PipelineState.PAUSED and time.time() < deadline:
        time.sleep(0.01)
    assert s.state == PipelineState.PAUSED and "disk full" in s.paused_reason
    assert s.paused_reason.endswith("retrying every 0.05 s")      # sub-second intervals are not "0 s"
    assert not (tmp_path / "results" / item.id / "result.json").exists()
    full.clear()
    assert rec.wait_for(1)
    assert s.state == PipelineState.RUNNING and is_complete(tmp_path / "results" / item.id)
    s.stop(5.0)


def test_full_input_queue_blocks_submit_instead_of_dropping(tmp_path):
    rec, dev = Recorder(), FakeDevice()
    s = _scheduler(tmp_path, dev, rec, queue_size=2)
    s.start()
    s.pause("maintenance")
    items = _items(tmp_path, 3)
    assert s.submit(items[0]) and s.submit(items[1])
    assert not s.submit(items[2], timeout=0.2)        # would block: backpressure
    s.resume()
    assert s.submit(items[2], timeout=10)
    assert rec.wait_for(3)
    s.stop(5.0)
    assert len(rec.done) == 3


def test_stop_finishes_in_flight_work_and_leaves_queued_items(tmp_path):
    rec, dev = Recorder(), FakeDevice(device_time_s=0.2)
    s = _scheduler(tmp_path, dev, rec, pre_workers=1, queue_size=8)
    s.start()
    items = _items(tmp_path, 6)
    for it in items:
        s.submit(it)
    while not rec.started:
        time.sleep(0.01)
    assert s.stop(10.0)
    left = s.leftover()
    assert len(rec.done) >= 1
    assert sorted(rec.done + [i.id for i in left]) == sorted(i.id for i in items)
    assert set(rec.started) == set(rec.done)          # everything started was finished
    assert not s.submit(items[0])


def test_stop_times_out_on_a_hung_device_but_still_stops(tmp_path):
    rec, dev = Recorder(), FakeDevice()
    dev.hang.set()
    s = _scheduler(tmp_path, dev, rec)
    s.start()
    s.submit(_items(tmp_path, 1)[0])
    while dev.busy_since is None:
        time.sleep(0.01)
    t0 = time.monotonic()
    assert s.stop(0.3) is False
    assert time.monotonic() - t0 < 2.0 and s.state == PipelineState.STOPPED
    dev.hang.clear()


def test_invalid_transitions_are_refused_and_a_scheduler_starts_once(tmp_path):
    s = _scheduler(tmp_path, FakeDevice(), Recorder())
    s.start()
    with pytest.raises(InvalidTransition):
        s._transition(PipelineState.STARTING)
    with pytest.raises(InvalidTransition):
        s.start()
    s.stop(5.0)
    with pytest.raises(InvalidTransition):
        s._transition(PipelineState.RUNNING)


def test_jobs_redone_after_a_failed_collect_leave_no_stale_in_flight_mark(tmp_path):
    """Regression: submissions abandoned for a synchronous redo kept busy_since set, so an idle daemon looked hung."""
    from vessel_seg.device import DeviceState
    from vessel_seg.device.resilient import ResilientDevice
    from vessel_seg.device.sim import control

    holder = {}

    class BothSlotsSubmitted(ResilientDevice):
        """Its first submit waits until the next job is queued, so the device thread fills both slots."""

        first = True

        def submit(self, slot, array):
            if self.first:
                self.first = False
                deadline = time.monotonic() + 10
                while len(holder["scheduler"].dev_q) == 0 and time.monotonic() < deadline:
                    time.sleep(0.005)
            super().submit(slot, array)

    control.reset()
    dev = BothSlotsSubmitted(tiny_bundle(tmp_path / "bundle"), runtime="sim", retries=0, max_reinits=0,
                             backoff_s=0.001, reinit_backoff_s=0.001)
    try:
        dev.start()
        rec = Recorder()
        s = holder["scheduler"] = _scheduler(tmp_path, dev, rec)
        control.inject_fault("acl.rt.synchronize_stream", 507011)  # collect fails -> FAILED -> restart + redo
        items = _items(tmp_path, 2)
        s.start()
        s.pause("test", kind="manual")
        for it in items:
            s.submit(it)
        s.resume("manual")
        assert rec.wait_for(2)
        assert sorted(rec.done) == sorted(i.id for i in items) and rec.rejected == []
        assert s.metrics.value("device_errors") == 1
        assert dev.stats["failures"] == 1 and dev.state == DeviceState.READY
        assert control.stats()["acl.mdl.execute_async"] == 2  # both slots had been submitted
        time.sleep(0.05)
        assert dev.busy_since is None  # idle: nothing is in flight
        assert s.stop(5.0)
    finally:
        dev.close()
        control.reset()
