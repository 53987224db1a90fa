"""Intake: a stable file in capture/ becomes a journalled work item, once per content; outcomes are settled.

* ``on_ready`` (the watcher's callback): hash, journal, dedupe, submit (a blocking put: backpressure). Same
  content twice is a duplicate, recorded and not processed again; content that failed before is a deliberate
  retry and is processed again; a duplicate of an item still in flight is held and follows its original.
* the scheduler's outcomes (``on_start``, ``on_done``, ``on_rejected``): the journal row, quarantine with a
  reason, and ``ingest.after`` (keep the input in capture/, or move it to the archive).
"""
from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from vessel_seg.pipeline.appliance.datadir import DataPaths
from vessel_seg.pipeline.engine.scheduler import SchedulerCallbacks
from vessel_seg.pipeline.engine.stages import Job, WorkItem
from vessel_seg.pipeline.engine.telemetry import Metrics
from vessel_seg.pipeline.store.atomic import fsync_dir
from vessel_seg.pipeline.store.journal import Journal
from vessel_seg.pipeline.store.quarantine import quarantine_file
from vessel_seg.pipeline.store.results import ResultStore
from vessel_seg.vocabulary import DONE, FAILED, sha256_file

log = logging.getLogger(__name__)


class Intake(SchedulerCallbacks):
    """The capture folder's side of the daemon: what comes in, and where it ends up."""

    def __init__(self, config: Dict[str, Any], paths: DataPaths, journal: Journal, results: ResultStore,
                 metrics: Metrics, submit: Callable[[WorkItem], bool],
                 forget: Callable[[Path], None] = lambda path: None) -> None:
        """``submit``: the scheduler's (blocking) submit; ``forget``: makes the watcher offer a path again."""
        self.config = config
        self.paths = paths
        self.journal = journal
        self.results = results
        self.metrics = metrics
        self.submit = submit
        self.forget = forget
        self._lock = threading.Lock()
        self._held_duplicates: Dict[str, List[Path]] = {}

    # ------------------------------------------------------------------ files in
    def on_ready(self, path: Path) -> None:
        """A stable file in capture/: hash, journal, dedupe, submit (may block: backpressure).

        Never raises: an unexpected error (e.g. disk full while journaling) is logged, the file stays in
        capture/ and the watcher offers it again at its next periodic rescan.
        """
        try:
            self._ingest(Path(path))
        except Exception:
            log.exception("ingest of %s failed; the file stays in capture/ and is retried at the next rescan",
                          path)
            try:
                self.forget(Path(path))
            except Exception:
                log.exception("cannot make the watcher offer %s again", path)

    def on_rejected_path(self, path: Path, reason: str) -> None:
        """The watcher refused a path (e.g. a symlink leading outside capture/)."""
        self._quarantine_unhashed(Path(path), "rejected", str(reason))

    def _ingest(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            sha = sha256_file(path)
        except FileNotFoundError:
            log.info("%s disappeared before it could be read", path.name)
            return
        except OSError as exc:
            self._quarantine_unhashed(path, "unreadable", "cannot read the file: %s" % exc)
            return
        rid, is_new = self.journal.add(sha, path.name, str(path), size)
        item = WorkItem(id=rid, sha256=sha, source=path.name, path=path, size=size)
        if is_new:
            log.info("new capture %s (%d bytes) -> %s", path.name, size, rid)
            self.submit(item)
            return
        row = self.journal.get(rid) or {}
        state = row.get("state")
        same_file = row.get("path") == str(path)
        if state == DONE and self.results.is_complete(rid):
            if not same_file:
                self.metrics.inc("duplicates")
                log.info("duplicate: %s has the same content as %s (result %s); not processed again",
                         path.name, row.get("source"), rid)
            self.after_done(path, rid)
        elif state == DONE:
            log.warning("result %s is incomplete; redoing it from %s", rid, path.name)
            self.journal.requeue(rid, source=path.name, path=str(path))
            self.submit(item)
        elif state == FAILED:
            # the technician fixed the cause and dropped the file in again (failures page): a retry
            log.info("retry: %s has the content of failed item %s (%s); processing it again", path.name, rid,
                     row.get("reason"))
            self.journal.requeue(rid, source=path.name, path=str(path))
            self.submit(item)
        elif not same_file:
            self.metrics.inc("duplicates")
            log.info("duplicate: %s has the same content as %s, already %s", path.name, row.get("source"), state)
            self._hold_duplicate(rid, path)

    # ------------------------------------------------------------------ duplicates
    def _hold_duplicate(self, rid: str, path: Path) -> None:
        """A duplicate of an item still queued or processing is settled with its original: archived (per
        ``ingest.after``) once the original is done, quarantined if the original fails; never before."""
        with self._lock:
            self._held_duplicates.setdefault(rid, []).append(path)
        row = self.journal.get(rid) or {}
        if row.get("state") in (DONE, FAILED):   # it finished meanwhile
            self.settle_duplicates(rid, row)

    def settle_duplicates(self, rid: str, outcome: Dict[str, Any]) -> None:
        """Apply the original's outcome to the duplicates held for ``rid``.

        ``outcome`` is the journal row as the original's end left it (``state`` done or failed, and for a
        failure its ``source`` and ``reason``). It is passed in, not read back, because a retry of the same
        content may requeue the row in between; the duplicates still follow the run they waited for.
        """
        with self._lock:
            paths = self._held_duplicates.pop(rid, [])
        for path in paths:
            if outcome.get("state") == FAILED:
                self._quarantine_duplicate(path, rid, outcome)
            else:
                self.after_done(path, rid)

    def _quarantine_duplicate(self, path: Path, rid: str, row: Dict[str, Any]) -> None:
        if not path.exists():
            return
        try:
            quarantine_file(path, self.paths.quarantine, "duplicate_of_failed",
                            "same content as %s, which failed: %s" % (row.get("source"), row.get("reason")),
                            sha256=row.get("sha256"), result_id=rid)
        except OSError as exc:
            log.error("cannot quarantine %s: %s", path, exc)

    def _quarantine_unhashed(self, path: Path, reason: str, detail: str) -> None:
        try:
            quarantine_file(path, self.paths.quarantine, reason, detail)
        except OSError as exc:
            log.error("cannot quarantine %s: %s", path, exc)
        self.metrics.inc("failed")

    # ------------------------------------------------------------------ outcomes (scheduler callbacks)
    def on_start(self, item: WorkItem) -> None:
        self.journal.start(item.id)

    def on_done(self, job: Job) -> None:
        result_dir = str(job.result_path.parent) if job.result_path is not None else None
        self.journal.mark(job.item.id, DONE, result_dir=result_dir)
        log.info("done %s -> results/%s (%.0f ms)", job.item.source, job.item.id, job.timings_ms.get("total", 0.0))
        self.after_done(Path(job.item.path), job.item.id)
        self.settle_duplicates(job.item.id, {"state": DONE})

    def on_rejected(self, item: WorkItem, reason: str, detail: str) -> None:
        try:
            quarantine_file(item.path, self.paths.quarantine, reason, detail, sha256=item.sha256,
                            result_id=item.id)
        except OSError as exc:
            log.error("cannot quarantine %s: %s", item.path, exc)
        failure = "%s: %s" % (reason, detail)
        self.journal.mark(item.id, FAILED, failure)
        self.settle_duplicates(item.id, {"state": FAILED, "source": item.source, "reason": failure,
                                         "sha256": item.sha256})

    def after_done(self, path: Path, rid: str) -> None:
        """Apply ``ingest.after`` to a processed input: keep it, or move it to the archive."""
        if self.config["ingest"]["after"] != "archive" or not path.exists():
            return
        archive = self.paths.archive
        if archive in path.parents:
            return
        archive.mkdir(parents=True, exist_ok=True)
        target = archive / ("%s__%s" % (rid, path.name))
        n = 1
        while target.exists():
            target = archive / ("%s__%s.%d" % (rid, path.name, n))
            n += 1
        try:
            shutil.move(str(path), str(target))
            fsync_dir(archive)
        except OSError as exc:
            log.error("cannot archive %s: %s", path, exc)

    def find_input(self, row: Dict[str, Any]) -> Optional[Path]:
        """Where a journalled item's input is now: where it was seen, or in the archive; None when gone."""
        candidates = [Path(row["path"])] if row.get("path") else []
        candidates.append(self.paths.archive / ("%s__%s" % (row["id"], row["source"])))
        for c in candidates:
            if c.is_file():
                return c
        return None
