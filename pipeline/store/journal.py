"""Durable SQLite journal of captures: what arrived, what state it is in, what happened to it.

One row per distinct *content* (the id is the first 16 hex digits of the SHA-256 of the file bytes), so
the same image copied in twice under different names is recorded once. The journal is what makes the
daemon restartable: on startup :meth:`Journal.recover` puts interrupted ('processing') items back to
'queued' and returns everything that still has to be done; finished items are not redone.

The database lives at ``DATA_DIR/state/journal.sqlite3`` (ARCHITECTURE.md), in WAL mode so readers
(the web page, ``vessel-seg doctor``, tests) never block the writer, with ``synchronous=FULL`` so a state
change that returned is on disk even after a power cut. A :class:`Journal` is safe to share between
threads: it owns one connection guarded by a lock.

Rows are returned as plain dicts with the keys of :data:`COLUMNS`.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from vessel_seg.vocabulary import CAPTURE_STATES, is_result_id, is_sha256, normalise_utc_iso, result_id, utc_iso

__all__ = ["Journal", "JournalError", "UnknownCaptureError", "COLUMNS", "SCHEMA_VERSION"]

log = logging.getLogger(__name__)

#: Columns of a captures row, in table order.
COLUMNS = ("id", "sha256", "source", "path", "state", "reason", "attempts", "created", "updated", "size",
           "result_dir", "frame", "frames", "file_sha256")

#: Identity fields of the ``identities`` table (one row per capture that has any; see
#: ``pipeline.engine.identity``). Rows carry them as ``row["identity"]``, a dict of the non-empty ones.
IDENTITY_COLUMNS = ("patient_id", "patient_name", "birth_date", "sex", "laterality", "acquired", "study_uid",
                    "series_uid", "sop_uid", "accession", "manufacturer", "model")

#: Version of the schema this module writes; older databases are migrated on open.
SCHEMA_VERSION = 2

_SCHEMA_V1 = (
    """CREATE TABLE IF NOT EXISTS captures (
        id          TEXT PRIMARY KEY,
        sha256      TEXT NOT NULL UNIQUE,
        source      TEXT NOT NULL,
        path        TEXT,
        state       TEXT NOT NULL CHECK (state IN ('queued', 'processing', 'done', 'failed')),
        reason      TEXT,
        attempts    INTEGER NOT NULL DEFAULT 0,
        created     TEXT NOT NULL,
        updated     TEXT NOT NULL,
        size        INTEGER,
        result_dir  TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS captures_state ON captures(state)",
    "CREATE INDEX IF NOT EXISTS captures_created ON captures(created)",
    "CREATE INDEX IF NOT EXISTS captures_updated ON captures(updated)",
)

# Version 2: DICOM captures. A multi-frame file becomes one row per frame (``frame`` 0-based, ``frames`` the
# count, ``file_sha256`` the file's hash; ``sha256`` is then the frame's derived content key). Who and what
# a capture shows lives in ``identities``, searchable by patient and acquisition date.
_SCHEMA_V2 = (
    "ALTER TABLE captures ADD COLUMN frame INTEGER",
    "ALTER TABLE captures ADD COLUMN frames INTEGER",
    "ALTER TABLE captures ADD COLUMN file_sha256 TEXT",
    """CREATE TABLE IF NOT EXISTS identities (
        id            TEXT PRIMARY KEY REFERENCES captures(id),
        %s
    )""" % ",\n        ".join("%s TEXT" % c for c in IDENTITY_COLUMNS),
    "CREATE INDEX IF NOT EXISTS identities_patient ON identities(patient_id)",
    "CREATE INDEX IF NOT EXISTS identities_acquired ON identities(acquired)",
    "CREATE INDEX IF NOT EXISTS captures_file ON captures(file_sha256)",
)

#: version -> statements that bring a database from version-1 to version.
_MIGRATIONS = {1: _SCHEMA_V1, 2: _SCHEMA_V2}  # type: Dict[int, Tuple[str, ...]]


class JournalError(RuntimeError):
    """The journal cannot be opened or used (corrupt file, newer schema, closed, bad argument)."""


class UnknownCaptureError(JournalError, KeyError):
    """No captures row has the given id."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else "unknown capture"


def _now_iso() -> str:
    """The time stamped on rows (the journal's clock; tests replace it)."""
    return utc_iso()


def _normalise_ts(ts: str) -> str:
    """An ISO-8601 timestamp as the journal stores them (UTC, Z), so it compares correctly with stored ones."""
    try:
        return normalise_utc_iso(ts)
    except ValueError:
        raise JournalError("not an ISO-8601 timestamp: %r" % (ts,))


def _check_state(state: str) -> str:
    if state not in CAPTURE_STATES:
        raise JournalError("invalid state %r (expected one of: %s)" % (state, ", ".join(CAPTURE_STATES)))
    return state


def _check_id(capture_id: str) -> str:
    if not is_result_id(capture_id):
        raise JournalError("invalid capture id %r (expected 16 lowercase hex digits)" % (capture_id,))
    return capture_id


def _check_paging(offset: int, limit: int) -> Tuple[int, int]:
    for name, value in (("offset", offset), ("limit", limit)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise JournalError("%s must be a non-negative int, got %r" % (name, value))
    return offset, limit


class Journal(object):
    """The captures journal (see the module docstring).

    ``Journal(path)`` creates the parent directory and the database if needed, switches it to WAL mode,
    and migrates an older schema. Every method may be called from any thread.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError("cannot create the journal directory %s: %s" % (self.path.parent, exc))
        try:
            self._con = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None,
                                        check_same_thread=False)  # type: Optional[sqlite3.Connection]
        except sqlite3.Error as exc:
            raise JournalError("cannot open the journal %s: %s" % (self.path, exc))
        try:
            self._setup(timeout)
        except sqlite3.DatabaseError as exc:
            self._con.close()
            self._con = None
            raise JournalError("cannot use the journal %s (%s); the file was left untouched" % (self.path, exc))
        except JournalError:
            self._con.close()
            self._con = None
            raise
        log.debug("journal open: %s", self.path)

    # ------------------------------------------------------------------ setup
    def _setup(self, timeout: float) -> None:
        con = self._con
        assert con is not None
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA busy_timeout = %d" % int(timeout * 1000))
        mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError("the journal %s could not be switched to WAL mode (got %r)" % (self.path, mode))
        con.execute("PRAGMA synchronous = FULL")
        with self._transaction() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = cur.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            if current > SCHEMA_VERSION:
                raise JournalError("the journal %s has schema version %d, newer than this software (%d); "
                                   "upgrade vessel-seg" % (self.path, current, SCHEMA_VERSION))
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    cur.execute(statement)
                cur.execute("DELETE FROM schema_version")
                cur.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                log.info("journal %s: schema at version %d", self.path, version)

    def _transaction(self) -> "_Transaction":
        return _Transaction(self)

    def _conn(self) -> sqlite3.Connection:
        if self._con is None:
            raise JournalError("the journal %s is closed" % self.path)
        return self._con

    # ------------------------------------------------------------------ writing
    def add(self, sha256: str, source: str, path: Union[str, "os.PathLike[str]", None],
            size: Optional[int], frame: Optional[int] = None, frames: Optional[int] = None,
            file_sha256: Optional[str] = None, identity: Optional[Dict[str, str]] = None) -> Tuple[str, bool]:
        """Record a capture by content hash; returns ``(id, is_new)``.

        A new content gets a 'queued' row. Content already in the journal (whatever its file name) is
        not new and its row is left unchanged: ``(existing id, False)``. A frame of a multi-frame DICOM file
        passes its derived ``sha256`` plus ``frame``, ``frames`` and the file's ``file_sha256``; ``identity``
        (patient, eye, visit, instance) is stored with a new row.
        """
        if not isinstance(sha256, str) or not is_sha256(sha256.lower()):
            raise JournalError("sha256 must be 64 hex digits, got %r" % (sha256,))
        if not isinstance(source, str) or not source:
            raise JournalError("source must be a non-empty file name, got %r" % (source,))
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise JournalError("size must be a non-negative int or None, got %r" % (size,))
        sha = sha256.lower()
        cid = result_id(sha)
        path_text = os.fspath(path) if path is not None else None
        now = _now_iso()
        with self._transaction() as cur:
            existing = cur.execute("SELECT id, sha256 FROM captures WHERE id = ? OR sha256 = ?",
                                   (cid, sha)).fetchone()
            if existing is not None:
                if existing["sha256"] != sha:
                    raise JournalError("id collision: %s already belongs to sha256 %s, not %s"
                                       % (cid, existing["sha256"], sha))
                return str(existing["id"]), False
            cur.execute("INSERT INTO captures (id, sha256, source, path, state, reason, attempts, created, "
                        "updated, size, result_dir, frame, frames, file_sha256) "
                        "VALUES (?, ?, ?, ?, 'queued', NULL, 0, ?, ?, ?, NULL, ?, ?, ?)",
                        (cid, sha, source, path_text, now, now, size, frame, frames,
                         file_sha256.lower() if file_sha256 else None))
            self._put_identity(cur, cid, identity)
        return cid, True

    @staticmethod
    def _put_identity(cur: sqlite3.Cursor, cid: str, identity: Optional[Dict[str, str]]) -> None:
        values = {k: str(v) for k, v in (identity or {}).items() if k in IDENTITY_COLUMNS and v not in (None, "")}
        if not values:
            return
        cols = ", ".join(IDENTITY_COLUMNS)
        marks = ", ".join("?" for _ in IDENTITY_COLUMNS)
        cur.execute("INSERT OR REPLACE INTO identities (id, %s) VALUES (?, %s)" % (cols, marks),
                    [cid] + [values.get(c) for c in IDENTITY_COLUMNS])

    def set_identity(self, capture_id: str, identity: Optional[Dict[str, str]]) -> None:
        """Replace the identity of a capture (a redo may have found a sidecar that was not there before)."""
        _check_id(capture_id)
        with self._transaction() as cur:
            cur.execute("DELETE FROM identities WHERE id = ?", (capture_id,))
            self._put_identity(cur, capture_id, identity)

    def siblings(self, file_sha256: str) -> List[Dict[str, Any]]:
        """The frame rows of one multi-frame file (by the file's hash), in frame order."""
        with self._lock:
            rows = self._conn().execute(_SELECT + " WHERE c.file_sha256 = ? ORDER BY c.frame ASC",
                                        (str(file_sha256).lower(),)).fetchall()
        return [_row(r) for r in rows]

    def mark(self, capture_id: str, state: str, reason: Optional[str] = None,
             result_dir: Optional[str] = None) -> None:
        """Set the state of a capture; ``reason`` replaces the previous one (None clears it).

        ``result_dir`` (optional) records where the result folder is. Unknown ids raise
        :class:`UnknownCaptureError`.
        """
        _check_id(capture_id)
        _check_state(state)
        if reason is not None and not isinstance(reason, str):
            reason = str(reason)
        with self._transaction() as cur:
            if result_dir is None:
                cur.execute("UPDATE captures SET state = ?, reason = ?, updated = ? WHERE id = ?",
                            (state, reason, _now_iso(), capture_id))
            else:
                cur.execute("UPDATE captures SET state = ?, reason = ?, updated = ?, result_dir = ? WHERE id = ?",
                            (state, reason, _now_iso(), os.fspath(result_dir), capture_id))
            if cur.rowcount != 1:
                raise UnknownCaptureError("no capture with id %s in the journal" % capture_id)

    def start(self, capture_id: str) -> int:
        """Mark a capture 'processing' and count the attempt; returns the new attempt count."""
        _check_id(capture_id)
        with self._transaction() as cur:
            cur.execute("UPDATE captures SET state = 'processing', reason = NULL, attempts = attempts + 1, "
                        "updated = ? WHERE id = ?", (_now_iso(), capture_id))
            if cur.rowcount != 1:
                raise UnknownCaptureError("no capture with id %s in the journal" % capture_id)
            row = cur.execute("SELECT attempts FROM captures WHERE id = ?", (capture_id,)).fetchone()
        return int(row[0])

    def requeue(self, capture_id: str, source: Optional[str] = None,
                path: Union[str, "os.PathLike[str]", None] = None) -> None:
        """A deliberate redo (a failed capture dropped in again, a result found incomplete): back to
        'queued', reason cleared, attempt count reset to 0 (the interrupted-attempts count starts again).

        ``source`` / ``path`` (optional) record the file the redo reads. Unknown ids raise
        :class:`UnknownCaptureError`.
        """
        _check_id(capture_id)
        if source is not None and (not isinstance(source, str) or not source):
            raise JournalError("source must be a non-empty file name, got %r" % (source,))
        with self._transaction() as cur:
            cur.execute("UPDATE captures SET state = 'queued', reason = NULL, attempts = 0, updated = ?, "
                        "source = COALESCE(?, source), path = COALESCE(?, path) WHERE id = ?",
                        (_now_iso(), source, os.fspath(path) if path is not None else None, capture_id))
            if cur.rowcount != 1:
                raise UnknownCaptureError("no capture with id %s in the journal" % capture_id)

    def recover(self) -> List[Dict[str, Any]]:
        """Startup recovery: 'processing' rows go back to 'queued'; returns every queued row, oldest first."""
        with self._transaction() as cur:
            cur.execute("UPDATE captures SET state = 'queued', updated = ? WHERE state = 'processing'",
                        (_now_iso(),))
            requeued = cur.rowcount
            rows = cur.execute(_SELECT + " WHERE c.state = 'queued' ORDER BY c.created ASC, c.rowid ASC"
                               ).fetchall()
        if requeued:
            log.info("journal recovery: %d interrupted item(s) requeued", requeued)
        return [_row(r) for r in rows]

    # ------------------------------------------------------------------ reading
    def get(self, capture_id: str) -> Optional[Dict[str, Any]]:
        """The row of a capture, or None when the id is unknown (or not a valid id)."""
        if not is_result_id(capture_id):
            return None
        with self._lock:
            row = self._conn().execute(_SELECT + " WHERE c.id = ?", (capture_id,)).fetchone()
        return _row(row) if row is not None else None

    def list(self, offset: int = 0, limit: int = 50, state: Optional[str] = None,
             filters: Optional[Dict[str, str]] = None) -> List[Dict[str, Any]]:
        """Rows newest first (by creation), optionally only those in ``state`` and matching ``filters``.

        ``filters`` (all optional): ``patient_id`` (exact, case-insensitive), ``patient_name`` (a
        case-insensitive substring), ``date_from`` / ``date_to`` (``YYYY-MM-DD``, inclusive, on the
        acquisition date). A capture without an identity never matches a filter.
        """
        _check_paging(offset, limit)
        where, args = [], []  # type: List[str], List[Any]
        if state is not None:
            where.append("c.state = ?")
            args.append(_check_state(state))
        for clause, value in _filter_clauses(filters or {}):
            where.append(clause)
            args.append(value)
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY c.created DESC, c.rowid DESC LIMIT ? OFFSET ?"
        with self._lock:
            rows = self._conn().execute(sql, args + [limit, offset]).fetchall()
        return [_row(r) for r in rows]

    def counts(self) -> Dict[str, int]:
        """Number of rows per state; every state is present (0 when none)."""
        with self._lock:
            rows = self._conn().execute("SELECT state, COUNT(*) FROM captures GROUP BY state").fetchall()
        out = {s: 0 for s in CAPTURE_STATES}
        out.update({str(r[0]): int(r[1]) for r in rows})
        return out

    def counts_since(self, iso_ts: str) -> Dict[str, int]:
        """Number of rows per state among those last updated at or after ``iso_ts`` (ISO-8601, UTC if naive)."""
        since = _normalise_ts(iso_ts)
        with self._lock:
            rows = self._conn().execute("SELECT state, COUNT(*) FROM captures WHERE updated >= ? GROUP BY state",
                                        (since,)).fetchall()
        out = {s: 0 for s in CAPTURE_STATES}
        out.update({str(r[0]): int(r[1]) for r in rows})
        return out

    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        with self._lock:
            row = self._conn().execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """Close the connection (idempotent); later calls raise :class:`JournalError`."""
        with self._lock:
            con, self._con = self._con, None
        if con is not None:
            con.close()
            log.debug("journal closed: %s", self.path)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._con is None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_SELECT = ("SELECT c.*, %s FROM captures c LEFT JOIN identities i ON i.id = c.id"
           % ", ".join("i.%s AS ident_%s" % (k, k) for k in IDENTITY_COLUMNS))

#: Filter names accepted by :meth:`Journal.list`.
FILTERS = ("patient_id", "patient_name", "date_from", "date_to")


def _filter_clauses(filters: Dict[str, str]) -> List[Tuple[str, str]]:
    out = []
    for key, value in filters.items():
        if key not in FILTERS:
            raise JournalError("unknown filter %r (known: %s)" % (key, ", ".join(FILTERS)))
        if value is None or str(value).strip() == "":
            continue
        text = str(value).strip()
        if key == "patient_id":
            out.append(("i.patient_id = ? COLLATE NOCASE", text))
        elif key == "patient_name":
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            out.append(("i.patient_name LIKE ? ESCAPE '\\'", "%" + escaped + "%"))
        elif key == "date_from":
            out.append(("substr(i.acquired, 1, 10) >= ?", text[:10]))
        else:
            out.append(("substr(i.acquired, 1, 10) <= ?", text[:10]))
    return out


def _row(row: sqlite3.Row) -> Dict[str, Any]:
    """A captures row as a dict, its identity (non-empty fields only) under ``identity``."""
    data = dict(row)
    identity = {}
    for key in IDENTITY_COLUMNS:
        value = data.pop("ident_" + key, None)
        if value not in (None, ""):
            identity[key] = value
    data["identity"] = identity
    return data


class _Transaction(object):
    """``with journal._transaction() as cur``: lock + BEGIN IMMEDIATE, COMMIT or ROLLBACK."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.cur = None  # type: Optional[sqlite3.Cursor]

    def __enter__(self) -> sqlite3.Cursor:
        self.journal._lock.acquire()
        try:
            con = self.journal._conn()
            self.cur = con.cursor()
            self.cur.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.journal._lock.release()
            raise
        return self.cur

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            assert self.cur is not None
            if exc_type is None:
                try:
                    self.cur.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            else:
                self._rollback()
        finally:
            self.journal._lock.release()

    def _rollback(self) -> None:
        try:
            assert self.cur is not None
            self.cur.execute("ROLLBACK")
        except sqlite3.Error:
            log.debug("rollback failed (no transaction open)", exc_info=True)
