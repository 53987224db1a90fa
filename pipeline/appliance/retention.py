"""Retention: finished results are pruned by policy so the SD card never fills.

``retention.max_age_days``: a result older than this (by its journal creation time) is pruned.
``retention.min_free_percent``: while the data folder's file system has less free space than this, the
oldest results are pruned until it has enough again.

Never pruned: a result with an export still pending, or (export enabled) one not yet in the outbox. Pruning
deletes the result folder and the input it was made from (in capture/ or the archive: otherwise the next
startup scan would see the input again and redo it); the journal row stays, state 'done' with the reason
``pruned: ...``, so the history, the dedupe of the same content and the outbox rows are kept. Each pruning is
logged (result id and why; no patient data) and the last ones are listed on the status page.
"""
from __future__ import annotations

import collections
import logging
import os
import shutil
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional

from vessel_seg.pipeline.appliance.datadir import DataPaths
from vessel_seg.pipeline.store.journal import Journal
from vessel_seg.pipeline.store.outbox import Outbox
from vessel_seg.vocabulary import DONE, normalise_utc_iso, utc_iso

__all__ = ["Retention", "Pruned", "DiskUsage"]

log = logging.getLogger(__name__)

#: How often the daemon applies the policy (seconds); also after every finished result.
INTERVAL_S = 60.0
PRUNED_PREFIX = "pruned"


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


class Pruned(NamedTuple):
    """One pruned result: its id, why, when, and the bytes freed."""

    result_id: str
    why: str
    when: str
    freed_bytes: int


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(str(path)):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class Retention(object):
    """Applies the retention policy to a data folder (see the module docstring)."""

    def __init__(self, config: Dict[str, Any], paths: DataPaths, journal: Journal,
                 export_enabled: bool = False, metrics: Any = None,
                 disk_usage: Callable[[str], Any] = shutil.disk_usage,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.max_age_days = config["retention"]["max_age_days"]
        self.min_free_percent = float(config["retention"]["min_free_percent"])
        self.paths = paths
        self.journal = journal
        self.outbox = Outbox(journal)
        self.export_enabled = export_enabled
        self.metrics = metrics
        self.disk_usage = disk_usage
        self.now = now
        self.recent: Deque[Pruned] = collections.deque(maxlen=50)
        self.total_pruned = 0
        self.blocked_by_export = 0           # results the last pass wanted to prune but had to keep
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ policy
    def free_percent(self) -> float:
        usage = self.disk_usage(str(self.paths.results))
        return 100.0 * float(usage.free) / float(usage.total) if usage.total else 100.0

    def _keep_for_export(self, result_id: str) -> bool:
        if self.outbox.has_pending(result_id):
            return True
        return self.export_enabled and not self.outbox.rows(result_id)

    def _candidates(self) -> List[Dict[str, Any]]:
        """Done results still on the card, oldest first."""
        with self.journal._lock:
            rows = self.journal._conn().execute(
                "SELECT * FROM captures WHERE state = ? AND (reason IS NULL OR reason NOT LIKE ?) "
                "ORDER BY created ASC, rowid ASC", (DONE, PRUNED_PREFIX + "%")).fetchall()
        return [dict(r) for r in rows]

    def apply(self) -> List[Pruned]:
        """One pass of the policy; returns what it pruned."""
        with self._lock:
            return self._apply()

    def _apply(self) -> List[Pruned]:
        pruned: List[Pruned] = []
        blocked = 0
        cutoff = None
        if self.max_age_days is not None:
            cutoff = normalise_utc_iso((self.now() - timedelta(days=float(self.max_age_days))).isoformat())
        for row in self._candidates():
            rid = str(row["id"])
            why = None
            if cutoff is not None and str(row["created"]) < cutoff:
                why = "older than %g days" % self.max_age_days
            elif self.min_free_percent > 0 and self.free_percent() < self.min_free_percent:
                why = "free space below %g%%" % self.min_free_percent
            if why is None:
                break                      # oldest first: the rest are younger, and there is space enough
            if self._keep_for_export(rid):
                blocked += 1
                continue
            pruned.append(self._prune(row, why))
        self.blocked_by_export = blocked
        if blocked and self.min_free_percent > 0 and self.free_percent() < self.min_free_percent:
            log.warning("retention: free space %.1f%% is below %g%%, but %d result(s) wait for their export and "
                        "are kept", self.free_percent(), self.min_free_percent, blocked)
        return pruned

    def _prune(self, row: Dict[str, Any], why: str) -> Pruned:
        rid = str(row["id"])
        result_dir = self.paths.results / rid
        freed = _tree_size(result_dir) if result_dir.exists() else 0
        # the journal first: a crash after it leaves a folder the next pass no longer looks at, never a
        # journal row that claims a complete result whose files are half gone
        self.journal.mark(rid, DONE, reason="%s: %s" % (PRUNED_PREFIX, why))
        shutil.rmtree(str(result_dir), ignore_errors=True)
        for candidate in self._inputs(row):
            try:
                freed += candidate.stat().st_size
                candidate.unlink()
            except OSError:
                pass
        item = Pruned(rid, why, utc_iso(), freed)
        self.recent.appendleft(item)
        self.total_pruned += 1
        if self.metrics is not None:
            self.metrics.inc("retention_pruned")
        log.info("retention: pruned result %s (%s, %d bytes freed)", rid, why, freed)
        return item

    def _inputs(self, row: Dict[str, Any]) -> List[Path]:
        out = []
        if row.get("path"):
            p = Path(str(row["path"]))
            if self.paths.capture in p.parents or self.paths.archive in p.parents:
                out.append(p)
        out.append(self.paths.archive / ("%s__%s" % (row["id"], row["source"])))
        return [p for p in out if p.is_file()]

    # ------------------------------------------------------------------ thread
    def start(self, interval_s: float = INTERVAL_S) -> None:
        self._thread = threading.Thread(target=self._run, args=(interval_s,), name="vs-retention", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self, interval_s: float) -> None:
        while not self._stop.is_set():
            try:
                self.apply()
            except Exception:
                log.exception("retention pass failed; trying again later")
            self._wake.wait(interval_s)
            self._wake.clear()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> Dict[str, Any]:
        """For the page: the policy, the free space, what was pruned lately."""
        try:
            free = round(self.free_percent(), 1)
        except OSError:
            free = None
        return {"max_age_days": self.max_age_days, "min_free_percent": self.min_free_percent,
                "free_percent": free, "pruned_total": self.total_pruned,
                "kept_for_export": self.blocked_by_export,
                "recent": [p._asdict() for p in self.recent]}
