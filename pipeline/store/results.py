"""Result store: DATA_DIR/results/<id>/ folders, written atomically with result.json last.

``ResultStore`` is also the read side handed to the web page: ids are validated (16 lowercase hex), file
names come from a fixed allow-list, so no request can reach any other path.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from vessel_seg.pipeline.store.atomic import atomic_write_bytes, atomic_write_json, fsync_dir, is_temp_name
from vessel_seg.vocabulary import (
    CAPTURE_STATES,
    DONE,
    OPTIONAL_RESULT_FILES,
    PROBABILITY_BIN,
    RESULT_FILES,
    RESULT_JSON,
    SERVABLE_RESULT_FILES,
    is_result_id,
)

log = logging.getLogger(__name__)


def begin_result(result_dir: Path) -> None:
    """Prepare a result folder: create it; drop a stale result.json so it never looks complete while rewritten,
    and temp files of writes interrupted by a crash (a result is only ever redone after one)."""
    result_dir.mkdir(parents=True, exist_ok=True)
    stale = result_dir / RESULT_JSON
    if stale.exists():
        stale.unlink()
    for name in os.listdir(str(result_dir)):
        if is_temp_name(name):
            log.info("removing %s/%s left by an interrupted write", result_dir.name, name)
            try:
                os.unlink(str(result_dir / name))
            except FileNotFoundError:
                pass


def write_result_file(result_dir: Path, name: str, data: bytes) -> Path:
    """Write one allow-listed result file atomically."""
    if name not in RESULT_FILES.values() and name not in OPTIONAL_RESULT_FILES.values():
        raise ValueError("unknown result file %r" % (name,))
    return atomic_write_bytes(result_dir / name, data, sync_dir=False)


def finish_result(result_dir: Path, meta: Dict[str, Any]) -> Path:
    """Write result.json last (atomically): from now on the result is complete."""
    meta = dict(meta)
    meta["files"] = dict(RESULT_FILES)
    meta["files"].update({k: n for k, n in OPTIONAL_RESULT_FILES.items() if (result_dir / n).is_file()})
    missing = [n for n in RESULT_FILES.values() if not (result_dir / n).is_file()]
    if missing:
        raise RuntimeError("cannot finish %s: missing %s" % (result_dir, ", ".join(missing)))
    fsync_dir(result_dir)          # the renames of every file are durable before result.json exists
    return atomic_write_json(result_dir / RESULT_JSON, meta)


def write_result(result_dir: Path, files: Dict[str, bytes], meta: Dict[str, Any]) -> Path:
    """Write every file atomically (probability.bin first), then result.json."""
    unknown = set(files) - set(RESULT_FILES.values()) - set(OPTIONAL_RESULT_FILES.values())
    if unknown:
        raise ValueError("unknown result file(s): %s" % ", ".join(sorted(unknown)))
    begin_result(result_dir)
    for name in sorted(files, key=lambda n: (n != PROBABILITY_BIN, n)):
        write_result_file(result_dir, name, files[name])
    return finish_result(result_dir, meta)


def read_result_json(result_dir: Path) -> Optional[Dict[str, Any]]:
    """result.json of a folder, or None when missing or unreadable."""
    try:
        with open(str(result_dir / RESULT_JSON), "r", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(result_dir: Path) -> bool:
    """True when result.json exists, parses, and every file it lists is present (probability.bin full size)."""
    from vessel_seg.pipeline.engine.binfile import PROB_NBYTES

    meta = read_result_json(result_dir)
    if meta is None:
        return False
    names = meta.get("files") or {}
    if not isinstance(names, dict) or not set(RESULT_FILES.values()) <= set(names.values()) <= set(
            RESULT_FILES.values()) | set(OPTIONAL_RESULT_FILES.values()):
        return False
    try:
        for name in names.values():
            st = os.stat(str(result_dir / name))
            if name == PROBABILITY_BIN and st.st_size != PROB_NBYTES:
                return False
    except OSError:
        return False
    return True


def matches(identity: Dict[str, Any], filters: Dict[str, str]) -> bool:
    """Whether an identity passes the list filters (the journal's rules, for a store without a journal)."""
    pid = filters.get("patient_id")
    if pid and str(identity.get("patient_id") or "").lower() != pid.lower():
        return False
    name = filters.get("patient_name")
    if name and name.lower() not in str(identity.get("patient_name") or "").lower():
        return False
    day = str(identity.get("acquired") or "")[:10]
    if filters.get("date_from") and (not day or day < filters["date_from"][:10]):
        return False
    if filters.get("date_to") and (not day or day > filters["date_to"][:10]):
        return False
    return True


def _row_dict(row: Any) -> Dict[str, Any]:
    if row is None:
        return {}
    if isinstance(row, dict):
        return dict(row)
    try:
        return {k: row[k] for k in row.keys()}
    except AttributeError:
        return dict(row)


class ResultStore(object):
    """Read (and write) access to DATA_DIR/results and DATA_DIR/quarantine.

    With a journal, listings include queued, processing and failed items as well as finished ones.
    """

    def __init__(self, data_dir: os.PathLike, journal: Any = None) -> None:
        self.data_dir = Path(data_dir)
        self.results_dir = self.data_dir / "results"
        self.quarantine_dir = self.data_dir / "quarantine"
        self.journal = journal

    # -- paths
    def result_dir(self, result_id: str) -> Path:
        """Folder of a result (the id must be valid)."""
        if not is_result_id(result_id):
            raise ValueError("invalid result id %r" % (result_id,))
        return self.results_dir / result_id

    def is_complete(self, result_id: str) -> bool:
        """Whether results/<id>/ holds a complete result."""
        return is_result_id(result_id) and is_complete(self.results_dir / result_id)

    def file_path(self, result_id: str, name: str) -> Optional[Path]:
        """Path of a known result file (allow-listed name, validated id) if it exists, else None."""
        if not is_result_id(result_id) or name not in SERVABLE_RESULT_FILES:
            return None
        path = self.results_dir / result_id / name
        return path if path.is_file() else None

    # -- reading
    def get(self, result_id: str) -> Optional[Dict[str, Any]]:
        """result.json plus ``state`` for a finished result; the journal row for others; None if unknown."""
        if not is_result_id(result_id):
            return None
        row = _row_dict(self.journal.get(result_id)) if self.journal is not None else {}
        if row.get("state") not in (None, DONE):
            return self._summary(row)
        meta = read_result_json(self.results_dir / result_id)
        if meta is not None and is_complete(self.results_dir / result_id):
            meta["state"] = DONE
            return meta
        return self._summary(row) if row else None

    @staticmethod
    def _summary(row: Dict[str, Any]) -> Dict[str, Any]:
        out = {k: row.get(k) for k in ("id", "source", "state", "created", "updated", "reason", "attempts",
                                       "sha256")}
        out["identity"] = dict(row.get("identity") or {})
        if row.get("frame") is not None:
            out["frame"] = {"index": int(row["frame"]), "count": int(row.get("frames") or 1),
                            "file_sha256": row.get("file_sha256")}
        return out

    def list(self, offset: int = 0, limit: int = 50, filters: Optional[Dict[str, str]] = None
             ) -> List[Dict[str, Any]]:
        """Newest first; each item has id, source, state, created, identity (and summary fields when done).

        ``filters``: see ``Journal.list`` (patient_id, patient_name, date_from, date_to).
        """
        offset = max(0, int(offset))
        limit = max(0, min(int(limit), 1000))
        filters = {k: v for k, v in (filters or {}).items() if v}
        if self.journal is not None:
            listed = self.journal.list(offset, limit, filters=filters) if filters else self.journal.list(offset, limit)
            rows = [_row_dict(r) for r in listed]
            items = []
            for row in rows:
                item = self._summary(row)
                if item.get("state") == DONE:
                    meta = read_result_json(self.results_dir / str(item["id"])) or {}
                    item.update(self._meta_summary(meta))
                items.append(item)
            return items
        out = []
        for d in self._result_dirs():
            meta = read_result_json(d) or {}
            identity = meta.get("identity") if isinstance(meta.get("identity"), dict) else {}
            if filters and not matches(identity, filters):
                continue
            item = {"id": d.name, "source": meta.get("source"), "state": DONE, "created": meta.get("created"),
                    "identity": identity}
            item.update(self._meta_summary(meta))
            out.append(item)
        return out[offset:offset + limit]

    @staticmethod
    def _meta_summary(meta: Dict[str, Any]) -> Dict[str, Any]:
        keys = ("vessel_density_fov", "fov_fraction", "original_size", "threshold", "runtime", "frame")
        out = {k: meta[k] for k in keys if k in meta}
        if "timings_ms" in meta and isinstance(meta["timings_ms"], dict):
            out["total_ms"] = meta["timings_ms"].get("total")
        return out

    def _result_dirs(self) -> List[Path]:
        """Complete result folders, newest result.json first."""
        found = []
        try:
            entries = list(os.scandir(str(self.results_dir)))
        except OSError:
            return []
        for entry in entries:
            if not is_result_id(entry.name):
                continue
            try:
                mtime = os.stat(os.path.join(entry.path, RESULT_JSON)).st_mtime
            except OSError:
                continue
            found.append((mtime, entry.name))
        found.sort(reverse=True)
        return [self.results_dir / name for _, name in found]

    def counts(self) -> Dict[str, int]:
        """Counts per state (queued, processing, done, failed) plus ``quarantined`` files."""
        counts = {s: 0 for s in CAPTURE_STATES}
        if self.journal is not None:
            for state, n in dict(self.journal.counts()).items():
                counts[str(state)] = int(n)
        else:
            counts[DONE] = len(self._result_dirs())
        counts["quarantined"] = len(self._reason_files())
        return counts

    def _reason_files(self) -> List[Path]:
        try:
            return [p for p in self.quarantine_dir.iterdir() if p.name.endswith(".reason.json")]
        except OSError:
            return []

    def quarantined(self, limit: int = 200) -> List[Dict[str, Any]]:
        """Quarantined inputs, newest first: the reason.json content plus ``file`` (the moved input's name)."""
        items = []
        for path in self._reason_files():
            try:
                with open(str(path), "r", encoding="utf-8") as fh:
                    data = json.load(fh)
                mtime = path.stat().st_mtime
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict):
                continue
            data.setdefault("file", path.name[:-len(".reason.json")])
            items.append((mtime, data))
        items.sort(key=lambda t: t[0], reverse=True)
        return [d for _, d in items[:limit]]
