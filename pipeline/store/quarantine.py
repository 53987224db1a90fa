"""Quarantine: move a bad input out of the capture folder with a ``.reason.json`` next to it.

Layout: ``DATA_DIR/quarantine/<id-or-timestamp>__<name>`` and ``<same>.reason.json`` holding
reason, detail, time, sha256, source and the original path. Nothing is deleted: a technician can inspect
the file, fix the cause and drop it into capture/ again (under any name): the daemon treats content whose
journal row is 'failed' as a deliberate retry and processes it again, instead of quarantining it as
``duplicate_of_failed`` (that reason is only for a copy that arrived while its original was still in flight).
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

from vessel_seg.pipeline.store.atomic import atomic_write_json, fsync_dir
from vessel_seg.vocabulary import utc_iso, utc_stamp

log = logging.getLogger(__name__)


def _unique_target(directory: Path, stem: str) -> Path:
    target = directory / stem
    n = 1
    while target.exists() or (directory / (target.name + ".reason.json")).exists():
        target = directory / ("%s.%d" % (stem, n))
        n += 1
    return target


def quarantine_file(src: os.PathLike, quarantine_dir: os.PathLike, reason: str, detail: str,
                    sha256: Optional[str] = None, result_id: Optional[str] = None,
                    extra: Optional[Dict[str, Any]] = None) -> Path:
    """Move ``src`` into quarantine and write its reason file; returns the quarantined path.

    If ``src`` has already disappeared, the reason file is still written (``"missing": true``).
    """
    source = Path(src)
    qdir = Path(quarantine_dir)
    qdir.mkdir(parents=True, exist_ok=True)
    prefix = result_id or utc_stamp()
    target = _unique_target(qdir, "%s__%s" % (prefix, source.name))
    missing = False
    try:
        shutil.move(str(source), str(target))
        fsync_dir(qdir)
        fsync_dir(source.parent)
    except FileNotFoundError:
        missing = True
        log.warning("quarantine: %s vanished before it could be moved", source)
    info: Dict[str, Any] = {
        "reason": reason,
        "detail": detail,
        "time": utc_iso(),
        "sha256": sha256,
        "id": result_id,
        "source": source.name,
        "original_path": str(source),
        "file": target.name,
        "missing": missing,
    }
    if extra:
        info.update(extra)
    atomic_write_json(qdir / (target.name + ".reason.json"), info)
    log.warning("quarantined %s: %s (%s)", source.name, reason, detail)
    return target
