"""ResilientDevice: retries transient failures, re-initialises after device errors, FAILED when permanent."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from devicekit import random_input, reference_output, tolerance

from vessel_seg.device import DeviceError, DeviceState
from vessel_seg.device.resilient import ResilientDevice


def make(bundle, runtime, **kwargs):
    kwargs.setdefault("backoff_s", 0.001)
    kwargs.setdefault("reinit_backoff_s", 0.001)
    return ResilientDevice(bundle, runtime=runtime, **kwargs)


def assert_correct(bundle, x, y, runtime):
    assert np.abs(y - reference_output(bundle, x)).max() <= tolerance(runtime)


def test_infer_and_submit_collect_give_the_reference_output(device_bundle, runtime):
    xs = [random_input(device_bundle, seed=s) for s in range(3)]
    with make(device_bundle, runtime) as dev:
        assert dev.state == DeviceState.READY and str(dev.state) == "ready"
        assert dev.runtime_info["runtime"] == runtime
        assert_correct(device_bundle, xs[0], dev.infer(0, xs[0]), runtime)
        dev.submit(0, xs[1])
        dev.submit(1, xs[2])
        assert_correct(device_bundle, xs[1], dev.collect(0), runtime)
        assert_correct(device_bundle, xs[2], dev.collect(1), runtime)
        assert dev.stats["executes"] == 3 and dev.busy_since is None
    assert dev.state == DeviceState.CLOSED
    with pytest.raises(DeviceError, match="closed"):
        dev.infer(0, xs[0])


def test_two_threads_infer_on_their_own_slots(device_bundle, runtime):
    xs = {slot: [random_input(device_bundle, seed=20 + 4 * slot + i) for i in range(4)] for slot in (0, 1)}
    results = {0: [], 1: []}
    with make(device_bundle, runtime) as dev:
        def work(slot):
            for x in xs[slot]:
                results[slot].append(dev.infer(slot, x))
        threads = [threading.Thread(target=work, args=(s,)) for s in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    for slot in (0, 1):
        assert len(results[slot]) == 4
        for x, y in zip(xs[slot], results[slot]):
            assert_correct(device_bundle, x, y, runtime)


@pytest.mark.sim_only
def test_transient_failure_is_retried(device_bundle, runtime, sim):
    _, control = sim
    x = random_input(device_bundle)
    with make(device_bundle, runtime, retries=3) as dev:
        control.inject_fault("acl.mdl.execute", 507011, times=2)
        assert_correct(device_bundle, x, dev.infer(0, x), runtime)
        assert dev.stats["retries"] == 2 and dev.stats["reinits"] == 0 and dev.state == DeviceState.READY


@pytest.mark.sim_only
def test_device_error_reinitialises_the_session(device_bundle, runtime, sim):
    _, control = sim
    x = random_input(device_bundle)
    with make(device_bundle, runtime) as dev:
        first = dev.session
        control.inject_fault("acl.mdl.execute", 507015)
        assert_correct(device_bundle, x, dev.infer(0, x), runtime)
        assert dev.stats["reinits"] == 1 and dev.stats["retries"] == 0
        assert dev.session is not first and first.closed
        assert control.stats()["acl.rt.set_device"] == 2 and control.stats()["acl.mdl.load_from_file"] == 2
        assert dev.state == DeviceState.READY and dev.last_error == ""


@pytest.mark.sim_only
def test_transient_failure_outlasting_retries_leads_to_reinit(device_bundle, runtime, sim):
    _, control = sim
    x = random_input(device_bundle)
    with make(device_bundle, runtime, retries=2) as dev:
        control.inject_fault("acl.mdl.execute", 507014, times=3)
        assert_correct(device_bundle, x, dev.infer(0, x), runtime)
        assert dev.stats["retries"] == 2 and dev.stats["reinits"] == 1


@pytest.mark.sim_only
def test_permanent_error_marks_the_device_failed_until_restart(device_bundle, runtime, sim):
    _, control = sim
    x = random_input(device_bundle)
    dev = make(device_bundle, runtime).start()
    control.inject_fault("acl.mdl.execute", 145000)
    with pytest.raises(DeviceError, match="145000 ACL_ERROR_GE_PARAM_INVALID"):
        dev.infer(0, x)
    assert dev.state == DeviceState.FAILED and str(dev.state) == "failed"
    assert "acl.mdl.execute failed: 145000 ACL_ERROR_GE_PARAM_INVALID" in dev.last_error
    executes = control.stats()["acl.mdl.execute"]
    with pytest.raises(DeviceError, match="device failed"):
        dev.infer(0, x)
    assert control.stats()["acl.mdl.execute"] == executes  # no device call while FAILED
    assert dev.status()["state"] == "failed" and dev.status()["stats"]["failures"] == 1
    dev.restart()
    assert dev.state == DeviceState.READY
    assert_correct(device_bundle, x, dev.infer(0, x), runtime)
    dev.close()
    assert all(v == 0 for v in control.live_resources().values())


@pytest.mark.sim_only
def test_persistent_device_error_fails_after_the_allowed_reinits(device_bundle, runtime, sim):
    _, control = sim
    with make(device_bundle, runtime, max_reinits=2) as dev:
        control.inject_fault("acl.mdl.execute", 507015, times=None)
        with pytest.raises(DeviceError, match="507015"):
            dev.infer(0, random_input(device_bundle))
        assert dev.state == DeviceState.FAILED and dev.stats["reinits"] == 2
        assert "507015 ACL_ERROR_RT_AICORE_EXCEPTION" in dev.last_error


@pytest.mark.sim_only
def test_device_that_cannot_be_opened_fails_with_the_reason(device_bundle, runtime, sim):
    _, control = sim
    control.inject_fault("acl.rt.set_device", 507033, times=None)
    dev = make(device_bundle, runtime, max_reinits=1)
    with pytest.raises(DeviceError, match="acl.rt.set_device failed: 507033"):
        dev.start()
    assert dev.state == DeviceState.FAILED and "507033 ACL_ERROR_RT_DEV_SETUP_ERROR" in dev.last_error
    assert dev.stats["reinits"] == 1
    assert all(v == 0 for v in control.live_resources().values())


@pytest.mark.sim_only
def test_missing_om_on_the_real_runtime_is_a_permanent_failure(device_bundle, sim, monkeypatch):
    import sys
    acl, _ = sim
    monkeypatch.setitem(sys.modules, "acl", acl)
    monkeypatch.delitem(sys.modules, "vessel_seg.device.acl_backend", raising=False)
    dev = make(device_bundle, "acl")
    with pytest.raises(DeviceError, match="model.om is missing"):
        dev.start()
    assert dev.state == DeviceState.FAILED and "convert_om.sh" in dev.last_error
    sys.modules.pop("vessel_seg.device.acl_backend", None)


@pytest.mark.sim_only
def test_failed_async_execute_is_run_again_on_collect(device_bundle, runtime, sim):
    _, control = sim
    x = random_input(device_bundle, seed=3)
    with make(device_bundle, runtime) as dev:
        control.inject_fault("acl.rt.synchronize_stream", 507011)
        dev.submit(1, x)
        assert_correct(device_bundle, x, dev.collect(1), runtime)
        assert dev.stats["retries"] == 1 and dev.stats["executes"] == 1
        with pytest.raises(ValueError, match="nothing was submitted"):
            dev.collect(1)


@pytest.mark.sim_only
def test_sim_options_faults_fire_once_and_are_not_rearmed_by_reinit(device_bundle, runtime, sim):
    _, control = sim
    options = {"faults": [{"call": "acl.mdl.execute", "code": 507015, "times": 1, "after": 1}]}
    x = random_input(device_bundle)
    with make(device_bundle, runtime, sim_options=options) as dev:
        for _ in range(4):
            assert_correct(device_bundle, x, dev.infer(0, x), runtime)
        assert dev.stats["reinits"] == 1 and dev.stats["executes"] == 4


@pytest.mark.sim_only
def test_hung_execute_is_visible_through_busy_since(device_bundle, runtime, sim):
    _, control = sim
    x = random_input(device_bundle)
    with make(device_bundle, runtime) as dev:
        dev.infer(0, x)
        progress = dev.last_progress
        assert dev.busy_since is None
        control.set_hang(True)
        result = []
        worker = threading.Thread(target=lambda: result.append(dev.infer(1, x)))
        started = time.monotonic()
        worker.start()
        deadline = time.monotonic() + 5
        while dev.busy_since is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert dev.busy_since is not None and dev.busy_since >= started
        time.sleep(0.15)
        assert 0.1 < time.monotonic() - dev.busy_since < 30
        assert dev.last_progress == progress and worker.is_alive()
        control.set_hang(False)
        worker.join(10)
        assert dev.busy_since is None and dev.last_progress > progress
        assert_correct(device_bundle, x, result[0], runtime)


@pytest.mark.sim_only
def test_failed_async_execute_never_returns_another_slots_or_previous_output(device_bundle, runtime, sim):
    """Regression: a failed stream drain used to make collect() of the other slot return its stale buffer."""
    _, control = sim
    old = [random_input(device_bundle, seed=s) for s in (40, 41)]
    new = [random_input(device_bundle, seed=s) for s in (42, 43)]
    with make(device_bundle, runtime) as dev:
        for slot in (0, 1):  # each slot's buffer holds a previous image's result
            assert_correct(device_bundle, old[slot], dev.infer(slot, old[slot]), runtime)
        dev.submit(0, new[0])
        dev.submit(1, new[1])
        control.inject_fault("acl.rt.synchronize_stream", 507011)
        for slot in (0, 1):
            assert_correct(device_bundle, new[slot], dev.collect(slot), runtime)
        assert dev.stats["retries"] == 2 and dev.stats["reinits"] == 0 and dev.state == DeviceState.READY
        assert dev.busy_since is None


@pytest.mark.sim_only
def test_failed_async_execute_is_reported_for_the_slot_collected_second_too(device_bundle, runtime, sim):
    """Collecting in the other order: the slot collected second is re-executed, not read stale."""
    _, control = sim
    xs = [random_input(device_bundle, seed=s) for s in (44, 45)]
    with make(device_bundle, runtime) as dev:
        dev.submit(0, xs[0])
        dev.submit(1, xs[1])
        control.inject_fault("acl.rt.synchronize_stream", 507011)
        assert_correct(device_bundle, xs[1], dev.collect(1), runtime)
        assert_correct(device_bundle, xs[0], dev.collect(0), runtime)
        assert control.stats()["acl.mdl.execute"] == 2  # exactly the two failed slots were run again


def test_discarded_submission_is_no_longer_in_flight_and_cannot_be_collected(device_bundle, runtime):
    xs = [random_input(device_bundle, seed=s) for s in (46, 47, 48)]
    with make(device_bundle, runtime) as dev:
        dev.submit(0, xs[0])
        since0 = dev.busy_since
        dev.submit(1, xs[1])
        dev.discard(1)
        dev.discard(1)  # idempotent
        assert dev.busy_since == since0
        with pytest.raises(ValueError, match="nothing was submitted"):
            dev.collect(1)
        assert_correct(device_bundle, xs[0], dev.collect(0), runtime)
        assert dev.busy_since is None
        dev.submit(1, xs[2])  # the slot is reused: the abandoned execute's output is never returned
        assert_correct(device_bundle, xs[2], dev.collect(1), runtime)
        assert dev.busy_since is None


def test_closing_drops_uncollected_submissions_from_the_watchdog_view(device_bundle, runtime):
    dev = make(device_bundle, runtime).start()
    dev.submit(0, random_input(device_bundle, seed=49))
    assert dev.busy_since is not None
    dev.close()
    assert dev.busy_since is None
