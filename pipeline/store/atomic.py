"""Atomic file writes: temp file in the same directory, fsync, ``os.replace``, fsync of the directory.

A reader either sees the old file (or none) or the complete new one, never a partial file, even after a
crash or power cut. On any error (``ENOSPC`` included) the temp file is removed and the error re-raised.
Temp names start with a dot and end in ``.tmp``, so the capture watcher and the result store ignore them.

Test hook (``vessel-seg stress`` on machines that cannot mount a small tmpfs): while the file named by the
environment variable ``VESSEL_SEG_TEST_ENOSPC_FLAG`` exists, every atomic write fails with ``ENOSPC`` after
creating its temp file, exactly like a full disk. Never set it in production.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any, Union

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Test hook: while the file this variable names exists, atomic writes fail with ENOSPC (module docstring).
ENOSPC_FLAG_ENV = "VESSEL_SEG_TEST_ENOSPC_FLAG"


def _check_injected_disk_full(target: Path) -> None:
    """Raise ENOSPC while the test hook's flag file exists (module docstring)."""
    flag = os.environ.get(ENOSPC_FLAG_ENV)
    if flag and os.path.exists(flag):
        raise OSError(errno.ENOSPC, "No space left on device (test hook %s)" % ENOSPC_FLAG_ENV, str(target))


def fsync_dir(directory: PathLike) -> None:
    """fsync a directory so a rename in it is durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: What :func:`temp_path_for` names look like (".<name>.<12 hex>.tmp"); a kill -9 mid-write leaves one behind.
TEMP_NAME_RE = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")


def temp_path_for(path: PathLike) -> Path:
    """A unique hidden temp name next to ``path``."""
    p = Path(path)
    return p.with_name(".%s.%s.tmp" % (p.name, uuid.uuid4().hex[:12]))


def is_temp_name(name: str) -> bool:
    """True for a file name :func:`temp_path_for` made."""
    return TEMP_NAME_RE.fullmatch(name) is not None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # pragma: no cover - os.write raises rather than returning 0
            raise OSError(errno.EIO, "short write")
        view = view[n:]


def atomic_write_bytes(path: PathLike, data: bytes, mode: int = 0o644, sync_dir: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically and durably; returns the final path.

    ``sync_dir=False`` skips the directory fsync for callers that write several files and then call
    ``fsync_dir`` once (the rename is atomic either way; only its durability is deferred).
    """
    final = Path(path)
    tmp = temp_path_for(final)
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            _check_injected_disk_full(final)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(str(tmp), str(final))
    except BaseException:
        try:
            os.unlink(str(tmp))
        except OSError:
            pass
        raise
    if sync_dir:
        fsync_dir(final.parent)
    return final


def atomic_write_json(path: PathLike, obj: Any) -> Path:
    """Write ``obj`` as pretty, stable JSON atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC / EDQUOT: the disk (or quota) is full; the write may succeed later."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
