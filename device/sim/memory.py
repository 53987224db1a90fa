"""Simulated memory: real numpy byte buffers addressed by integer pointers, with provenance.

Kinds: ``malloc`` (acl.rt.malloc, device), ``host`` (acl.rt.malloc_host), ``dvpp`` (acl.media.dvpp_malloc,
device) and ``util`` (host memory of Python objects exposed by acl.util: ``bytes_to_ptr``/``numpy_to_ptr``).
Allocated regions get fake addresses above 2**48 (never a valid user-space address, so they cannot collide
with the real addresses of util regions); pointer arithmetic inside a region is allowed.
"""
from __future__ import annotations

import bisect
import ctypes
import logging
import sys
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

log = logging.getLogger(__name__)

DEVICE_KINDS = ("malloc", "dvpp")
HOST_KINDS = ("host", "util")
_FAKE_BASE = 1 << 48
_PAGE = 4096


@dataclass
class Region:
    """One memory region: ``data`` is a writable uint8 view of exactly ``size`` bytes."""

    base: int
    size: int
    kind: str
    data: np.ndarray
    device_id: int = -1
    owner: Any = None
    requested: int = 0

    @property
    def end(self) -> int:
        return self.base + self.size


class MemoryRegistry:
    """All live regions of the simulated process, plus freed bases (to tell double free from unknown pointer)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._regions: Dict[int, Region] = {}
        self._bases: List[int] = []
        self._util: Dict[int, Region] = {}
        self._freed: Dict[int, str] = {}
        self._next = _FAKE_BASE
        self._rng = np.random.default_rng()
        self.device_bytes = 0

    # -- allocation ---------------------------------------------------------------------------
    def allocate(self, size: int, kind: str, device_id: int, align: int = 32) -> Region:
        """New region of ``size`` bytes (already rounded by the caller), filled with garbage bytes."""
        with self.lock:
            base = (self._next + align - 1) // align * align
            self._next = (base + size + _PAGE - 1) // _PAGE * _PAGE + _PAGE  # guard gap between regions
            data = self._rng.integers(0, 256, size=size, dtype=np.uint8)
            region = Region(base=base, size=size, kind=kind, data=data, device_id=device_id, requested=size)
            self._regions[base] = region
            bisect.insort(self._bases, base)
            if kind in DEVICE_KINDS:
                self.device_bytes += size
            return region

    def release(self, region: Region) -> None:
        """Forget an allocated region (after a successful free)."""
        with self.lock:
            self._regions.pop(region.base, None)
            idx = bisect.bisect_left(self._bases, region.base)
            if idx < len(self._bases) and self._bases[idx] == region.base:
                del self._bases[idx]
            self._freed[region.base] = region.kind
            if region.kind in DEVICE_KINDS:
                self.device_bytes -= region.size

    def freed_kind(self, ptr: int) -> Optional[str]:
        """Kind of a region that was freed at ``ptr``, if any."""
        return self._freed.get(ptr)

    def allocated(self, kinds: Tuple[str, ...] = ("malloc", "host", "dvpp")) -> List[Region]:
        """Live allocated (non-util) regions of the given kinds."""
        with self.lock:
            return [r for r in self._regions.values() if r.kind in kinds]

    # -- util (Python-object) regions ----------------------------------------------------------
    def register_external(self, address: int, data: np.ndarray, owner: Any) -> Region:
        """Register host memory owned by a Python object (zero-copy view ``data`` at ``address``)."""
        with self.lock:
            self.sweep_util()
            region = Region(base=address, size=int(data.nbytes), kind="util", data=data, owner=owner,
                            requested=int(data.nbytes))
            self._util[address] = region
            return region

    def sweep_util(self) -> None:
        """Drop util regions whose Python object is referenced by nothing but this registry (it died)."""
        with self.lock:
            dead = [addr for addr, r in self._util.items() if _only_registry_refs(r)]
            for addr in dead:
                del self._util[addr]

    # -- lookup ---------------------------------------------------------------------------------
    def find(self, ptr: int) -> Optional[Tuple[Region, int]]:
        """(region, offset) containing address ``ptr``, or None."""
        if not isinstance(ptr, int) or ptr <= 0:
            return None
        with self.lock:
            idx = bisect.bisect_right(self._bases, ptr) - 1
            if idx >= 0:
                region = self._regions[self._bases[idx]]
                if ptr < region.end:
                    return region, ptr - region.base
            region_u = self._util.get(ptr)
            if region_u is not None:
                return region_u, 0
            for r in self._util.values():
                if r.base <= ptr < r.end:
                    return r, ptr - r.base
            return None

    def span(self, ptr: int, nbytes: int) -> Optional[Tuple[Region, np.ndarray]]:
        """(region, writable uint8 view of [ptr, ptr+nbytes)) when entirely inside one region, else None."""
        found = self.find(ptr)
        if found is None:
            return None
        region, off = found
        if nbytes < 0 or off + nbytes > region.size:
            return None
        return region, region.data[off:off + nbytes]


def _only_registry_refs(region: Region) -> bool:
    # refs: Region.owner attribute + getrefcount's argument; anything more means user code still holds it.
    return region.owner is not None and sys.getrefcount(region.owner) <= 2


def view_of_bytes(obj: Any) -> Tuple[int, np.ndarray]:
    """Real address and a writable zero-copy uint8 view of a bytes/bytearray object's buffer."""
    n = len(obj)
    if isinstance(obj, bytearray):
        address = ctypes.addressof((ctypes.c_ubyte * n).from_buffer(obj)) if n else 0
    elif isinstance(obj, bytes):
        address = ctypes.cast(ctypes.c_char_p(obj), ctypes.c_void_p).value or 0
    else:
        raise TypeError("bytes_to_ptr expects bytes or bytearray, got %s" % type(obj).__name__)
    return address, raw_view(address, n)


def raw_view(address: int, nbytes: int) -> np.ndarray:
    """Writable uint8 view of ``nbytes`` at a real ``address`` that holds no reference to the memory's owner."""
    if nbytes == 0:
        return np.zeros(0, dtype=np.uint8)
    buf = (ctypes.c_ubyte * nbytes).from_address(address)
    return np.frombuffer(buf, dtype=np.uint8)
