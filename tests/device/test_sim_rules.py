"""The simulated pyACL enforces the rules of the pyACL reference (section 8): each misuse gives its code."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from devicekit import random_input, reference_output

pytestmark = pytest.mark.sim_only


def boot(acl):
    """init -> set_device(0) -> create_context -> create_stream; returns (ctx, stream)."""
    assert acl.init() == 0
    assert acl.rt.set_device(0) == 0
    ctx, ret = acl.rt.create_context(0)
    assert ret == 0 and ctx
    stream, ret = acl.rt.create_stream()
    assert ret == 0 and stream
    return ctx, stream


class Loaded:
    """A model with one input/output dataset pair, built with raw acl calls."""

    def __init__(self, acl, bundle, in_size=None, out_size=None):
        self.acl = acl
        self.model_id, ret = acl.mdl.load_from_file(bundle.onnx_path)
        assert ret == 0
        self.desc = acl.mdl.create_desc()
        assert acl.mdl.get_desc(self.desc, self.model_id) == 0
        self.in_size = acl.mdl.get_input_size_by_index(self.desc, 0)
        self.out_size = acl.mdl.get_output_size_by_index(self.desc, 0)
        self.in_ptr, ret = acl.rt.malloc(in_size or self.in_size, 2)
        assert ret == 0
        self.out_ptr, ret = acl.rt.malloc(out_size or self.out_size, 2)
        assert ret == 0
        self.in_buf = acl.create_data_buffer(self.in_ptr, in_size or self.in_size)
        self.out_buf = acl.create_data_buffer(self.out_ptr, out_size or self.out_size)
        self.in_ds = acl.mdl.create_dataset()
        self.out_ds = acl.mdl.create_dataset()
        assert acl.mdl.add_dataset_buffer(self.in_ds, self.in_buf)[1] == 0
        assert acl.mdl.add_dataset_buffer(self.out_ds, self.out_buf)[1] == 0

    def write(self, array):
        data = np.ascontiguousarray(array).tobytes()
        ptr = self.acl.util.bytes_to_ptr(data)
        assert self.acl.rt.memcpy(self.in_ptr, self.in_size, ptr, len(data), 3) == 0

    def read(self, shape):
        out = bytes(self.out_size)
        assert self.acl.rt.memcpy(self.acl.util.bytes_to_ptr(out), self.out_size, self.out_ptr, self.out_size, 3) == 0
        return np.frombuffer(out, np.float32).reshape(shape).copy()

    def release(self):
        acl = self.acl
        for ptr in (self.in_ptr, self.out_ptr):
            assert acl.rt.free(ptr) == 0
        for buf in (self.in_buf, self.out_buf):
            assert acl.destroy_data_buffer(buf) == 0
        for ds in (self.in_ds, self.out_ds):
            assert acl.mdl.destroy_dataset(ds) == 0
        assert acl.mdl.unload(self.model_id) == 0
        assert acl.mdl.destroy_desc(self.desc) == 0


def shutdown(acl, ctx, stream):
    assert acl.rt.destroy_stream(stream) == 0
    assert acl.rt.destroy_context(ctx) == 0
    assert acl.rt.reset_device(0) == 0
    assert acl.finalize() == 0


def in_thread(fn):
    """Run fn() on a fresh thread and return its result."""
    box = []
    t = threading.Thread(target=lambda: box.append(fn()))
    t.start()
    t.join(10)
    return box[0]


# ----------------------------------------------------------------------------- init state and return shapes

def test_calls_before_init_return_100001_and_repeat_init_finalize_codes(sim):
    acl, _ = sim
    assert acl.rt.set_device(0) == 100001
    assert acl.rt.malloc(16, 2) == (0, 100001)
    assert acl.init() == 0
    assert acl.init() == 100002
    assert acl.finalize() == 0
    assert acl.finalize() == 100037
    assert acl.init() == 100002  # CANN 5.x: never again in this process
    assert acl.rt.set_device(0) == 100001


def test_handles_are_nonzero_ints_and_results_have_pyacl_shapes(sim):
    acl, _ = sim
    ctx, stream = boot(acl)
    assert isinstance(ctx, int) and isinstance(stream, int)
    assert acl.rt.get_context() == (ctx, 0)
    assert acl.rt.get_run_mode() == (0, 0)
    assert acl.get_soc_name() == "Ascend310"
    ptr, ret = acl.rt.malloc(100, 2)
    assert ret == 0 and isinstance(ptr, int) and ptr > 0
    assert acl.rt.free(ptr) == 0
    shutdown(acl, ctx, stream)


def test_descriptor_reports_nv12_input_for_aipp_models(sim, make_bundle):
    acl, _ = sim
    bundle = make_bundle(aipp=True)
    ctx, stream = boot(acl)
    m = Loaded(acl, bundle)
    assert acl.mdl.get_num_inputs(m.desc) == 1 and acl.mdl.get_num_outputs(m.desc) == 1
    assert m.in_size == 64 * 64 * 3 // 2 and m.out_size == 64 * 64 * 4
    dims, ret = acl.mdl.get_input_dims(m.desc, 0)
    assert ret == 0 and dims == {"name": "image", "dimCount": 4, "dims": [1, 64, 64, 3]}
    dims2, _ = acl.mdl.get_input_dims_v2(m.desc, 0)
    assert dims2["dims"] == [1, 96, 64, 1] and int(np.prod(dims2["dims"])) == m.in_size
    assert tuple(acl.mdl.get_output_dims(m.desc, 0)[0]["dims"]) == (1, 1, 64, 64)
    assert acl.mdl.get_input_data_type(m.desc, 0) == 4 and acl.mdl.get_input_format(m.desc, 0) == 1
    assert acl.mdl.get_output_data_type(m.desc, 0) == 0
    assert acl.mdl.get_input_index_by_name(m.desc, "image") == (0, 0)
    assert acl.mdl.get_input_dims(m.desc, 1)[1] == 100000
    assert acl.mdl.get_desc(m.desc, 999999) == 100011
    m.release()
    shutdown(acl, ctx, stream)


# ----------------------------------------------------------------------------- contexts and threads

def test_other_threads_need_set_context_before_resource_calls(sim):
    acl, _ = sim
    ctx, stream = boot(acl)
    assert in_thread(lambda: acl.rt.malloc(64, 2)) == (0, 107002)
    assert in_thread(acl.rt.get_context) == (0, 107002)

    def bound():
        assert acl.rt.set_context(ctx) == 0
        ptr, ret = acl.rt.malloc(64, 2)
        return ret, acl.rt.free(ptr)
    assert in_thread(bound) == (0, 0)
    shutdown(acl, ctx, stream)


def test_stream_and_model_are_tied_to_their_context(sim, make_bundle):
    acl, _ = sim
    bundle = make_bundle()
    ctx, stream = boot(acl)
    m = Loaded(acl, bundle)
    other, ret = acl.rt.create_context(0)  # now current on this thread
    assert ret == 0
    assert acl.rt.synchronize_stream(stream) == 107003
    assert acl.mdl.execute(m.model_id, m.in_ds, m.out_ds) == 107004
    assert acl.rt.set_context(ctx) == 0
    assert acl.rt.synchronize_stream(stream) == 0
    assert acl.rt.destroy_context(other) == 0
    m.release()
    shutdown(acl, ctx, stream)


def test_default_context_cannot_be_destroyed_and_reset_requires_teardown_order(sim):
    acl, control = sim
    assert acl.init() == 0
    assert acl.rt.set_device(0) == 0
    default_ctx, ret = acl.rt.get_context()
    assert ret == 0 and default_ctx
    assert acl.rt.destroy_context(default_ctx) == 107000
    ctx, _ = acl.rt.create_context(0)
    stream, _ = acl.rt.create_stream()
    assert acl.rt.reset_device(0) == 107000  # stream and context still alive
    assert acl.rt.destroy_stream(stream) == 0
    assert acl.rt.destroy_context(ctx) == 0
    assert acl.rt.reset_device(0) == 0
    assert acl.finalize() == 0
    assert control.leak_report() == []


# ----------------------------------------------------------------------------- memory provenance and bounds

def test_free_checks_provenance_double_free_and_unknown_pointers(sim):
    acl, _ = sim
    ctx, stream = boot(acl)
    dev, _ = acl.rt.malloc(256, 2)
    host, _ = acl.rt.malloc_host(256)
    dvpp, _ = acl.media.dvpp_malloc(256)
    assert dvpp % 128 == 0
    assert acl.rt.free(host) == 207002  # malloc_host memory
    assert acl.rt.free_host(dev) == 207002
    assert acl.media.dvpp_free(dev) == 207002
    assert acl.rt.free(dvpp) == 207002
    assert acl.rt.free(dev + 16) == 107000  # inside a region, not its start
    assert acl.rt.free(12345) == 107000
    assert acl.rt.free(dev) == 0
    assert acl.rt.free(dev) == 207002  # double free
    assert acl.rt.free_host(host) == 0
    assert acl.media.dvpp_free(dvpp) == 0
    shutdown(acl, ctx, stream)


def test_malloc_zero_fails_and_fresh_memory_is_garbage(sim):
    acl, _ = sim
    ctx, stream = boot(acl)
    assert acl.rt.malloc(0, 2) == (0, 107000)
    ptr, _ = acl.rt.malloc(4096, 2)
    content = acl.util.ptr_to_bytes(ptr, 4096)
    assert len(content) == 4096 and content != bytes(4096)
    assert acl.rt.free(ptr) == 0
    shutdown(acl, ctx, stream)


def test_memcpy_and_memset_bounds(sim):
    acl, _ = sim
    ctx, stream = boot(acl)
    dev, _ = acl.rt.malloc(100, 2)  # usable: 100 rounded up to 128 + 32 = 160 bytes
    src = bytes(range(64))
    sptr = acl.util.bytes_to_ptr(src)
    assert acl.rt.memcpy(dev, 100, sptr, 64, 3) == 0
    assert acl.rt.memcpy(dev, 32, sptr, 64, 3) == 107000  # count > dest_max
    assert acl.rt.memcpy(dev + 150, 64, sptr, 64, 3) == 107000  # leaves the destination region
    assert acl.rt.memcpy(dev, 200, sptr, 100, 3) == 107000  # leaves the source region
    assert acl.rt.memcpy(dev, 64, 999, 8, 3) == 107000  # unknown source
    assert acl.rt.memcpy(dev, 64, sptr, 8, 7) == 107000  # bad kind
    assert acl.rt.memcpy(dev + 8, 56, sptr + 8, 8, 3) == 0  # pointer arithmetic inside regions
    assert acl.util.ptr_to_bytes(dev, 16) == bytes(range(16))
    assert acl.rt.memset(dev, 16, 7, 16) == 0
    assert acl.util.ptr_to_bytes(dev, 16) == bytes([7] * 16)
    assert acl.rt.memset(dev, 8, 7, 16) == 107000
    assert acl.rt.memset(dev + 150, 64, 0, 64) == 107000
    assert acl.rt.free(dev) == 0
    shutdown(acl, ctx, stream)


def test_host_run_mode_rejects_host_memory_as_device_operand(sim):
    acl, control = sim
    control.configure({"run_mode": 1})
    ctx, stream = boot(acl)
    assert acl.rt.get_run_mode() == (1, 0)
    dev, _ = acl.rt.malloc(64, 2)
    host = bytes(64)
    hptr = acl.util.bytes_to_ptr(host)
    assert acl.rt.memcpy(dev, 64, hptr, 64, 3) == 107016  # D2D with a host source
    assert acl.rt.memcpy(hptr, 64, dev, 64, 1) == 107016  # H2D into host memory
    assert acl.rt.memcpy(dev, 64, hptr, 64, 1) == 0
    assert acl.rt.memcpy(hptr, 64, dev, 64, 2) == 0
    assert acl.rt.free(dev) == 0
    shutdown(acl, ctx, stream)


def test_util_pointers_are_zero_copy_and_ptr_to_bytes_copies(sim):
    acl, _ = sim
    ctx, stream = boot(acl)
    dev, _ = acl.rt.malloc(16, 2)
    payload = np.arange(4, dtype=np.float32)
    assert acl.rt.memcpy(dev, 16, acl.util.numpy_to_ptr(payload), 16, 3) == 0
    out = bytes(16)
    assert acl.rt.memcpy(acl.util.bytes_to_ptr(out), 16, dev, 16, 3) == 0
    assert np.frombuffer(out, np.float32).tolist() == [0.0, 1.0, 2.0, 3.0]  # written into the bytes object itself
    target = np.zeros(4, np.float32)
    assert acl.rt.memcpy(acl.util.numpy_to_ptr(target), 16, dev, 16, 3) == 0
    assert target.tolist() == [0.0, 1.0, 2.0, 3.0]
    view = acl.util.ptr_to_numpy(dev, (4,), 11)
    copy = acl.util.ptr_to_bytes(dev, 16)
    assert acl.rt.memset(dev, 16, 0, 16) == 0
    assert view.tolist() == [0.0] * 4 and np.frombuffer(copy, np.float32).tolist() == [0.0, 1.0, 2.0, 3.0]
    ptr, arr = acl.util.numpy_contiguous_to_ptr(np.arange(8, dtype=np.uint8)[::2])
    assert arr.flags["C_CONTIGUOUS"] and acl.util.ptr_to_bytes(ptr, 4) == bytes([0, 2, 4, 6])
    assert acl.rt.free(dev) == 0
    shutdown(acl, ctx, stream)


def test_pointer_into_a_dead_bytes_object_becomes_unknown(sim):
    acl, _ = sim
    ctx, stream = boot(acl)
    dev, _ = acl.rt.malloc(64, 2)
    data = bytes(range(64))
    ptr = acl.util.bytes_to_ptr(data)
    del data
    acl.util.bytes_to_ptr(bytes(range(1, 33)))  # registering sweeps regions whose owner died
    assert acl.rt.memcpy(dev, 64, ptr, 64, 3) == 107000
    assert acl.rt.free(dev) == 0
    shutdown(acl, ctx, stream)


def test_hide_bytes_to_ptr_mimics_cann5(sim):
    acl, control = sim
    control.configure({"hide_bytes_to_ptr": True})
    assert "bytes_to_ptr" not in dir(acl.util) and "ptr_to_bytes" not in dir(acl.util)
    assert "numpy_to_ptr" in dir(acl.util)
    control.configure({})
    assert "bytes_to_ptr" in dir(acl.util)


# ----------------------------------------------------------------------------- execute checks

def test_execute_computes_the_network_with_aipp(sim, make_bundle):
    acl, _ = sim
    bundle = make_bundle(aipp=True)
    ctx, stream = boot(acl)
    m = Loaded(acl, bundle)
    x = random_input(bundle, seed=5)
    m.write(x)
    assert acl.mdl.execute(m.model_id, m.in_ds, m.out_ds) == 0
    assert np.abs(m.read(bundle.output_shape) - reference_output(bundle, x)).max() < 1e-5
    m.release()
    shutdown(acl, ctx, stream)


def test_execute_checks_buffer_count_and_sizes(sim, make_bundle, caplog):
    acl, _ = sim
    bundle = make_bundle(aipp=False)
    ctx, stream = boot(acl)
    m = Loaded(acl, bundle)
    empty = acl.mdl.create_dataset()
    assert acl.mdl.execute(m.model_id, empty, m.out_ds) == 145000
    two = acl.mdl.create_dataset()
    acl.mdl.add_dataset_buffer(two, m.in_buf)
    acl.mdl.add_dataset_buffer(two, m.in_buf)
    assert acl.mdl.execute(m.model_id, two, m.out_ds) == 145000
    assert acl.mdl.execute(424242, m.in_ds, m.out_ds) == 100011
    small = acl.create_data_buffer(m.in_ptr, m.in_size - 65)
    slack = acl.create_data_buffer(m.in_ptr, m.in_size - 64)
    big_ptr, _ = acl.rt.malloc(m.in_size + 256, 2)
    big = acl.create_data_buffer(big_ptr, m.in_size + 256)
    null = acl.create_data_buffer(0, m.in_size)
    results = {}
    for name, buf in (("small", small), ("slack", slack), ("big", big), ("null", null)):
        ds = acl.mdl.create_dataset()
        acl.mdl.add_dataset_buffer(ds, buf)
        caplog.clear()
        results[name] = (acl.mdl.execute(m.model_id, ds, m.out_ds), "MAY cause" in caplog.text)
        acl.mdl.destroy_dataset(ds)
        acl.destroy_data_buffer(buf)
    assert results == {"small": (145000, False), "slack": (0, False), "big": (0, True), "null": (145000, False)}
    small_out = acl.create_data_buffer(m.out_ptr, m.out_size - 128)
    ods = acl.mdl.create_dataset()
    acl.mdl.add_dataset_buffer(ods, small_out)
    assert acl.mdl.execute(m.model_id, m.in_ds, ods) == 145000
    for h in (ods,):
        acl.mdl.destroy_dataset(h)
    acl.destroy_data_buffer(small_out)
    acl.mdl.destroy_dataset(empty)
    acl.mdl.destroy_dataset(two)
    acl.rt.free(big_ptr)
    m.release()
    shutdown(acl, ctx, stream)


def test_async_results_are_visible_only_after_synchronize(sim, make_bundle):
    acl, control = sim
    bundle = make_bundle(aipp=True)
    control.set_device_time_ms(50)
    ctx, stream = boot(acl)
    m = Loaded(acl, bundle)
    assert acl.rt.memset(m.out_ptr, m.out_size, 0, m.out_size) == 0
    x = random_input(bundle, seed=6)
    m.write(x)
    assert acl.mdl.execute_async(m.model_id, m.in_ds, m.out_ds, stream) == 0
    time.sleep(0.2)  # the task has long finished on the stream worker...
    assert not m.read(bundle.output_shape).any()  # ...but nothing is visible before synchronize
    assert acl.rt.synchronize_stream(stream) == 0
    assert np.abs(m.read(bundle.output_shape) - reference_output(bundle, x)).max() < 1e-5
    m.release()
    shutdown(acl, ctx, stream)


def test_concurrent_execute_of_one_model_returns_507011(sim, make_bundle):
    acl, control = sim
    bundle = make_bundle()
    ctx, stream = boot(acl)
    m = Loaded(acl, bundle)
    m.write(random_input(bundle))
    control.set_hang(True)
    first = []

    def run():
        acl.rt.set_context(ctx)
        first.append(acl.mdl.execute(m.model_id, m.in_ds, m.out_ds))
    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 5
    while control.stats().get("acl.mdl.execute", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert acl.mdl.execute(m.model_id, m.in_ds, m.out_ds) == 507011
    assert acl.mdl.execute_async(m.model_id, m.in_ds, m.out_ds, stream) == 507011
    control.set_hang(False)
    t.join(5)
    assert first == [0]
    m.release()
    shutdown(acl, ctx, stream)


def test_hung_execute_times_out_with_507014(sim, make_bundle):
    acl, control = sim
    bundle = make_bundle()
    control.configure({"hang_execute": True, "hang_timeout_s": 0.2})
    ctx, stream = boot(acl)
    m = Loaded(acl, bundle)
    m.write(random_input(bundle))
    t0 = time.monotonic()
    assert acl.mdl.execute(m.model_id, m.in_ds, m.out_ds) == 507014
    assert time.monotonic() - t0 >= 0.2
    m.release()
    shutdown(acl, ctx, stream)


def test_hang_after_n_executes_hangs_the_next_one_once_until_released(sim, make_bundle):
    acl, control = sim
    bundle = make_bundle()
    control.configure({"hang_after": 2, "hang_timeout_s": 0.2, "compute": "surrogate"})
    ctx, stream = boot(acl)
    m = Loaded(acl, bundle)
    m.write(random_input(bundle))
    assert [acl.mdl.execute(m.model_id, m.in_ds, m.out_ds) for _ in range(2)] == [0, 0]
    t0 = time.monotonic()
    assert acl.mdl.execute(m.model_id, m.in_ds, m.out_ds) == 507014   # the third one hangs, then times out
    assert time.monotonic() - t0 >= 0.2
    control.set_hang(False)
    assert acl.mdl.execute(m.model_id, m.in_ds, m.out_ds) == 0         # one-shot: released, no new hang
    m.release()
    shutdown(acl, ctx, stream)


def test_hang_after_must_be_a_non_negative_integer_or_null(sim):
    _, control = sim
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="hang_after"):
            control.configure({"hang_after": bad})
    assert control.configure({"hang_after": None}).hang_after is None


def test_device_time_sleeps_without_using_the_cpu(sim, make_bundle):
    acl, control = sim
    bundle = make_bundle()
    control.configure({"device_time_ms": 300, "compute": "surrogate"})
    ctx, stream = boot(acl)
    m = Loaded(acl, bundle)
    m.write(random_input(bundle))
    wall, cpu = time.monotonic(), time.process_time()
    assert acl.mdl.execute(m.model_id, m.in_ds, m.out_ds) == 0
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    assert wall >= 0.3 and cpu < 0.15
    m.release()
    shutdown(acl, ctx, stream)


def test_surrogate_compute_outputs_a_vessel_like_map_of_the_luminance(sim, make_bundle):
    acl, control = sim
    bundle = make_bundle(aipp=True)
    control.configure({"compute": "surrogate"})
    ctx, stream = boot(acl)
    m = Loaded(acl, bundle)
    x = random_input(bundle, seed=7)                   # NV12: the Y plane, then the chroma
    side = x.shape[1]
    x[:side] = 150
    x[:side, side // 2] = 60                           # a dark one-pixel line: a vessel
    x[20:26, 8:14] = 200                               # a bright blob: not a vessel
    m.write(x)
    assert acl.mdl.execute(m.model_id, m.in_ds, m.out_ds) == 0
    y = m.read(bundle.output_shape)[0, 0]
    assert np.all(y[2:-2, side // 2] == 1.0)           # 90 levels deep: full probability
    y[:, side // 2] = 0.0
    assert np.all(y == 0.0)                            # flat background and bright blobs: none
    m.release()
    shutdown(acl, ctx, stream)


def test_loading_missing_or_invalid_models_fails_with_codes(sim, tmp_path):
    acl, _ = sim
    ctx, stream = boot(acl)
    assert acl.mdl.load_from_file(str(tmp_path / "none.onnx")) == (0, 100003)
    bad = tmp_path / "model.om"
    bad.write_bytes(b"\x00\x01 not onnx")
    assert acl.mdl.load_from_file(str(bad)) == (0, 100013)
    assert ".om" in acl.get_recent_err_msg()
    shutdown(acl, ctx, stream)


# ----------------------------------------------------------------------------- faults

def test_injected_faults_fire_after_k_calls_for_n_times(sim):
    acl, control = sim
    ctx, stream = boot(acl)
    control.inject_fault("acl.rt.malloc", 207001, times=2, after=1)
    codes = [acl.rt.malloc(32, 2) for _ in range(4)]
    assert [c[1] for c in codes] == [0, 207001, 207001, 0]
    for ptr, ret in codes:
        if ret == 0:
            assert acl.rt.free(ptr) == 0
    ptr, _ = acl.rt.malloc(32, 2)
    control.inject_fault("acl.rt.memset", 507011, times=None)
    assert [acl.rt.memset(ptr, 1, 0, 1) for _ in range(3)] == [507011] * 3
    assert acl.rt.free(ptr) == 0
    shutdown(acl, ctx, stream)


def test_fault_options_are_validated(sim):
    _, control = sim
    with pytest.raises(ValueError, match="unknown option 'precison'"):
        control.configure({"precison": "fp16"})
    with pytest.raises(ValueError, match="fault call"):
        control.configure({"faults": [{"call": "execute", "code": 507011}]})
    with pytest.raises(ValueError, match="precision must be one of"):
        control.configure({"precision": "int8"})


# ----------------------------------------------------------------------------- teardown and leaks

def test_teardown_releases_everything_without_leaks(sim, make_bundle):
    acl, control = sim
    bundle = make_bundle()
    ctx, stream = boot(acl)
    m = Loaded(acl, bundle)
    m.write(random_input(bundle))
    assert acl.mdl.execute(m.model_id, m.in_ds, m.out_ds) == 0
    m.release()
    shutdown(acl, ctx, stream)
    assert control.leak_report() == []
    assert all(v == 0 for v in control.live_resources().values())


def test_destroying_datasets_and_buffers_never_frees_memory_and_leaks_are_reported(sim, make_bundle):
    acl, control = sim
    bundle = make_bundle()
    ctx, stream = boot(acl)
    m = Loaded(acl, bundle)
    assert acl.mdl.destroy_dataset(m.in_ds) == 0
    assert acl.destroy_data_buffer(m.in_buf) == 0
    assert acl.rt.memset(m.in_ptr, m.in_size, 1, m.in_size) == 0  # memory still alive and usable
    assert acl.rt.free(m.in_ptr) == 0
    # deliberately leak the output side and the model
    assert acl.rt.destroy_stream(stream) == 0
    assert acl.rt.destroy_context(ctx) == 0
    assert acl.rt.reset_device(0) == 0
    assert acl.finalize() == 0
    report = "\n".join(control.leak_report())
    assert "still loaded at reset_device(0)" in report
    assert "%d bytes of malloc memory" % m.out_size in report
    assert "dataset" in report and "data buffer" in report and "model description" in report


def test_finalize_reports_contexts_streams_and_devices_left_open(sim, caplog):
    acl, control = sim
    boot(acl)
    assert acl.finalize() == 0
    report = control.leak_report()
    assert any("stream" in r for r in report) and any("context" in r for r in report)
    assert any("device 0 still set" in r for r in report)
    assert "sim leak" in caplog.text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_500000_for_every_call(sim):
    acl, _ = sim
    assert acl.init() == 0
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report the codes through the pipe, never return into pytest
        try:
            codes = "%d,%d" % (acl.rt.set_device(0), acl.init())
            os.write(write_fd, codes.encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    result = os.read(read_fd, 64).decode()
    os.close(read_fd)
    assert result == "500000,500000"
    assert acl.rt.set_device(0) == 0  # the parent is unaffected
    assert acl.rt.reset_device(0) == 0
    assert acl.finalize() == 0
