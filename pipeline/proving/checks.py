"""What ``vessel-seg stress`` checks in a data directory after a run: results, journal, temp files, quarantine.

Everything is read from the file system and the journal (read-only SQLite), never from the daemon's memory,
so the checks hold for what survives a crash.
"""
from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from vessel_seg.pipeline.engine.binfile import PROB_NBYTES
from vessel_seg.pipeline.store.atomic import is_temp_name
from vessel_seg.pipeline.store.results import deferred_names, read_result_json
from vessel_seg.vocabulary import (
    OPTIONAL_RESULT_FILES,
    PROBABILITY_BIN,
    RESULT_FILES,
    RESULT_JSON,
    result_id,
    sha256_bytes,
)

log = logging.getLogger(__name__)

#: The files every complete result has (the six of ARCHITECTURE.md).
RESULT_NAMES = tuple(sorted(RESULT_FILES.values())) + (RESULT_JSON,)


def content_id(data: bytes) -> str:
    """The result id the daemon gives this content."""
    return result_id(sha256_bytes(data))


def verify_result_dir(folder: Path, expect_sha256: Optional[str] = None) -> List[str]:
    """Problems with one result folder (empty list = complete and sound).

    Complete means: exactly the six files (no temp or stray files; those result.json lists as ``deferred`` may
    still be absent), probability.bin exactly 1048576 bytes,
    every PNG/JPEG fully decodable, result.json parseable with the right id, and its sha256 equal to the
    input's (``expect_sha256``) when given.
    """
    from PIL import Image

    problems: List[str] = []
    try:
        names = sorted(os.listdir(str(folder)))
    except OSError as exc:
        return ["cannot list %s: %s" % (folder.name, exc)]
    allowed = set(RESULT_NAMES) | set(OPTIONAL_RESULT_FILES.values())
    later = set(deferred_names(read_result_json(folder) or {}))     # made on first request, may be absent
    missing = [n for n in RESULT_NAMES if n not in names and n not in later]
    extra = [n for n in names if n not in allowed]
    if missing:
        problems.append("missing %s" % ", ".join(missing))
    if extra:
        problems.append("stray file(s) %s" % ", ".join(extra))
    binp = folder / PROBABILITY_BIN
    if binp.exists() and binp.stat().st_size != PROB_NBYTES:
        problems.append("probability.bin has %d bytes, not %d" % (binp.stat().st_size, PROB_NBYTES))
    for name in names:
        p = folder / name
        if not name.endswith((".png", ".jpg")) or name not in allowed:
            continue
        try:
            with Image.open(io.BytesIO(p.read_bytes())) as img:
                img.load()
        except Exception as exc:  # any decoder error means a truncated or damaged file
            problems.append("%s is not decodable: %s" % (name, exc))
    meta_path = folder / RESULT_JSON
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append("result.json does not parse: %s" % exc)
            meta = None
        if isinstance(meta, dict):
            if meta.get("id") != folder.name:
                problems.append("result.json id %r != folder %s" % (meta.get("id"), folder.name))
            if expect_sha256 is not None and meta.get("sha256") != expect_sha256:
                problems.append("result.json sha256 %s != the input's %s (read while being written?)"
                                % (str(meta.get("sha256"))[:16], expect_sha256[:16]))
        elif meta is not None:
            problems.append("result.json is not an object")
    return problems


@dataclass
class DataDirState(object):
    """A snapshot of a data directory: result folders, journal rows, leftovers."""

    result_dirs: List[str] = field(default_factory=list)
    complete: List[str] = field(default_factory=list)
    journal: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    temp_files: List[str] = field(default_factory=list)
    quarantined: Dict[str, Dict[str, Any]] = field(default_factory=dict)   # reason file name -> content

    def states(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for row in self.journal.values():
            out[row["state"]] = out.get(row["state"], 0) + 1
        return out

    def done_ids(self) -> List[str]:
        return sorted(k for k, r in self.journal.items() if r["state"] == "done")

    def by_source(self) -> Dict[str, Dict[str, Any]]:
        """Quarantine reason files keyed by the original file name."""
        return {str(info.get("source")): info for info in self.quarantined.values()}


def read_journal(data_dir: Path) -> Dict[str, Dict[str, Any]]:
    """Every captures row (read-only; empty when there is no journal yet)."""
    db = data_dir / "state" / "journal.sqlite3"
    if not db.exists():
        return {}
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
    con.row_factory = sqlite3.Row
    try:
        return {row["id"]: dict(row) for row in con.execute("SELECT * FROM captures")}
    finally:
        con.close()


def find_temp_files(root: Path, skip: Iterable[str] = ("capture",)) -> List[str]:
    """Leftover atomic-write temp files (``.name.xxxx.tmp``) under ``root``, outside the ``skip`` folders."""
    out: List[str] = []
    skipped = set(skip)
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(str(root)):
        rel = os.path.relpath(dirpath, str(root))
        if rel.split(os.sep)[0] in skipped:
            dirnames[:] = []
            continue
        out.extend(os.path.join(rel, f) for f in filenames if f.endswith(".tmp") or is_temp_name(f))
    return sorted(out)


def snapshot(data_dir: Path, verify: bool = False) -> DataDirState:
    """Read results/, the journal, quarantine/ and leftover temp files."""
    from vessel_seg.pipeline.store.results import is_complete

    state = DataDirState()
    results = data_dir / "results"
    if results.exists():
        state.result_dirs = sorted(p.name for p in results.iterdir() if p.is_dir())
        state.complete = [n for n in state.result_dirs if is_complete(results / n)]
    state.journal = read_journal(data_dir)
    state.temp_files = find_temp_files(data_dir)
    q = data_dir / "quarantine"
    if q.exists():
        for p in q.iterdir():
            if p.name.endswith(".reason.json"):
                try:
                    state.quarantined[p.name] = json.loads(p.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    state.quarantined[p.name] = {"reason": "unreadable reason file: %s" % exc}
    return state


def check_results(data_dir: Path, expected: Dict[str, str]) -> Tuple[Dict[str, List[str]], List[str], List[str]]:
    """Verify the result folders against ``expected`` (id -> sha256 of the input).

    Returns (problems by id, lost ids (no complete result), unexpected ids (folders nobody asked for)).
    """
    results = data_dir / "results"
    found = set(p.name for p in results.iterdir() if p.is_dir()) if results.exists() else set()
    problems: Dict[str, List[str]] = {}
    lost: List[str] = []
    for rid, sha in sorted(expected.items()):
        if rid not in found:
            lost.append(rid)
            continue
        got = verify_result_dir(results / rid, sha)
        if got:
            problems[rid] = got
    unexpected = sorted(found - set(expected))
    return problems, lost, unexpected


def tree_signature(root: Path, exclude: Iterable[Path] = ()) -> Dict[str, Tuple[int, int, int]]:
    """{relative path: (size, mtime_ns, mode)} of everything under ``root`` except the ``exclude`` subtrees
    (symlinks are listed, never followed)."""
    skip = set(os.path.abspath(str(p)) for p in exclude)
    out: Dict[str, Tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(str(root)):
        dirnames[:] = [d for d in dirnames if os.path.abspath(os.path.join(dirpath, d)) not in skip]
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            if os.path.abspath(full) in skip:
                continue
            try:
                st = os.lstat(full)
            except OSError:
                continue
            out[os.path.relpath(full, str(root))] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out
