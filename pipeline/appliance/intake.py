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
from typing import Any, Callable, Dict, List, Optional, Tuple

from vessel_seg.pipeline.appliance.datadir import DataPaths
from vessel_seg.pipeline.engine import identity as identities
from vessel_seg.pipeline.engine.dicom_decode import DicomError, check_header, has_dicom_preamble, read_dataset
from vessel_seg.pipeline.engine.scheduler import SchedulerCallbacks
from vessel_seg.pipeline.engine.stages import Job, WorkItem
from vessel_seg.pipeline.engine.telemetry import Metrics
from vessel_seg.pipeline.store.atomic import fsync_dir
from vessel_seg.pipeline.store.journal import Journal
from vessel_seg.pipeline.store.quarantine import quarantine_file
from vessel_seg.pipeline.store.results import ResultStore
from vessel_seg.vocabulary import DONE, FAILED, OPEN_STATES, result_id, sha256_bytes, sha256_file


def frame_key(file_sha256: str, frame: int) -> str:
    """The content key (and so the id) of one frame of a multi-frame file: the file's hash plus the index."""
    return sha256_bytes(("%s:frame:%d" % (file_sha256.lower(), int(frame))).encode("ascii"))


def _label(name: str, identity: Dict[str, str]) -> str:
    """The file name for an INFO line, unless the capture is identified (its name may carry patient data)."""
    return "an identified capture" if identity else name

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
        pattern = config["ingest"].get("identity_pattern")
        self._pattern = identities.compile_pattern(pattern) if pattern else None

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
        frames, identity = self._describe(path)
        if frames <= 1:
            self._ingest_item(WorkItem(id=result_id(sha), sha256=sha, source=path.name, path=path, size=size,
                                       identity=identity))
            return
        log.info("new multi-frame capture %s: %d frames, one result each", _label(path.name, identity), frames)
        for frame in range(frames):
            key = frame_key(sha, frame)
            self._ingest_item(WorkItem(id=result_id(key), sha256=key, source=path.name, path=path, size=size,
                                       frame=frame, frames=frames, file_sha256=sha, identity=identity))

    def _describe(self, path: Path) -> Tuple[int, Dict[str, str]]:
        """(frames, identity) of a capture: from its DICOM header, else from its name and sidecar.

        A DICOM header that cannot be read makes one item without identity: decoding then fails with the
        precise reason and the file is quarantined through the one path for bad inputs.
        """
        ing = self.config["ingest"]
        if has_dicom_preamble(path):
            try:
                ds = read_dataset(path, ing["max_bytes"], stop_before_pixels=True)
                _rows, _cols, frames = check_header(ds, ing["max_pixels"])
                return frames, identities.from_dataset(ds)
            except DicomError as exc:
                log.debug("%s: DICOM header unusable (%s); decoding will say why", path.name, exc.reason)
                return 1, {}
        try:
            return 1, identities.for_plain_image(path, self._pattern, bool(ing.get("identity_sidecar")))
        except Exception:
            log.exception("cannot read the identity of %s; processing it anonymously", path.name)
            return 1, {}

    def _ingest_item(self, item: WorkItem) -> None:
        path = item.path
        rid, is_new = self.journal.add(item.sha256, path.name, str(path), item.size, frame=item.frame,
                                       frames=item.frames if item.frame is not None else None,
                                       file_sha256=item.file_sha256, identity=item.identity)
        item.id = rid
        if is_new:
            log.info("new capture %s (%d bytes) -> %s", _label(path.name, item.identity), item.size, rid)
            self.submit(item)
            return
        row = self.journal.get(rid) or {}
        state = row.get("state")
        same_file = row.get("path") == str(path)
        if state == DONE and self.results.is_complete(rid):
            if not same_file:
                self.metrics.inc("duplicates")
                log.info("duplicate: %s has the same content as %s (result %s); not processed again",
                         _label(path.name, item.identity), _label(str(row.get("source")), item.identity), rid)
            self.after_done(path, rid)
        elif state == DONE:
            log.warning("result %s is incomplete; redoing it", rid)
            self.journal.requeue(rid, source=path.name, path=str(path))
            self.submit(item)
        elif state == FAILED:
            # the technician fixed the cause and dropped the file in again (failures page): a retry
            log.info("retry: %s has the content of failed item %s; processing it again",
                     _label(path.name, item.identity), rid)
            self.journal.requeue(rid, source=path.name, path=str(path))
            if item.identity:
                self.journal.set_identity(rid, item.identity)
            self.submit(item)
        elif not same_file:
            self.metrics.inc("duplicates")
            log.info("duplicate: %s has the same content as %s, already %s", _label(path.name, item.identity),
                     _label(str(row.get("source")), item.identity), state)
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
        log.info("done %s -> results/%s (%.0f ms)", _label(job.item.source, job.item.identity), job.item.id,
                 job.timings_ms.get("total", 0.0))
        self.after_done(Path(job.item.path), job.item.id)
        self.settle_duplicates(job.item.id, {"state": DONE})

    def on_rejected(self, item: WorkItem, reason: str, detail: str) -> None:
        failure = "%s: %s" % (reason, detail)
        if item.frame is not None:
            # one frame of a file other frames still need: the file is settled once every frame is
            self.journal.mark(item.id, FAILED, failure)
            self._settle_file(Path(item.path), self.journal.get(item.id) or {})
        else:
            try:
                quarantine_file(item.path, self.paths.quarantine, reason, detail, sha256=item.sha256,
                                result_id=item.id)
            except OSError as exc:
                log.error("cannot quarantine %s: %s", item.path, exc)
            self.journal.mark(item.id, FAILED, failure)
        self.settle_duplicates(item.id, {"state": FAILED, "source": item.source, "reason": failure,
                                         "sha256": item.sha256})

    def after_done(self, path: Path, rid: str) -> None:
        """Apply ``ingest.after`` to a processed input: keep it, or move it to the archive.

        A frame of a multi-frame file settles the file only once every frame is done or failed.
        """
        row = self.journal.get(rid) or {}
        if row.get("frame") is not None:
            self._settle_file(path, row)
            return
        self._archive(path, rid)

    def _settle_file(self, path: Path, row: Dict[str, Any]) -> None:
        """The file of a frame row once no frame is open: archived (or kept) when every frame is done,
        quarantined with the frames' reasons when any failed."""
        if not row.get("file_sha256") or not path.exists():
            return
        frames = self.journal.siblings(row["file_sha256"])
        if any(f.get("state") in OPEN_STATES for f in frames):
            return
        failed = [f for f in frames if f.get("state") == FAILED]
        file_id = result_id(row["file_sha256"])
        if not failed:
            self._archive(path, file_id)
            return
        detail = "; ".join("frame %d: %s" % (int(f.get("frame") or 0) + 1, f.get("reason")) for f in failed[:5])
        reason = str(failed[0].get("reason") or "failed").split(":", 1)[0]
        try:
            quarantine_file(path, self.paths.quarantine, reason, "%d of %d frame(s) failed: %s"
                            % (len(failed), len(frames), detail), sha256=row["file_sha256"], result_id=file_id,
                            extra={"frames": len(frames), "failed_frames": [int(f.get("frame") or 0)
                                                                            for f in failed]})
        except OSError as exc:
            log.error("cannot quarantine %s: %s", path, exc)

    def _archive(self, path: Path, rid: str) -> None:
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
        key = result_id(row["file_sha256"]) if row.get("frame") is not None and row.get("file_sha256") else row["id"]
        candidates.append(self.paths.archive / ("%s__%s" % (key, row["source"])))
        for c in candidates:
            if c.is_file():
                return c
        return None
