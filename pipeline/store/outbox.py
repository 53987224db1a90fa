"""The PACS export outbox: the ``exports`` table of the journal (schema version 2).

One row per (result, DICOM object). A row is written, with its final Study / Series / SOP Instance UIDs,
*before* the first send, so a resend after a crash or an outage is the same instance (the PACS stores it
once). States:

* ``pending``: still to be sent; ``next_attempt`` says when (a send that failed for a transient reason,
  PACS down, timeout, is retried with backoff);
* ``sent``: the PACS accepted it (a C-STORE success or warning status, a STOW-RS answer without a failure);
* ``rejected``: the PACS refused it for good (``reason`` says why); shown on the page, never retried on its
  own, only by the retry action (page, ``vessel-seg export-retry``).

The outbox shares the journal's connection and lock, so it is as durable (WAL, synchronous=FULL) and as
thread-safe as the journal itself; another process (the CLI) may change it while the daemon runs.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from vessel_seg.pipeline.store.journal import Journal, JournalError, _normalise_ts, _now_iso
from vessel_seg.vocabulary import DONE, is_result_id

__all__ = ["Outbox", "PENDING", "SENT", "REJECTED", "EXPORT_STATES", "EXPORT_COLUMNS"]

log = logging.getLogger(__name__)

PENDING, SENT, REJECTED = "pending", "sent", "rejected"
EXPORT_STATES = (PENDING, SENT, REJECTED)
EXPORT_COLUMNS = ("result_id", "object", "study_uid", "series_uid", "sop_instance_uid", "state", "attempts",
                  "next_attempt", "reason", "created", "updated")

#: (object, study UID, series UID, SOP instance UID)
PlannedObject = Tuple[str, str, str, str]


def _check_id(result_id: str) -> str:
    if not is_result_id(result_id):
        raise JournalError("invalid result id %r (expected 16 lowercase hex digits)" % (result_id,))
    return result_id


class Outbox(object):
    """Access to the ``exports`` table of a :class:`Journal` (see the module docstring)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    # ------------------------------------------------------------------ writing
    def enqueue(self, result_id: str, objects: Iterable[PlannedObject], now: Optional[str] = None) -> int:
        """Record the objects of a result as pending (due now); rows already there are left as they are.

        Returns the number of new rows.
        """
        _check_id(result_id)
        now = _normalise_ts(now) if now else _now_iso()
        added = 0
        with self.journal._transaction() as cur:
            for obj, study, series, sop in objects:
                cur.execute("INSERT OR IGNORE INTO exports (result_id, object, study_uid, series_uid, "
                            "sop_instance_uid, state, attempts, next_attempt, reason, created, updated) "
                            "VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, NULL, ?, ?)",
                            (result_id, obj, study, series, sop, now, now, now))
                added += cur.rowcount
        return added

    def mark_sent(self, result_id: str, obj: str) -> None:
        """The PACS accepted the object."""
        self._set(result_id, obj, "state = 'sent', reason = NULL, attempts = attempts + 1", ())

    def mark_failed(self, result_id: str, obj: str, reason: str, next_attempt: str) -> int:
        """A transient failure: stays pending, due again at ``next_attempt``; returns the attempt count."""
        self._set(result_id, obj, "reason = ?, attempts = attempts + 1, next_attempt = ?",
                  (str(reason), _normalise_ts(next_attempt)))
        row = self.get(result_id, obj)
        return int(row["attempts"]) if row else 0

    def mark_rejected(self, result_id: str, obj: str, reason: str) -> None:
        """The PACS refused the object for good: not retried until someone asks (:meth:`retry`)."""
        self._set(result_id, obj, "state = 'rejected', reason = ?, attempts = attempts + 1", (str(reason),))

    def _set(self, result_id: str, obj: str, assignments: str, args: Sequence[Any]) -> None:
        with self.journal._transaction() as cur:
            cur.execute("UPDATE exports SET %s, updated = ? WHERE result_id = ? AND object = ?" % assignments,
                        tuple(args) + (_now_iso(), result_id, obj))
            if cur.rowcount != 1:
                raise JournalError("no export of %s for result %s in the outbox" % (obj, result_id))

    def retry(self, result_id: Optional[str] = None, all_rejected: bool = False) -> int:
        """Make rejected rows (of one result, or all) pending and due now; returns how many.

        For one result, its pending rows are made due now as well (a manual "send it now").
        """
        if result_id is None and not all_rejected:
            raise JournalError("name a result id or ask for all rejected exports")
        now = _now_iso()
        with self.journal._transaction() as cur:
            if result_id is not None:
                _check_id(result_id)
                cur.execute("UPDATE exports SET state = 'pending', attempts = 0, next_attempt = ?, updated = ? "
                            "WHERE result_id = ? AND state IN ('pending', 'rejected')", (now, now, result_id))
            else:
                cur.execute("UPDATE exports SET state = 'pending', attempts = 0, next_attempt = ?, updated = ? "
                            "WHERE state = 'rejected'", (now, now))
            return int(cur.rowcount)

    # ------------------------------------------------------------------ reading
    def _query(self, sql: str, args: Sequence[Any] = ()) -> List[Dict[str, Any]]:
        with self.journal._lock:
            rows = self.journal._conn().execute(sql, tuple(args)).fetchall()
        return [dict(r) for r in rows]

    def get(self, result_id: str, obj: str) -> Optional[Dict[str, Any]]:
        rows = self._query("SELECT * FROM exports WHERE result_id = ? AND object = ?", (result_id, obj))
        return rows[0] if rows else None

    def rows(self, result_id: str) -> List[Dict[str, Any]]:
        """Every export row of a result (oldest object first)."""
        return self._query("SELECT * FROM exports WHERE result_id = ? ORDER BY rowid", (result_id,))

    def due(self, now: Optional[str] = None, limit: int = 16) -> List[Dict[str, Any]]:
        """Pending rows due at ``now``, the longest waiting first (a result's objects in planned order)."""
        now = _normalise_ts(now) if now else _now_iso()
        return self._query("SELECT * FROM exports WHERE state = 'pending' AND next_attempt <= ? "
                           "ORDER BY next_attempt, created, rowid LIMIT ?", (now, int(limit)))

    def next_due(self) -> Optional[str]:
        """The earliest ``next_attempt`` of a pending row, or None when nothing is pending."""
        rows = self._query("SELECT MIN(next_attempt) AS t FROM exports WHERE state = 'pending'")
        return rows[0]["t"] if rows and rows[0]["t"] else None

    def counts(self) -> Dict[str, int]:
        """Rows per state; every state is present."""
        out = {s: 0 for s in EXPORT_STATES}
        for row in self._query("SELECT state, COUNT(*) AS n FROM exports GROUP BY state"):
            out[str(row["state"])] = int(row["n"])
        return out

    def listing(self, state: Optional[str] = None, limit: int = 100) -> List[Dict[str, Any]]:
        """Rows newest first, optionally only those in ``state``."""
        if state is None:
            return self._query("SELECT * FROM exports ORDER BY updated DESC, rowid DESC LIMIT ?", (int(limit),))
        return self._query("SELECT * FROM exports WHERE state = ? ORDER BY updated DESC, rowid DESC LIMIT ?",
                           (state, int(limit)))

    def has_pending(self, result_id: str) -> bool:
        """Whether some object of the result still has to be sent."""
        return bool(self._query("SELECT 1 FROM exports WHERE result_id = ? AND state = 'pending' LIMIT 1",
                                (result_id,)))

    def unexported_results(self, limit: int = 1000) -> List[str]:
        """Done captures with no export row yet, oldest first (finished while export was off, or just before
        a crash between the journal's 'done' and the enqueue)."""
        rows = self._query("SELECT c.id AS id FROM captures c WHERE c.state = ? AND NOT EXISTS "
                           "(SELECT 1 FROM exports e WHERE e.result_id = c.id) "
                           "AND (c.reason IS NULL OR c.reason NOT LIKE 'pruned%') "
                           "ORDER BY c.created, c.rowid LIMIT ?", (DONE, int(limit)))
        return [str(r["id"]) for r in rows]
