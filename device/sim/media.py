"""Simulated ``acl.media``: DVPP memory only (128-byte aligned, freed only by dvpp_free)."""
from __future__ import annotations

from typing import Tuple

from .rt import allocate, release
from .state import api


@api("acl.media.dvpp_malloc", returns="pair", need_ctx=True)
def dvpp_malloc(size: int) -> Tuple[int, int]:
    """DVPP memory for media buffers; contents are garbage."""
    return allocate(size, "dvpp", align=128)


@api("acl.media.dvpp_free", need_ctx=True)
def dvpp_free(ptr: int) -> int:
    """Free memory from dvpp_malloc only."""
    return release(ptr, "dvpp", "acl.media.dvpp_free")
