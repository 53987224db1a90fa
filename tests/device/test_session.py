"""DeviceSession scenarios: run on the simulator, or on the board with --runtime=acl (sim-only ones skip there)."""
from __future__ import annotations

import importlib
import queue
import shutil
import sys
import threading
import time

import numpy as np
import pytest
from devicekit import leak_report, random_input, reference_output, tolerance

from vessel_seg.device import AclError, DeviceError, open_session
from vessel_seg.device.runtime import load_runtime


def test_session_describes_host_input_and_float_output(device_bundle, runtime):
    with open_session(device_bundle, runtime=runtime) as sess:
        assert sess.runtime_name == runtime
        assert sess.input_desc.shape == device_bundle.host_input_shape
        assert sess.input_desc.dtype == device_bundle.host_input_dtype
        assert sess.input_desc.nbytes == device_bundle.host_input_nbytes
        assert sess.input_desc.format == ("NV12" if device_bundle.aipp is not None else "NCHW")
        assert sess.output_desc.shape == device_bundle.output_shape and sess.output_desc.dtype == np.float32
        info = sess.runtime_info
        assert info["runtime"] == runtime and info["model"] == device_bundle.name
        assert info["soc"].startswith("Ascend310") and "warning" in info and info["precision"] in ("fp16", "fp32")


def test_execute_matches_the_fp32_reference(device_bundle, runtime):
    x = random_input(device_bundle, seed=1)
    with open_session(device_bundle, runtime=runtime) as sess:
        sess.write_input(0, x)
        sess.execute(0)
        y = sess.read_output(0)
    assert y.shape == device_bundle.output_shape and y.dtype == np.float32
    assert np.abs(y - reference_output(device_bundle, x)).max() <= tolerance(runtime)


def test_execute_async_results_after_wait(device_bundle, runtime):
    xs = [random_input(device_bundle, seed=s) for s in (2, 3)]
    with open_session(device_bundle, runtime=runtime) as sess:
        for slot, x in enumerate(xs):
            sess.write_input(slot, x)
            sess.execute_async(slot)
        assert sess.pending
        sess.wait()
        assert not sess.pending
        outs = [sess.read_output(slot) for slot in (0, 1)]
    for x, y in zip(xs, outs):
        assert np.abs(y - reference_output(device_bundle, x)).max() <= tolerance(runtime)


def test_float_input_bundle_without_aipp(make_bundle, runtime):
    bundle = make_bundle(aipp=False, name="float")
    x = random_input(bundle, seed=4)
    with open_session(bundle, runtime=runtime) as sess:
        assert sess.input_desc.format == "NCHW" and sess.input_desc.dtype == np.float32
        sess.write_input(1, x)
        sess.execute(1)
        y = sess.read_output(1)
    assert np.abs(y - reference_output(bundle, x)).max() <= tolerance(runtime)


def test_read_output_returns_an_independent_copy(device_bundle, runtime):
    with open_session(device_bundle, runtime=runtime) as sess:
        sess.write_input(0, random_input(device_bundle))
        sess.execute(0)
        first = sess.read_output(0)
        first[...] = -1.0
        assert (sess.read_output(0) >= 0).all()


def test_bad_input_is_rejected_and_the_slot_keeps_its_data(device_bundle, runtime):
    x = random_input(device_bundle, seed=5)
    with open_session(device_bundle, runtime=runtime) as sess:
        sess.write_input(0, x)
        with pytest.raises(ValueError, match="input must be"):
            sess.write_input(0, x[:-2])
        with pytest.raises(ValueError, match="input must be"):
            sess.write_input(0, x.astype(np.float64))
        with pytest.raises(IndexError, match="slot"):
            sess.write_input(2, x)
        sess.execute(0)
        y = sess.read_output(0)
    assert np.abs(y - reference_output(device_bundle, x)).max() <= tolerance(runtime)


def test_two_threads_double_buffer_one_model(device_bundle, runtime, request):
    """A writer thread fills slot B while the executor thread runs slot A; every result is right."""
    if runtime == "sim":
        from vessel_seg.device.sim import control
        control.set_device_time_ms(30)  # long enough that writes overlap executes
    n = 8
    inputs = [random_input(device_bundle, seed=10 + i) for i in range(n)]
    expected = [reference_output(device_bundle, x) for x in inputs]
    events = []
    free = {0: threading.Semaphore(1), 1: threading.Semaphore(1)}
    ready: "queue.Queue" = queue.Queue()
    outputs = {}
    errors = []

    with open_session(device_bundle, runtime=runtime, n_slots=2) as sess:
        def writer():
            try:
                sess.bind_thread()
                for i in range(n):
                    slot = i % 2
                    free[slot].acquire()
                    t0 = time.monotonic()
                    sess.write_input(slot, inputs[i])
                    events.append(("write", slot, t0, time.monotonic()))
                    ready.put((i, slot))
            except Exception as exc:  # surfaced by the assertion below
                errors.append(exc)
                ready.put(None)

        def executor():
            try:
                sess.bind_thread()
                for _ in range(n):
                    item = ready.get(timeout=30)
                    if item is None:
                        return
                    i, slot = item
                    t0 = time.monotonic()
                    sess.execute(slot)
                    events.append(("exec", slot, t0, time.monotonic()))
                    outputs[i] = sess.read_output(slot)
                    free[slot].release()
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer), threading.Thread(target=executor)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors
    assert sorted(outputs) == list(range(n))
    for i in range(n):
        assert np.abs(outputs[i] - expected[i]).max() <= tolerance(runtime)
    execs = [e for e in events if e[0] == "exec"]
    writes = [e for e in events if e[0] == "write"]
    overlapped = [w for w in writes for e in execs if e[1] != w[1] and e[2] < w[2] < e[3]]
    assert overlapped, "no write into one slot happened while the other slot executed"


def test_closed_session_refuses_further_calls(device_bundle, runtime):
    sess = open_session(device_bundle, runtime=runtime)
    sess.close()
    sess.close()  # idempotent
    assert sess.closed
    with pytest.raises(DeviceError, match="closed"):
        sess.execute(0)


def test_sessions_can_be_opened_again_in_the_same_process(device_bundle, runtime):
    for seed in (1, 2):
        x = random_input(device_bundle, seed=seed)
        with open_session(device_bundle, runtime=runtime) as sess:
            sess.write_input(0, x)
            sess.execute(0)
            assert np.abs(sess.read_output(0) - reference_output(device_bundle, x)).max() <= tolerance(runtime)


# ----------------------------------------------------------------------------- simulator-only checks

@pytest.mark.sim_only
def test_teardown_leaves_no_leaks_and_finalize_can_be_requested(device_bundle, runtime, sim):
    _, control = sim
    with open_session(device_bundle, runtime=runtime) as sess:
        sess.write_input(0, random_input(device_bundle))
        sess.execute_async(0)
    assert all(v == 0 for v in control.live_resources().values())
    assert control.is_initialized()  # pyACL stays initialised for the next session
    sess = open_session(device_bundle, runtime=runtime)
    sess.close(finalize=True)
    assert not control.is_initialized()
    assert leak_report(runtime) == []
    with pytest.raises(AclError, match="100002 ACL_ERROR_REPEAT_INITIALIZE.*restart the process"):
        open_session(device_bundle, runtime=runtime)


@pytest.mark.sim_only
def test_teardown_follows_the_documented_order(device_bundle, runtime, sim, monkeypatch):
    acl, _ = sim
    calls = []
    names = {"rt": ["free", "destroy_stream", "destroy_context", "reset_device"],
             "mdl": ["destroy_dataset", "unload", "destroy_desc"], "": ["destroy_data_buffer", "finalize"]}
    for ns, fns in names.items():
        owner = getattr(acl, ns) if ns else acl
        for fn in fns:
            orig = getattr(owner, fn)
            monkeypatch.setattr(owner, fn, (lambda o, n: lambda *a: calls.append(n) or o(*a))(orig, fn))
    sess = open_session(device_bundle, runtime=runtime)
    sess.close(finalize=True)
    order = [c for i, c in enumerate(calls) if i == 0 or calls[i - 1] != c]
    assert order == ["free", "destroy_data_buffer", "destroy_dataset", "unload", "destroy_desc", "destroy_stream",
                     "destroy_context", "reset_device", "finalize"]
    assert calls.count("free") == 4 and calls.count("destroy_dataset") == 4


@pytest.mark.sim_only
def test_a_deliberate_leak_is_reported(device_bundle, runtime, sim):
    acl, control = sim
    sess = open_session(device_bundle, runtime=runtime)
    leaked, ret = acl.rt.malloc(1000, 2)
    assert ret == 0
    sess.close()
    assert control.leak_report() == ["1000 bytes of malloc memory at 0x%x not freed before reset_device(0)" % leaked]


@pytest.mark.sim_only
def test_acl_errors_name_the_call_and_the_code(device_bundle, runtime, sim):
    _, control = sim
    with open_session(device_bundle, runtime=runtime) as sess:
        sess.write_input(0, random_input(device_bundle))
        control.inject_fault("acl.mdl.execute", 145000)
        with pytest.raises(AclError) as info:
            sess.execute(0)
        assert str(info.value).startswith("acl.mdl.execute failed: 145000 ACL_ERROR_GE_PARAM_INVALID")
        assert info.value.call == "acl.mdl.execute" and info.value.code == 145000 and not info.value.transient
        control.inject_fault("acl.rt.synchronize_stream", 507011)
        sess.execute_async(0)
        with pytest.raises(AclError) as info:
            sess.wait()
        assert info.value.code == 507011 and info.value.transient


@pytest.mark.sim_only
def test_open_failure_cleans_up_what_was_created(device_bundle, runtime, sim):
    _, control = sim
    control.inject_fault("acl.rt.malloc", 207001, after=2)  # third buffer: slot 1's input
    with pytest.raises(AclError, match="acl.rt.malloc failed: 207001"):
        open_session(device_bundle, runtime=runtime)
    assert all(v == 0 for v in control.live_resources().values())
    assert control.leak_report() == []


@pytest.mark.sim_only
@pytest.mark.parametrize("options", [{"hide_bytes_to_ptr": True}, {"run_mode": 1}, {"executor": "numpy"}])
def test_cann5_utilities_host_run_mode_and_numpy_executor_work_the_same(device_bundle, runtime, options):
    x = random_input(device_bundle, seed=7)
    with open_session(device_bundle, runtime=runtime, sim_options=options) as sess:
        sess.write_input(0, x)
        sess.execute(0)
        y = sess.read_output(0)
        assert sess.runtime_info["bytes_to_ptr"] == (not options.get("hide_bytes_to_ptr", False))
        assert sess.runtime_info["run_mode"] == ("host" if options.get("run_mode") else "device")
    assert np.abs(y - reference_output(device_bundle, x)).max() <= 1e-5


@pytest.mark.sim_only
def test_fp16_simulation_is_close_to_but_not_exactly_fp32(device_bundle, runtime):
    x = random_input(device_bundle, seed=8)
    with open_session(device_bundle, runtime=runtime, sim_options={"precision": "fp16"}) as sess:
        sess.write_input(0, x)
        sess.execute(0)
        y = sess.read_output(0)
        assert sess.runtime_info["precision"] == "fp16"
    diff = np.abs(y - reference_output(device_bundle, x)).max()
    assert 0 < diff < 5e-3


@pytest.mark.sim_only
def test_auto_runtime_falls_back_to_the_simulator_with_a_warning(caplog):
    if importlib.util.find_spec("acl") is not None:
        pytest.skip("a real pyACL is importable here")
    module, name, warning = load_runtime("auto")
    assert name == "sim" and module.__name__ == "vessel_seg.device.sim.acl"
    assert "SIMULATED" in warning and "SIMULATED" in caplog.text
    assert load_runtime("sim")[2] is None
    with pytest.raises(DeviceError, match="set_env.sh"):
        load_runtime("acl")
    with pytest.raises(DeviceError, match="unknown runtime"):
        load_runtime("npu")


@pytest.mark.sim_only
def test_the_real_backend_code_path_runs_with_an_acl_module(device_bundle, runtime, sim, monkeypatch):
    """With the simulator installed as ``acl``, runtime "acl" takes the real path: model.om is required."""
    acl, _ = sim
    monkeypatch.setitem(sys.modules, "acl", acl)
    monkeypatch.delitem(sys.modules, "vessel_seg.device.acl_backend", raising=False)
    with pytest.raises(DeviceError, match="model.om is missing: run convert_om.sh with ATC on a machine with "
                                          "the CANN toolkit"):
        open_session(device_bundle, runtime="acl")
    shutil.copy(device_bundle.onnx_path, device_bundle.om_path)  # the simulator can "run" it
    x = random_input(device_bundle, seed=9)
    with open_session(device_bundle, runtime="auto") as sess:
        assert sess.runtime_name == "acl" and sess.runtime_info["precision"] == "fp16"
        sess.write_input(0, x)
        sess.execute(0)
        y = sess.read_output(0)
    assert np.abs(y - reference_output(device_bundle, x)).max() <= 1e-5
    sys.modules.pop("vessel_seg.device.acl_backend", None)


@pytest.mark.sim_only
def test_failed_drain_makes_each_slot_raise_its_error_instead_of_stale_output(device_bundle, runtime, sim):
    _, control = sim
    xs = [random_input(device_bundle, seed=s) for s in (50, 51)]
    with open_session(device_bundle, runtime=runtime) as sess:
        for slot in (0, 1):  # a previous result in each slot
            sess.write_input(slot, xs[1 - slot])
            sess.execute(slot)
        for slot in (0, 1):
            sess.write_input(slot, xs[slot])
            sess.execute_async(slot)
        control.inject_fault("acl.rt.synchronize_stream", 507011)
        with pytest.raises(AclError, match="507011"):
            sess.wait()
        with pytest.raises(AclError, match="507011"):
            sess.wait()  # reported again: the failure stays recorded until the slot is read or reused
        for slot in (0, 1):
            with pytest.raises(AclError, match="acl.rt.synchronize_stream failed: 507011"):
                sess.read_output(slot)
            with pytest.raises(DeviceError, match="slot %d holds no valid output" % slot):
                sess.read_output(slot)  # the error was consumed; the buffer is still not a result
        sess.wait()  # nothing left to report
        sess.execute(1)  # the input is still in place: a synchronous run makes the slot valid again
        assert np.abs(sess.read_output(1) - reference_output(device_bundle, xs[1])).max() <= tolerance(runtime)


@pytest.mark.sim_only
def test_failed_drain_raises_on_read_without_an_explicit_wait(device_bundle, runtime, sim):
    _, control = sim
    x = random_input(device_bundle, seed=52)
    with open_session(device_bundle, runtime=runtime) as sess:
        sess.write_input(1, x)
        sess.execute(1)
        sess.write_input(1, random_input(device_bundle, seed=53))
        sess.execute_async(1)
        control.inject_fault("acl.rt.synchronize_stream", 507011)
        with pytest.raises(AclError, match="507011"):
            sess.read_output(1)
        assert not sess.pending


def test_output_is_readable_only_after_an_execute_of_the_current_input(device_bundle, runtime):
    xs = [random_input(device_bundle, seed=s) for s in (54, 55)]
    with open_session(device_bundle, runtime=runtime) as sess:
        with pytest.raises(DeviceError, match="slot 0 holds no valid output"):
            sess.read_output(0)  # never executed
        sess.write_input(0, xs[0])
        sess.execute(0)
        sess.read_output(0)
        sess.write_input(0, xs[1])
        with pytest.raises(DeviceError, match="slot 0 holds no valid output"):
            sess.read_output(0)  # the buffer holds the previous input's result
        sess.execute_async(0)
        y = sess.read_output(0)  # waits for the pending execute itself
        assert not sess.pending
    assert np.abs(y - reference_output(device_bundle, xs[1])).max() <= tolerance(runtime)
