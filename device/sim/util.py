"""Simulated ``acl.util``: pointers to Python-owned host memory.

``bytes_to_ptr(b)`` is zero-copy: the pointer is the real address of the bytes object's buffer, so data
copied to it is visible through ``np.frombuffer(b)`` (the acllite idiom).  ``numpy_to_ptr`` likewise points into
the array.  The object must outlive the pointer: once nothing but the simulator references it, its region is
dropped and the pointer becomes unknown (107000 on use).  ``ptr_to_bytes`` copies; ``ptr_to_numpy`` is a
zero-copy view.  ``device.sim.control`` can hide ``bytes_to_ptr``/``ptr_to_bytes`` to mimic CANN 5.x.
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .memory import raw_view, view_of_bytes
from .state import STATE

log = logging.getLogger("vessel_seg.device.sim")

# npy type codes of pyACL's ptr_to_numpy (NumPy's own type numbers)
NPY_TYPES = {0: np.bool_, 1: np.int8, 2: np.uint8, 3: np.int16, 4: np.uint16, 5: np.int32, 6: np.uint32,
             7: np.int64, 8: np.uint64, 11: np.float32, 12: np.float64, 23: np.float16}


def bytes_to_ptr(data: Any) -> int:
    """Address of a bytes/bytearray object's own buffer (zero-copy)."""
    if isinstance(data, bytes) and len(data) <= 1:
        # CPython shares 0/1-byte bytes objects; writing through a pointer would corrupt the interpreter
        log.warning("sim: bytes_to_ptr on a %d-byte bytes object: using a private copy", len(data))
        data = bytearray(data)
    address, view = view_of_bytes(data)
    if not address:
        return 0
    STATE.memory.register_external(address, view, data)
    return address


def ptr_to_bytes(ptr: int, size: int) -> bytes:
    """Copy ``size`` bytes at ``ptr`` into a new bytes object (b'' when the range is not valid memory)."""
    span = STATE.memory.span(ptr, size) if isinstance(ptr, int) and isinstance(size, int) else None
    if span is None:
        STATE.note("ptr_to_bytes: %r bytes at %r are not valid memory", size, ptr)
        return b""
    return span[1].tobytes()


def numpy_to_ptr(array: np.ndarray) -> int:
    """Address of a numpy array's data (zero-copy for C-contiguous arrays)."""
    if not isinstance(array, np.ndarray):
        raise TypeError("numpy_to_ptr expects a numpy array, got %s" % type(array).__name__)
    if not array.flags["C_CONTIGUOUS"]:
        log.warning("sim: numpy_to_ptr on a non-contiguous array: pointing at a copy (writes are lost)")
        array = np.ascontiguousarray(array)
    if array.nbytes == 0:
        return 0
    address = int(array.ctypes.data)
    STATE.memory.register_external(address, raw_view(address, array.nbytes), array)
    return address


def numpy_contiguous_to_ptr(array: np.ndarray) -> Tuple[int, np.ndarray]:
    """(pointer, contiguous array it points into); keep the returned array alive while using the pointer."""
    arr = np.ascontiguousarray(array)
    return numpy_to_ptr(arr), arr


def ptr_to_numpy(ptr: int, shape: Sequence[int], npy_type: int) -> Optional[np.ndarray]:
    """Zero-copy numpy view of memory at ``ptr`` (None when the range is not valid memory)."""
    if npy_type not in NPY_TYPES:
        STATE.note("ptr_to_numpy: unsupported npy type %r", npy_type)
        return None
    dtype = np.dtype(NPY_TYPES[npy_type])
    shape = tuple(int(d) for d in shape)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    span = STATE.memory.span(ptr, nbytes) if isinstance(ptr, int) else None
    if span is None:
        STATE.note("ptr_to_numpy: %d bytes at %r are not valid memory", nbytes, ptr)
        return None
    return span[1].view(dtype).reshape(shape)


HIDEABLE = ("bytes_to_ptr", "ptr_to_bytes")
ORIGINALS = {name: globals()[name] for name in HIDEABLE}
