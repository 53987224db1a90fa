"""Recovery after a restart: what the journal says was left to do, redone in an order that blames the culprit.

* before READY=1 (:meth:`Recovery.recover`): ``journal.recover()`` requeues interrupted items, except one the
  daemon already died on ``MAX_INTERRUPTED_ATTEMPTS`` times (failed and quarantined: a poison pill);
* after READY=1 (:meth:`Recovery.run_in_background`, the recovery thread): the items that were in flight when
  the daemon died are redone one at a time, before the watcher starts, so a repeated crash is blamed on one
  item; then the other requeued items; then finished items whose result folder is incomplete (one stat per
  result, tens of thousands on an SD card: that is why it runs after READY=1).
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from vessel_seg.pipeline.appliance.datadir import DataPaths
from vessel_seg.pipeline.appliance.intake import Intake
from vessel_seg.pipeline.engine.stages import WorkItem
from vessel_seg.pipeline.engine.telemetry import Metrics
from vessel_seg.pipeline.store.journal import Journal
from vessel_seg.pipeline.store.quarantine import quarantine_file
from vessel_seg.pipeline.store.results import ResultStore
from vessel_seg.vocabulary import DONE, FAILED, OPEN_STATES

log = logging.getLogger(__name__)

#: An item the daemon died while processing this many times (``attempts`` in the journal, reset by a
#: deliberate redo) is failed and quarantined at startup instead of being requeued: a poison pill that
#: hangs or crashes the process would otherwise restart it until systemd's StartLimitBurst gives up.
MAX_INTERRUPTED_ATTEMPTS = 3
INTERRUPTED_REASON = "interrupted %d times (the daemon died while processing it)"


def suspects(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The recovered rows the daemon was processing when it stopped (interrupted at least once)."""
    return [row for row in rows if int(row.get("attempts") or 0) > 0]


class Recovery(object):
    """The recovery policy (module docstring). ``stopped`` tells it the daemon is stopping."""

    def __init__(self, paths: DataPaths, journal: Journal, results: ResultStore, intake: Intake,
                 metrics: Metrics, submit: Callable[[WorkItem], bool], stopped: Callable[[], bool]) -> None:
        self.paths = paths
        self.journal = journal
        self.results = results
        self.intake = intake
        self.metrics = metrics
        self.submit = submit
        self.stopped = stopped

    # ------------------------------------------------------------------ before READY=1
    def recover(self) -> List[Dict[str, Any]]:
        """Requeued journal rows to feed; completes bookkeeping for rows whose result already exists.

        Only touches queued/processing rows; finished results are checked later, in the background.
        """
        todo = []
        for row in self.journal.recover():
            rid = row["id"]
            if self.results.is_complete(rid):
                self.journal.mark(rid, DONE)
                self.intake.after_done(Path(row["path"]), rid)
                continue
            if int(row.get("attempts") or 0) >= MAX_INTERRUPTED_ATTEMPTS:
                self._give_up_interrupted(row)
                continue
            todo.append(row)
        if todo:
            log.info("recovery: %d interrupted or queued item(s) to (re)process", len(todo))
        return todo

    def _give_up_interrupted(self, row: Dict[str, Any]) -> None:
        """A poison pill: the daemon died ``attempts`` times while processing this item (a hang or crash
        the watchdog restarted it from). Fail it and quarantine its input instead of requeueing it forever."""
        rid = row["id"]
        reason = INTERRUPTED_REASON % int(row.get("attempts") or 0)
        log.error("journal item %s (%s): %s; marked failed and quarantined, not retried", rid, row["source"],
                  reason)
        path = self.intake.find_input(row)
        try:
            quarantine_file(path if path is not None else Path(row.get("path") or row["source"]),
                            self.paths.quarantine, "interrupted", reason, sha256=row.get("sha256"),
                            result_id=rid, extra={"attempts": int(row.get("attempts") or 0)})
        except OSError as exc:
            log.error("cannot quarantine %s: %s", row["source"], exc)
        self._drop_partial_result(rid)
        self.journal.mark(rid, FAILED, reason)
        self.metrics.inc("failed")

    def _drop_partial_result(self, rid: str) -> None:
        """Remove the incomplete results/<id>/ an interrupted attempt left (a failed item has no result)."""
        folder = self.paths.results / rid
        if folder.is_dir() and not self.results.is_complete(rid):
            shutil.rmtree(str(folder), ignore_errors=True)
            log.info("removed the partial result folder of %s", rid)

    # ------------------------------------------------------------------ after READY=1
    def run_in_background(self, rows: List[Dict[str, Any]], start_watcher: Callable[[], None]) -> None:
        """The recovery thread: redo the suspects alone (then start the watcher), feed the other requeued
        rows, then redo finished items whose result folder is incomplete."""
        alone = suspects(rows)
        if alone:
            if not self._redo_suspects_alone(alone, start_watcher):
                return
        try:
            if not self._feed([row for row in rows if row not in alone]):
                return
            done = self._done_rows()
        except Exception:
            log.exception("recovery: cannot list the finished results; their completeness is not checked")
            return
        redone = 0
        for row in done:
            if self.stopped():
                return
            try:
                redo = self._redo_if_incomplete(row)
            except Exception:
                log.exception("recovery: cannot check result %s (%s); skipped until the next start",
                              row.get("id"), row.get("source"))
                continue
            if redo is None:
                continue
            redone += 1
            if not self._feed([redo]):
                return
        log.info("recovery: %d finished result(s) checked, %d incomplete one(s) redone", len(done), redone)

    def _redo_suspects_alone(self, rows: List[Dict[str, Any]], start_watcher: Callable[[], None]) -> bool:
        """Feed each suspect alone and wait for it to settle, then start the watcher (whatever happens);
        False if the daemon stopped meanwhile."""
        log.info("recovery: %d item(s) were in flight when the daemon stopped; redoing them one at a time",
                 len(rows))
        try:
            for row in rows:
                fed = self._feed_one(row)
                if fed == "stopped" or (fed == "submitted" and not self._wait_settled(row["id"])):
                    return False
        except Exception:
            log.exception("recovery: redoing the interrupted items one at a time failed; going on")
        finally:
            start_watcher()
        return True

    def _wait_settled(self, rid: str, poll_s: float = 0.05) -> bool:
        """Wait until a fed item is done or failed; False if the daemon stops first."""
        while not self.stopped():
            row = self.journal.get(rid)
            if row is None or row["state"] not in OPEN_STATES:
                return True
            time.sleep(poll_s)
        return False

    def _redo_if_incomplete(self, row: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """The row to feed again when a 'done' item's result folder is incomplete, else None."""
        rid = row["id"]
        if self.results.is_complete(rid):
            return None
        path = self.intake.find_input(row)
        if path is None:
            log.warning("result %s is incomplete and its input %s is gone; cannot redo", rid, row["source"])
            return None
        current = self.journal.get(rid) or {}
        if current.get("state") != DONE:          # dropped in again and requeued meanwhile
            return None
        log.warning("result %s is incomplete; redoing %s", rid, row["source"])
        self.journal.requeue(rid, path=str(path))
        return dict(row, path=str(path))

    def _done_rows(self) -> List[Dict[str, Any]]:
        out: List[Dict[str, Any]] = []
        offset, page = 0, 500
        while True:
            rows = self.journal.list(offset, page, state=DONE)
            out.extend(rows)
            if len(rows) < page:
                return out
            offset += page

    def _feed(self, rows: List[Dict[str, Any]]) -> bool:
        """Submit journal rows to the scheduler; False once it refuses (stopping).

        A row that cannot be handled (e.g. a JournalError marking it) is logged and skipped; it stays in
        the journal for the next start and does not end the recovery.
        """
        return all(self._feed_one(row) != "stopped" for row in rows)

    def _feed_one(self, row: Dict[str, Any]) -> str:
        """Submit one journal row: "submitted", "skipped" (input gone, or an error; logged) or "stopped"."""
        if self.stopped():
            return "stopped"
        try:
            path = self.intake.find_input(row)
            if path is None:
                log.error("journal item %s (%s): input file is gone; marked failed", row["id"], row["source"])
                self.journal.mark(row["id"], FAILED, "input_missing: the file disappeared before processing")
                self.metrics.inc("failed")
                return "skipped"
            item = WorkItem(id=row["id"], sha256=row["sha256"], source=row["source"], path=path,
                            size=int(row.get("size") or 0), frame=row.get("frame"),
                            frames=int(row.get("frames") or 1), file_sha256=row.get("file_sha256"),
                            identity=dict(row.get("identity") or {}))
        except Exception:
            log.exception("recovery: journal item %s (%s) skipped; it stays in the journal for the next start",
                          row.get("id"), row.get("source"))
            return "skipped"
        return "submitted" if self.submit(item) else "stopped"
