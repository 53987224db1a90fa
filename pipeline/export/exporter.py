"""The outbox worker: finished results -> DICOM objects -> the PACS, durably, with backoff.

* :meth:`Exporter.enqueue` (called when a result is done) plans the result's objects and writes their
  final UIDs into the outbox as 'pending' before anything is sent;
* :meth:`Exporter.backfill` (at start) enqueues done results that have no outbox row yet (finished while
  export was off, or killed between the journal's 'done' and the enqueue): nothing is lost;
* the worker thread sends due rows oldest first. A transient failure (PACS down) keeps the row pending and
  holds the whole outbox back for a backoff that doubles per consecutive failure (2 s .. 5 min), so a PACS
  that is down is tried once per backoff, not once per result; a permanent rejection is recorded with its
  reason and never retried on its own. A kill -9 at any moment leaves a row 'pending', and the resend after
  the restart is the same instance (same SOP Instance UID, same content), which a PACS stores once.

The objects are built from the result folder each time they are sent (nothing extra is kept on the SD card).
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from io import BytesIO
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from PIL import Image

from vessel_seg.pipeline.export.dicom_objects import (
    OBJECT_SEG,
    build_sc,
    build_seg,
    encode,
    objects_for,
    plan_uids,
)
from vessel_seg.pipeline.export.transport import PermanentRejection, TransientError, make_transport
from vessel_seg.pipeline.store.journal import Journal
from vessel_seg.pipeline.store.outbox import Outbox
from vessel_seg.pipeline.store.results import ResultStore, read_result_json

__all__ = ["Exporter", "ResultUnavailable", "backoff_s"]

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 2.0
BACKOFF_MAX_S = 300.0
#: With nothing due, the worker still looks at the outbox this often (a retry asked for by the CLI).
IDLE_POLL_S = 5.0


class ResultUnavailable(RuntimeError):
    """The result folder lacks what an object is built from (result.json, mask.png, overlay.png)."""


def backoff_s(failures: int, minimum: float = BACKOFF_MIN_S, maximum: float = BACKOFF_MAX_S) -> float:
    """Seconds to wait after ``failures`` consecutive transient failures (doubling, capped)."""
    return float(min(maximum, minimum * (2 ** max(0, failures - 1))))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Exporter(object):
    """Sends the outbox to the PACS (see the module docstring)."""

    def __init__(self, journal: Journal, store: ResultStore, export_config: Dict[str, Any],
                 transport: Any = None, metrics: Any = None, clock: Callable[[], float] = time.time,
                 backoff_min_s: float = BACKOFF_MIN_S, backoff_max_s: float = BACKOFF_MAX_S) -> None:
        self.outbox = Outbox(journal)
        self.store = store
        self.config = export_config
        self.objects = list(export_config["objects"])
        self.transport = transport if transport is not None else make_transport(export_config)
        self.metrics = metrics
        self.clock = clock
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.failures = 0                  # consecutive transient failures
        self.hold_until = 0.0              # no send before this (clock time) after a transient failure
        self.last_error = None             # type: Optional[str]
        self.last_sent = None              # type: Optional[str]
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None                # type: Optional[threading.Thread]
        self.on_sent = None                # type: Optional[Callable[[str], None]]  # result id; e.g. retention
        if metrics is not None:
            metrics.declare("export_sent", "export_rejected", "export_failures")
            metrics.gauge("export_outbox_depth", lambda: float(self.outbox.counts()["pending"]))

    # ------------------------------------------------------------------ queueing
    def enqueue(self, result_id: str) -> int:
        """Plan a finished result's objects and record them pending; returns the number of new rows."""
        meta = read_result_json(self.store.result_dir(result_id))
        if meta is None:
            log.warning("export: result %s has no readable result.json; nothing to export", result_id)
            return 0
        uids = plan_uids(result_id, meta)
        rows = [(obj, uids.study, uids.series(obj), uids.instance(obj)) for obj in objects_for(self.objects, meta)]
        added = self.outbox.enqueue(result_id, rows, now=_iso(self.clock()))
        if added:
            log.info("export: result %s queued (%s)", result_id, ", ".join(r[0] for r in rows))
            self._wake.set()
        return added

    def backfill(self) -> int:
        """Enqueue every done result that has no outbox row yet; returns how many results."""
        n = 0
        while True:
            ids = self.outbox.unexported_results()
            progressed = 0
            for rid in ids:
                if self.store.is_complete(rid) and self.enqueue(rid):
                    progressed += 1
            n += progressed
            if not ids or not progressed:
                break
        if n:
            log.info("export: %d earlier result(s) queued", n)
        return n

    # ------------------------------------------------------------------ sending
    def build(self, result_id: str, obj: str) -> bytes:
        """The Part 10 bytes of one object, from the result folder (the same bytes every time)."""
        meta = read_result_json(self.store.result_dir(result_id))
        if meta is None:
            raise ResultUnavailable("result %s has no readable result.json" % result_id)
        uids = plan_uids(result_id, meta)
        if obj == OBJECT_SEG:
            mask = self._image(result_id, "mask.png", "L") > 0
            return encode(build_seg(result_id, meta, mask, uids))
        return encode(build_sc(result_id, meta, self._image(result_id, "overlay.png", "RGB"), uids))

    def _image(self, result_id: str, name: str, mode: str) -> np.ndarray:
        path = self.store.file_path(result_id, name)
        if path is None:
            raise ResultUnavailable("result %s has no %s" % (result_id, name))
        with open(str(path), "rb") as fh:
            data = fh.read()
        with Image.open(BytesIO(data)) as im:
            return np.asarray(im.convert(mode))

    def run_once(self) -> int:
        """Send what is due now (unless held back by a backoff); returns the number of rows settled."""
        settled = 0
        while not self._stop.is_set():
            now = self.clock()
            if now < self.hold_until:
                break
            due = self.outbox.due(_iso(now), limit=8)
            if not due:
                break
            for row in due:
                if self._stop.is_set():
                    break
                if not self._send_row(row):
                    return settled
                settled += 1
        return settled

    def _send_row(self, row: Dict[str, Any]) -> bool:
        """Send one row; False after a transient failure (the outbox is held back)."""
        rid, obj = str(row["result_id"]), str(row["object"])
        try:
            data = self.build(rid, obj)
            self.transport.send("%s/%s" % (rid, obj), data)
        except TransientError as exc:
            # the whole outbox waits by the consecutive failures (PACS down), this row also by its own
            # attempts (a PACS that keeps failing one object while taking the others)
            self.failures += 1
            now = self.clock()
            delay = backoff_s(self.failures, self.backoff_min_s, self.backoff_max_s)
            self.hold_until = now + delay
            row_due = max(self.hold_until, now + backoff_s(int(row["attempts"]) + 1, self.backoff_min_s,
                                                           self.backoff_max_s))
            self.last_error = str(exc)
            attempts = self.outbox.mark_failed(rid, obj, str(exc), _iso(row_due))
            self._count("export_failures")
            log.warning("export of %s/%s failed (attempt %d), retrying in %.0f s: %s", rid, obj, attempts, delay,
                        exc)
            return False
        except (PermanentRejection, ResultUnavailable) as exc:
            self.outbox.mark_rejected(rid, obj, str(exc))
            self._count("export_rejected")
            self.failures = 0
            log.error("export of %s/%s rejected, not retried: %s", rid, obj, exc)
            return True
        except Exception as exc:      # a bug or a broken result must not stop the outbox
            self.outbox.mark_rejected(rid, obj, "cannot export: %s" % exc)
            self._count("export_rejected")
            log.exception("export of %s/%s failed unexpectedly; marked rejected", rid, obj)
            return True
        self.outbox.mark_sent(rid, obj)
        self._count("export_sent")
        self.failures = 0
        self.hold_until = 0.0
        self.last_error = None
        self.last_sent = _iso(self.clock())
        log.info("export of %s/%s sent (%s)", rid, obj, self.transport.describe())
        if self.on_sent is not None:
            try:
                self.on_sent(rid)
            except Exception:
                log.exception("on_sent callback failed")
        return True

    def _count(self, name: str) -> None:
        if self.metrics is not None:
            self.metrics.inc(name)

    def retry(self, result_id: Optional[str] = None, all_rejected: bool = False) -> int:
        """The retry action: rejected rows (of one result, or all) pending and due now; sends start at once."""
        n = self.outbox.retry(result_id, all_rejected=all_rejected)
        self.hold_until = 0.0
        self.failures = 0
        self._wake.set()
        return n

    # ------------------------------------------------------------------ thread
    def start(self) -> None:
        """Backfill, then send in a background thread until :meth:`stop`."""
        self.backfill()
        self._thread = threading.Thread(target=self._run, name="vs-export", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("export worker: unexpected error; continuing")
            self._wake.wait(self._wait_s())
            self._wake.clear()

    def _wait_s(self) -> float:
        now = self.clock()
        wait = IDLE_POLL_S
        if self.hold_until > now:
            wait = min(max(self.hold_until - now, 0.05), self.backoff_max_s)
        return wait

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ status
    def status(self) -> Dict[str, Any]:
        """For the page and /api/status: target, counts, outbox depth, the last error, rejections."""
        counts = self.outbox.counts()
        rejected: List[Dict[str, Any]] = [
            {k: r[k] for k in ("result_id", "object", "reason", "attempts", "updated")}
            for r in self.outbox.listing("rejected", limit=50)]
        return {"enabled": True, "protocol": self.config["protocol"], "target": self.transport.describe(),
                "pending": counts["pending"], "sent": counts["sent"], "rejected": counts["rejected"],
                "held_back_s": max(0.0, round(self.hold_until - self.clock(), 1)), "last_error": self.last_error,
                "last_sent": self.last_sent, "rejections": rejected}
