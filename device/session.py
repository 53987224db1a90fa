"""DeviceSession: one model on one device through pyACL, for the real ``acl`` and the simulator alike.

The session takes the ``acl`` module object, so the same code path runs on the board and on the simulator; only
the module and the model file (.om vs .onnx) differ.  Open order: init -> set_device -> create_context ->
create_stream -> get_run_mode -> load model -> descriptor -> per slot: malloc input/output, data buffers, datasets.
Teardown (``close``) in the documented order: free buffers, destroy data buffers, destroy datasets, unload,
destroy desc, destroy stream, destroy context, reset device, finalize.

pyACL can be initialised once per process (CANN 5.x returns 100002 for a second ``acl.init`` even after
``finalize``), so ``acl.init``/``acl.finalize`` are process-wide and reference counted here: ``close()`` finalizes
only with ``finalize=True`` (and only when no other session is open); otherwise pyACL stays initialised until the
process exits (an atexit hook finalizes it).  Re-opening sessions (e.g. after a device error) therefore works.
"""
from __future__ import annotations

import atexit
import logging
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Dict, List, Optional, Set, Tuple, Union

import numpy as np

from . import runtime as runtime_mod
from .bundle import FORMAT_NV12, ModelBundle, load_bundle
from .errors import AclError, DeviceError

log = logging.getLogger(__name__)

__all__ = ["TensorDesc", "DeviceSession", "open_session", "finalize_runtime"]

ACL_MEM_MALLOC_NORMAL_ONLY = 2
ACL_MEMCPY_HOST_TO_DEVICE = 1
ACL_MEMCPY_DEVICE_TO_HOST = 2
ACL_MEMCPY_DEVICE_TO_DEVICE = 3
ACL_DEVICE = 0
_REPEAT_INITIALIZE = 100002


@dataclass(frozen=True)
class TensorDesc:
    """What the host writes/reads: name, shape, numpy dtype, byte size, format ("NV12", "NCHW")."""

    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    nbytes: int
    format: str


# ----------------------------------------------------------------------------- process-wide acl.init

class _AclProcess:
    """Reference-counted acl.init / acl.finalize per acl module object."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users: Dict[int, int] = {}
        self.inited: Dict[int, bool] = {}
        self.finalized: Dict[int, bool] = {}
        self.modules: Dict[int, ModuleType] = {}

    def acquire(self, acl: ModuleType) -> None:
        key = id(acl)
        with self.lock:
            if self.users.get(key, 0) == 0:
                ret = acl.init()
                if ret == _REPEAT_INITIALIZE and self.finalized.get(key):
                    raise AclError("acl.init", ret, "pyACL was finalized earlier in this process and CANN 5.x "
                                   "cannot initialise it again; restart the process")
                if ret not in (0, _REPEAT_INITIALIZE):
                    raise AclError("acl.init", ret, _recent(acl))
                if ret == _REPEAT_INITIALIZE:
                    log.debug("acl.init: already initialised in this process")
                self.inited[key] = True
                self.finalized[key] = False
                self.modules[key] = acl
            self.users[key] = self.users.get(key, 0) + 1

    def release(self, acl: ModuleType, finalize: bool) -> None:
        key = id(acl)
        with self.lock:
            self.users[key] = max(0, self.users.get(key, 0) - 1)
            if finalize and self.users[key] == 0 and self.inited.get(key):
                self._finalize(key)

    def _finalize(self, key: int) -> None:
        acl = self.modules[key]
        self.inited[key] = False
        self.finalized[key] = True
        ret = acl.finalize()
        if ret != 0:
            raise AclError("acl.finalize", ret)

    def finalize_all(self) -> None:
        with self.lock:
            for key, inited in list(self.inited.items()):
                if inited and self.users.get(key, 0) == 0:
                    try:
                        self._finalize(key)
                    except AclError as exc:
                        log.debug("at exit: %s", exc)


_PROCESS = _AclProcess()
atexit.register(_PROCESS.finalize_all)


def finalize_runtime() -> None:
    """Finalize pyACL now if no session is open (also done automatically at process exit)."""
    _PROCESS.finalize_all()


def _recent(acl: ModuleType) -> Optional[str]:
    getter = getattr(acl, "get_recent_err_msg", None)
    if getter is None:
        return None
    try:
        msg = getter()
    except Exception:  # optional diagnostics only; never mask the real error
        return None
    return msg or None


class _Slot:
    """Device buffers and datasets of one input/output buffer set."""

    def __init__(self) -> None:
        self.in_ptr = 0
        self.out_ptr = 0
        self.in_buf = 0
        self.out_buf = 0
        self.in_ds = 0
        self.out_ds = 0


_THREAD = threading.local()


class DeviceSession:
    """An open model on the NPU (or simulator) with ``n_slots`` pre-allocated input/output buffer sets."""

    def __init__(self, bundle: ModelBundle, acl: ModuleType, runtime_name: str, warning: Optional[str] = None,
                 device_id: int = 0, n_slots: int = 2) -> None:
        if n_slots < 1:
            raise ValueError("n_slots must be >= 1, got %r" % n_slots)
        self.bundle = bundle
        self.acl = acl
        self.runtime_name = runtime_name
        self.device_id = device_id
        self.n_slots = n_slots
        self._warning = warning
        self._token = object()
        self._exec_lock = threading.Lock()     # serialises executes and stream drains
        self._state_lock = threading.Lock()    # guards _pending, _valid, _async_errors (short sections only)
        self._pending: Set[int] = set()
        self._valid: Set[int] = set()          # slots whose output buffer holds the result of their last input
        self._async_errors: Dict[int, AclError] = {}
        self._slots: List[_Slot] = []
        self._acquired = False
        self._device_set = False
        self._ctx = 0
        self._stream = 0
        self._model_id = 0
        self._desc = 0
        self._closed = False
        self.run_mode = ACL_DEVICE
        self.runtime_info: Dict[str, Any] = {}
        try:
            self._open()
        except BaseException:
            self._teardown(raise_errors=False)
            self._closed = True
            raise

    # -- helpers ---------------------------------------------------------------------------------
    def _check(self, call: str, ret: int) -> None:
        if ret != 0:
            raise AclError(call, ret, _recent(self.acl))

    def _pair(self, call: str, result: Tuple[Any, int]) -> Any:
        value, ret = result
        self._check(call, ret)
        return value

    # -- open ------------------------------------------------------------------------------------
    def _open(self) -> None:
        acl, b = self.acl, self.bundle
        path = runtime_mod.model_path(b, self.runtime_name)
        _PROCESS.acquire(acl)
        self._acquired = True
        self._check("acl.rt.set_device", acl.rt.set_device(self.device_id))
        self._device_set = True
        self._ctx = self._pair("acl.rt.create_context", acl.rt.create_context(self.device_id))
        _THREAD.token = self._token
        self._stream = self._pair("acl.rt.create_stream", acl.rt.create_stream())
        self.run_mode = self._pair("acl.rt.get_run_mode", acl.rt.get_run_mode())
        if self.run_mode == ACL_DEVICE:  # the 200DK: every memory is CPU-visible; acllite copies D2D
            self._h2d = self._d2h = ACL_MEMCPY_DEVICE_TO_DEVICE
        else:
            self._h2d, self._d2h = ACL_MEMCPY_HOST_TO_DEVICE, ACL_MEMCPY_DEVICE_TO_HOST
        self._model_id = self._pair("acl.mdl.load_from_file", acl.mdl.load_from_file(path))
        self._desc = acl.mdl.create_desc()
        if not self._desc:
            raise AclError("acl.mdl.create_desc", 500000, "returned a null description")
        self._check("acl.mdl.get_desc", acl.mdl.get_desc(self._desc, self._model_id))
        self._describe()
        for _ in range(self.n_slots):
            self._slots.append(self._alloc_slot())
        self.runtime_info = self._make_info()
        log.info("device session open: %s %s on %s (runtime %s, %d slots)", b.name, b.version,
                 self.runtime_info.get("soc"), self.runtime_name, self.n_slots)

    def _describe(self) -> None:
        acl, b = self.acl, self.bundle
        n_in = acl.mdl.get_num_inputs(self._desc)
        n_out = acl.mdl.get_num_outputs(self._desc)
        if n_in != 1 or n_out != 1:
            raise DeviceError("model %s has %d inputs and %d outputs; vessel-seg expects 1 and 1" % (
                b.name, n_in, n_out))
        self._in_size = acl.mdl.get_input_size_by_index(self._desc, 0)
        self._out_size = acl.mdl.get_output_size_by_index(self._desc, 0)
        hint = " (re-run convert_om.sh for this bundle)" if self.runtime_name == "acl" else ""
        if self._in_size != b.host_input_nbytes:
            raise DeviceError("model input is %d bytes but model.yaml (%s %s) implies %d%s" % (
                self._in_size, b.input_format, list(b.host_input_shape), b.host_input_nbytes, hint))
        if self._out_size != b.output_nbytes:
            raise DeviceError("model output is %d bytes but model.yaml output %s float32 implies %d%s" % (
                self._out_size, list(b.output_shape), b.output_nbytes, hint))
        self.input_desc = TensorDesc(b.input_name, tuple(b.host_input_shape), b.host_input_dtype,
                                     self._in_size, "NV12" if b.input_format == FORMAT_NV12 else "NCHW")
        self.output_desc = TensorDesc(b.output_name, tuple(b.output_shape), np.dtype(np.float32),
                                      self._out_size, "NCHW")

    def _alloc_slot(self) -> _Slot:
        acl = self.acl
        slot = _Slot()
        try:
            slot.in_ptr = self._pair("acl.rt.malloc", acl.rt.malloc(self._in_size, ACL_MEM_MALLOC_NORMAL_ONLY))
            slot.out_ptr = self._pair("acl.rt.malloc", acl.rt.malloc(self._out_size, ACL_MEM_MALLOC_NORMAL_ONLY))
            slot.in_buf = acl.create_data_buffer(slot.in_ptr, self._in_size)
            slot.out_buf = acl.create_data_buffer(slot.out_ptr, self._out_size)
            if not slot.in_buf or not slot.out_buf:
                raise AclError("acl.create_data_buffer", 500000, "returned a null buffer")
            slot.in_ds = acl.mdl.create_dataset()
            slot.out_ds = acl.mdl.create_dataset()
            if not slot.in_ds or not slot.out_ds:
                raise AclError("acl.mdl.create_dataset", 500000, "returned a null dataset")
            self._pair("acl.mdl.add_dataset_buffer", acl.mdl.add_dataset_buffer(slot.in_ds, slot.in_buf))
            self._pair("acl.mdl.add_dataset_buffer", acl.mdl.add_dataset_buffer(slot.out_ds, slot.out_buf))
        except BaseException:
            self._slots.append(slot)  # so teardown frees what exists of a half-built slot
            raise
        return slot

    def _make_info(self) -> Dict[str, Any]:
        info: Dict[str, Any] = {"runtime": self.runtime_name, "device_id": self.device_id,
                                "run_mode": "device" if self.run_mode == ACL_DEVICE else "host",
                                "model": self.bundle.name, "model_version": self.bundle.version,
                                "aipp": self.bundle.aipp is not None, "input_format": self.input_desc.format,
                                "slots": self.n_slots, "warning": self._warning,
                                "bytes_to_ptr": hasattr(self.acl.util, "bytes_to_ptr")}
        if self.runtime_name == "acl":
            info["precision"] = "fp16"  # ATC's default precision mode on Ascend 310 (force_fp16)
        info.update(runtime_mod.runtime_details(self.acl, self.runtime_name))
        return info

    # -- threads ---------------------------------------------------------------------------------
    def bind_thread(self) -> None:
        """Bind this session's context to the calling thread (worker threads: before any other call)."""
        self._require_open()
        self._check("acl.rt.set_context", self.acl.rt.set_context(self._ctx))
        _THREAD.token = self._token

    def _ensure_bound(self) -> None:
        if getattr(_THREAD, "token", None) is not self._token:
            self.bind_thread()

    def _require_open(self) -> None:
        if self._closed:
            raise DeviceError("device session is closed")

    def _slot(self, slot: int) -> _Slot:
        if not isinstance(slot, int) or not 0 <= slot < len(self._slots):
            raise IndexError("slot must be 0..%d, got %r" % (self.n_slots - 1, slot))
        return self._slots[slot]

    # -- data --------------------------------------------------------------------------------------
    def write_input(self, slot: int, array: np.ndarray) -> None:
        """Copy one host input (NV12 uint8 (H*3/2, W) or float32 NCHW, per ``input_desc``) into ``slot``."""
        self._require_open()
        s = self._slot(slot)
        arr = np.asarray(array)
        desc = self.input_desc
        if arr.shape != desc.shape or arr.dtype != desc.dtype:
            raise ValueError("input must be %s %s (%s), got %s %s" % (
                desc.dtype, list(desc.shape), desc.format, arr.dtype, list(arr.shape)))
        arr = np.ascontiguousarray(arr)
        self._ensure_bound()
        self._begin_submission(slot)
        util = self.acl.util
        if hasattr(util, "bytes_to_ptr"):
            data = arr.tobytes()
            ptr = util.bytes_to_ptr(data)
            self._check("acl.rt.memcpy", self.acl.rt.memcpy(s.in_ptr, self._in_size, ptr, arr.nbytes, self._h2d))
            del data
        else:  # CANN 5.x
            ptr = util.numpy_to_ptr(arr)
            self._check("acl.rt.memcpy", self.acl.rt.memcpy(s.in_ptr, self._in_size, ptr, arr.nbytes, self._h2d))

    def read_output(self, slot: int) -> np.ndarray:
        """The output of ``slot`` as a new float32 array of ``output_desc.shape``.

        Waits for a pending async execute of ``slot`` first.  Raises that execute's :class:`AclError` if it
        failed (once; the error is consumed), and :class:`DeviceError` if no execute of the slot's current
        input has completed, so a stale buffer is never returned as a result.
        """
        self._require_open()
        s = self._slot(slot)
        self._drain_if_pending(slot)
        with self._state_lock:
            err = self._async_errors.pop(slot, None)
            valid = slot in self._valid
        if err is not None:
            raise err
        if not valid:
            raise DeviceError("slot %d holds no valid output: no execute of its current input has completed"
                              % slot)
        self._ensure_bound()
        util = self.acl.util
        n = self._out_size
        if hasattr(util, "bytes_to_ptr"):
            out = bytes(n)
            ptr = util.bytes_to_ptr(out)
            self._check("acl.rt.memcpy", self.acl.rt.memcpy(ptr, n, s.out_ptr, n, self._d2h))
            result = np.frombuffer(out, dtype=np.float32).reshape(self.output_desc.shape).copy()
        else:
            result = np.empty(self.output_desc.shape, dtype=np.float32)
            ptr = util.numpy_to_ptr(result)
            self._check("acl.rt.memcpy", self.acl.rt.memcpy(ptr, n, s.out_ptr, n, self._d2h))
        return result

    # -- execution ---------------------------------------------------------------------------------
    def infer(self, slot: int, array: np.ndarray) -> np.ndarray:
        """write_input, execute and read_output on ``slot``: one synchronous inference."""
        self.write_input(slot, array)
        self.execute(slot)
        return self.read_output(slot)

    def execute(self, slot: int) -> None:
        """Synchronous inference on ``slot``'s buffers."""
        self._require_open()
        s = self._slot(slot)
        self._ensure_bound()
        with self._exec_lock:
            self._drain_locked()
            with self._state_lock:
                self._async_errors.pop(slot, None)
                self._valid.discard(slot)
            self._check("acl.mdl.execute", self.acl.mdl.execute(self._model_id, s.in_ds, s.out_ds))
            with self._state_lock:
                self._valid.add(slot)

    def execute_async(self, slot: int) -> None:
        """Enqueue inference of ``slot`` on the session stream; its result is readable once the stream drained."""
        self._require_open()
        s = self._slot(slot)
        self._ensure_bound()
        with self._exec_lock:
            with self._state_lock:
                self._async_errors.pop(slot, None)
                self._valid.discard(slot)
            self._check("acl.mdl.execute_async",
                        self.acl.mdl.execute_async(self._model_id, s.in_ds, s.out_ds, self._stream))
            with self._state_lock:
                self._pending.add(slot)

    def wait(self) -> None:
        """Synchronize the stream (all enqueued executes).

        Raises the error of a failed async execute whose slot has not been read or reused since; the error
        stays recorded for that slot, so :meth:`read_output` of the slot raises it too (never stale data).
        """
        self._require_open()
        self._ensure_bound()
        with self._exec_lock:
            self._drain_locked()
        with self._state_lock:
            errors = [self._async_errors[k] for k in sorted(self._async_errors)]
        if errors:
            raise errors[0]

    def _drain_if_pending(self, slot: int) -> None:
        """Let a pending async execute of ``slot`` finish (its result or error is then recorded)."""
        with self._state_lock:
            pending = slot in self._pending
        if pending:
            with self._exec_lock:
                self._drain_locked()

    def _begin_submission(self, slot: int) -> None:
        """A new input for ``slot``: let a pending execute of it finish, then forget its result and error."""
        self._drain_if_pending(slot)
        with self._state_lock:
            self._valid.discard(slot)
            self._async_errors.pop(slot, None)

    def _drain_locked(self) -> None:
        """Synchronize the stream (caller holds the exec lock); record per-slot success or failure."""
        with self._state_lock:
            if not self._pending:
                return
            pending = set(self._pending)
        ret = self.acl.rt.synchronize_stream(self._stream)
        err = AclError("acl.rt.synchronize_stream", ret, _recent(self.acl)) if ret != 0 else None
        with self._state_lock:
            self._pending -= pending
            for slot in pending:
                if err is None:
                    self._valid.add(slot)
                else:
                    self._async_errors[slot] = err

    @property
    def pending(self) -> bool:
        """Whether async executes are enqueued and not yet waited for."""
        return bool(self._pending)

    # -- teardown ----------------------------------------------------------------------------------
    def close(self, finalize: bool = False) -> None:
        """Release everything in the documented order; ``finalize=True`` also finalizes pyACL (last session)."""
        if self._closed:
            return
        self._closed = True
        self._teardown(raise_errors=True, finalize=finalize)

    def _teardown(self, raise_errors: bool, finalize: bool = False) -> None:
        acl = self.acl
        errors: List[AclError] = []

        def step(call: str, ret: Any) -> None:
            if ret != 0:
                err = AclError(call, ret, _recent(acl))
                log.error("teardown: %s", err)
                errors.append(err)

        if self._ctx:
            step("acl.rt.set_context", acl.rt.set_context(self._ctx))
            _THREAD.token = self._token
        if self._stream:  # nothing may still run on buffers about to be freed
            self._pending = set()
            self._valid = set()
            step("acl.rt.synchronize_stream", acl.rt.synchronize_stream(self._stream))
        slots = list(self._slots)
        for s in slots:
            for ptr in (s.in_ptr, s.out_ptr):
                if ptr:
                    step("acl.rt.free", acl.rt.free(ptr))
        for s in slots:
            for buf in (s.in_buf, s.out_buf):
                if buf:
                    step("acl.destroy_data_buffer", acl.destroy_data_buffer(buf))
        for s in slots:
            for ds in (s.in_ds, s.out_ds):
                if ds:
                    step("acl.mdl.destroy_dataset", acl.mdl.destroy_dataset(ds))
        self._slots = []
        if self._model_id:
            step("acl.mdl.unload", acl.mdl.unload(self._model_id))
            self._model_id = 0
        if self._desc:
            step("acl.mdl.destroy_desc", acl.mdl.destroy_desc(self._desc))
            self._desc = 0
        if self._stream:
            step("acl.rt.destroy_stream", acl.rt.destroy_stream(self._stream))
            self._stream = 0
        if self._ctx:
            step("acl.rt.destroy_context", acl.rt.destroy_context(self._ctx))
            self._ctx = 0
        if self._device_set:
            step("acl.rt.reset_device", acl.rt.reset_device(self.device_id))
            self._device_set = False
        if self._acquired:
            self._acquired = False
            try:
                _PROCESS.release(acl, finalize)
            except AclError as exc:
                log.error("teardown: %s", exc)
                errors.append(exc)
        if errors and raise_errors:
            raise errors[0]

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "DeviceSession":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        elif not self._closed:
            self._closed = True
            self._teardown(raise_errors=False)

    def __repr__(self) -> str:
        return "DeviceSession(%s %s, runtime=%s, slots=%d%s)" % (
            self.bundle.name, self.bundle.version, self.runtime_name, self.n_slots, ", closed" if self._closed else "")


def open_session(bundle: Union[ModelBundle, str], runtime: str = "auto", device_id: int = 0, n_slots: int = 2,
                 sim_options: Optional[Dict[str, Any]] = None) -> DeviceSession:
    """Open a session on ``bundle`` (a ModelBundle or a bundle folder) with the chosen runtime."""
    if not isinstance(bundle, ModelBundle):
        bundle = load_bundle(str(bundle))
    acl, name, warning = runtime_mod.load_runtime(runtime, sim_options)
    return DeviceSession(bundle, acl, name, warning, device_id=device_id, n_slots=n_slots)
