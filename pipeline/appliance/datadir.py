"""The data directory: its layout (docs/ARCHITECTURE.md) and the lock that keeps it to one daemon."""
from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Dict, Optional

from vessel_seg.pipeline.appliance.config import resolve_path

log = logging.getLogger(__name__)


class DataDirBusy(RuntimeError):
    """Another daemon holds the data directory."""


@dataclass
class DataPaths:
    """The data directory layout."""

    root: Path
    capture: Path
    results: Path
    quarantine: Path
    state: Path
    archive: Path

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "DataPaths":
        root = resolve_path(config["data_dir"])
        archive = config["ingest"]["archive_dir"]
        return cls(root=root, capture=root / "capture", results=root / "results", quarantine=root / "quarantine",
                   state=root / "state", archive=resolve_path(archive) if archive else root / "archive")

    @property
    def journal(self) -> Path:
        return self.state / "journal.sqlite3"

    def create(self, archive: bool) -> None:
        for p in (self.capture, self.results, self.quarantine, self.state) + ((self.archive,) if archive else ()):
            p.mkdir(parents=True, exist_ok=True)


class DataDirLock(object):
    """One daemon per data directory: an exclusive flock on state/daemon.lock, released by the OS on exit.

    Two daemons on one capture folder would both process every file.
    """

    def __init__(self, paths: DataPaths) -> None:
        self.path = paths.state / "daemon.lock"
        self.root = paths.root
        self._fh: Optional[IO[str]] = None

    def acquire(self) -> None:
        """Take the lock and write our pid into it; DataDirBusy names the holder's pid."""
        fh = open(str(self.path), "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise DataDirBusy("another vessel-seg daemon (pid %s) is already using %s" % (holder, self.root))
        fh.seek(0)
        fh.truncate()
        fh.write("%d\n" % os.getpid())
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()
