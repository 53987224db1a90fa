"""The appliance daemon: capture watcher -> journal -> scheduler -> result store, plus status for the web.

``Daemon(config)`` wires the packages together:

* ingest: ``camera.ingest.CaptureWatcher`` hands stable files to ``on_ready``, which hashes them, records
  them in the journal (same content twice = a duplicate, recorded, not processed again; content that
  failed before is a deliberate retry and is processed again) and submits them to the scheduler's bounded
  input queue (a blocking put: the watcher waits, nothing is dropped);
* startup: ``journal.recover()`` requeues interrupted items, except one the daemon already died on
  ``MAX_INTERRUPTED_ATTEMPTS`` times (failed and quarantined: a poison pill); the interrupted ones are redone
  one at a time before the watcher starts, so a repeated crash is blamed on one item; finished ones are not redone
  unless their result folder is incomplete (checked by the recovery thread after READY=1, so startup time
  does not grow with the number of results);
* results: complete folders under results/<id>/; bad inputs go to quarantine/ with a reason file;
  inputs stay in capture/ or move to the archive (``ingest.after``);
* systemd: READY=1 once device and model are up, STATUS= lines, WATCHDOG=1 only while ``is_progressing()``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from vessel_seg import __version__
from vessel_seg.pipeline.store.atomic import atomic_write_bytes, fsync_dir
from vessel_seg.pipeline.appliance.config import Config, diff_config, resolve_path
from vessel_seg.pipeline.store.results import ResultStore, _row_dict, id_from_sha256, utc_now_iso
from vessel_seg.pipeline.engine.telemetry import Metrics

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

#: An item the daemon died while processing this many times (``attempts`` in the journal, reset by a
#: deliberate redo) is failed and quarantined at startup instead of being requeued: a poison pill that
#: hangs or crashes the process would otherwise restart it until systemd's StartLimitBurst gives up.
MAX_INTERRUPTED_ATTEMPTS = 3
INTERRUPTED_REASON = "interrupted %d times (the daemon died while processing it)"


class DaemonError(RuntimeError):
    """The daemon cannot start (bad bundle, device unavailable, unwritable data directory)."""


@dataclass
class DataPaths:
    """The data directory layout (ARCHITECTURE.md)."""

    root: Path
    capture: Path
    results: Path
    quarantine: Path
    state: Path
    archive: Path

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "DataPaths":
        root = resolve_path(config["data_dir"])
        archive = config["ingest"]["archive_dir"]
        return cls(root=root, capture=root / "capture", results=root / "results", quarantine=root / "quarantine",
                   state=root / "state", archive=resolve_path(archive) if archive else root / "archive")

    def create(self, archive: bool) -> None:
        for p in (self.capture, self.results, self.quarantine, self.state) + ((self.archive,) if archive else ()):
            p.mkdir(parents=True, exist_ok=True)


def sanitize_filename(name: str, max_len: int = 120) -> str:
    """A safe base name for an uploaded file: no directories, no odd characters, no leading dot or dash."""
    base = os.path.basename(str(name).replace("\\", "/"))
    base = _SAFE_NAME.sub("_", base).lstrip(".-_")
    if len(base) > max_len:
        stem, ext = os.path.splitext(base)
        base = stem[:max_len - len(ext)] + ext
    return base or "upload"


def _sniff_extension(data: bytes) -> Optional[str]:
    """The file extension matching an image's content, or None when it is not an image Pillow knows."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = (img.format or "").upper()
    except Exception:
        return None
    return {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "BMP": ".bmp", "PPM": ".ppm",
            "WEBP": ".webp"}.get(fmt, "." + fmt.lower() if fmt else None)


def _suspects(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The recovered rows the daemon was processing when it stopped (interrupted at least once)."""
    return [row for row in rows if int(row.get("attempts") or 0) > 0]


class Daemon(object):
    """The vessel-seg service (see module docstring)."""

    def __init__(self, config: Config, notifier: Any = None, config_path: Optional[str] = None,
                 systemd: bool = True) -> None:
        """``notifier``: a SystemdNotifier (default: one from the environment); ``systemd=False``: none."""
        self.config = config
        self.config_path = config_path
        self.paths = DataPaths.from_config(config)
        self.metrics = Metrics()
        self.metrics.declare("processed", "failed", "duplicates", "device_errors", "write_errors", "uploads")
        self.results = ResultStore(self.paths.root)
        self.journal: Any = None
        self.bundle: Any = None
        self.device: Any = None
        self.stages: Any = None
        self.scheduler: Any = None
        self.watcher: Any = None
        if not systemd:
            self.notifier = None
        else:
            self.notifier = notifier if notifier is not None else self._default_notifier()
        self._pinger: Any = None
        self._recovery_thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._started_mono: Optional[float] = None
        self._started_wall: Optional[float] = None
        self._runtime = "unknown"
        self._precision = "unknown"
        self._stopped = False
        self._last_hour_cache = (0.0, {})  # type: Any
        self._held_duplicates: Dict[str, List[Path]] = {}
        self._publish_lock = threading.Lock()

    @staticmethod
    def _default_notifier() -> Any:
        try:
            from vessel_seg.pipeline.appliance.sdnotify import SystemdNotifier
        except ImportError:
            return None
        return SystemdNotifier()

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Open journal, model and device, start the pipeline, recover, watch; then READY=1."""
        from vessel_seg.pipeline.appliance.devicefactory import load_model_bundle, make_device, runtime_name_and_precision
        from vessel_seg.pipeline.store.journal import Journal
        from vessel_seg.pipeline.engine.scheduler import Scheduler
        from vessel_seg.pipeline.engine.stages import ModelInfo, StageSettings, Stages

        cfg = self.config
        try:
            self.paths.create(archive=cfg["ingest"]["after"] == "archive")
        except OSError as exc:
            raise DaemonError("cannot create the data directories under %s: %s" % (self.paths.root, exc))
        self._lock_data_dir()
        self.journal = Journal(self.paths.state / "journal.sqlite3")
        self.results.journal = self.journal
        self._status_to_systemd("starting: loading the model")
        try:
            self.bundle = load_model_bundle(cfg)
        except Exception as exc:
            raise DaemonError("cannot load the model bundle: %s" % exc)
        self.device = make_device(self.bundle, cfg)
        self._status_to_systemd("starting: opening the device")
        try:
            self.device.start()
        except Exception as exc:
            raise DaemonError("cannot open the device: %s" % exc)
        self._runtime, self._precision = runtime_name_and_precision(self.device, cfg)
        warning = (self.device.runtime_info or {}).get("warning")
        if warning:
            log.warning("%s", warning)
        model = ModelInfo.from_bundle(self.bundle, runtime=self._runtime, precision=self._precision)
        self.stages = Stages(model, StageSettings.from_config(cfg), self.paths.results)
        self.scheduler = Scheduler(self.stages, self.device, callbacks=_Callbacks(self),
                                   pre_workers=cfg["pipeline"]["pre_workers"],
                                   post_workers=cfg["pipeline"]["post_workers"],
                                   queue_size=cfg["pipeline"]["queue_size"],
                                   retry_interval_s=cfg["pipeline"]["retry_interval_s"], metrics=self.metrics)
        self.metrics.gauge("queue_depth", lambda: float(self._queued_now()))
        self.metrics.gauge("in_flight", lambda: float(self.scheduler.in_flight if self.scheduler else 0))
        self.scheduler.start()
        self._started_mono = time.monotonic()
        self._started_wall = time.time()
        recovered = self._recover()
        self._recovery_thread = threading.Thread(target=self._recover_in_background, args=(recovered,),
                                                 name="vs-recovery", daemon=True)
        self._recovery_thread.start()
        if not _suspects(recovered):
            self._start_watcher()           # else the recovery thread starts it once the suspects are settled
        log.info("vessel-seg %s running: model %s %s on %s (%s), data in %s", __version__, self.bundle.name,
                 self.bundle.version, self._runtime, self._precision, self.paths.root)
        if self.notifier is not None:
            self.notifier.ready(self.status_line())
            self._start_pinger()

    def _start_watcher(self) -> None:
        from vessel_seg.camera.ingest import CaptureWatcher

        ing = self.config["ingest"]
        with self._lock:
            if self._stopped:
                return
            self.watcher = CaptureWatcher(self.paths.capture, self._on_ready, stable_seconds=ing["stable_seconds"],
                                          rescan_seconds=ing["rescan_seconds"], extensions=tuple(ing["extensions"]),
                                          on_rejected=self._on_rejected_path)
            self.watcher.start()

    def _start_pinger(self) -> None:
        try:
            from vessel_seg.pipeline.appliance.sdnotify import WatchdogPinger
        except ImportError:
            return
        self._pinger = WatchdogPinger(self.notifier, self.is_progressing, self.status_line)
        self._pinger.start()

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Stop watching, drain in-flight work within ``timeout`` (default: config), close everything.

        Returns True when every in-flight job finished; unfinished ones stay in the journal.
        """
        if timeout is None:
            timeout = self.config["pipeline"]["shutdown_timeout_s"]
        with self._lock:
            if self._stopped:
                return True
            self._stopped = True
        if self.notifier is not None:
            self.notifier.stopping("stopping: finishing in-flight images")
        if self._pinger is not None:
            self._pinger.stop(2.0)
        if self.scheduler is not None:
            self.scheduler.begin_drain()      # unblocks a watcher waiting on a full queue (backpressure)
        if self.watcher is not None:
            try:
                self.watcher.stop()
            except Exception:
                log.exception("stopping the capture watcher failed")
        finished = True
        if self.scheduler is not None:
            finished = self.scheduler.stop(timeout)
            left = self.scheduler.leftover()
            if left:
                log.info("%d queued item(s) not started; they stay queued for the next start", len(left))
        if self.device is not None and finished:
            try:
                self.device.close()
            except Exception:
                log.exception("closing the device failed")
        elif self.device is not None:
            log.warning("not closing the device: an execute is still in flight")
        if self.journal is not None:
            try:
                self.journal.close()
            except Exception:
                log.exception("closing the journal failed")
        self._unlock_data_dir()
        log.info("vessel-seg stopped (%s)", "clean" if finished else "timeout, unfinished work journaled")
        return finished

    def _lock_data_dir(self) -> None:
        """One daemon per data directory: an exclusive lock on state/daemon.lock (released by the OS on exit).

        Two daemons on one capture folder would both process every file.
        """
        import fcntl

        path = self.paths.state / "daemon.lock"
        fh = open(str(path), "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise DaemonError("another vessel-seg daemon (pid %s) is already using %s" % (holder, self.paths.root))
        fh.seek(0)
        fh.truncate()
        fh.write("%d\n" % os.getpid())
        fh.flush()
        self._lock_fh = fh

    def _unlock_data_dir(self) -> None:
        fh = getattr(self, "_lock_fh", None)
        if fh is not None:
            self._lock_fh = None
            fh.close()

    # ------------------------------------------------------------------ ingest
    def _recover(self) -> List[Any]:
        """Requeued journal rows to feed; completes bookkeeping for rows whose result already exists.

        Runs before READY=1, so it only touches queued/processing rows; the completeness check of finished
        results (one stat per result, tens of thousands on an SD card) runs afterwards in the recovery
        thread (:meth:`_recover_in_background`).
        """
        rows = [_row_dict(r) for r in self.journal.recover()]
        todo = []
        for row in rows:
            rid = row["id"]
            if self.results.is_complete(rid):
                self.journal.mark(rid, "done")
                self._after_done(Path(row["path"]), rid)
                continue
            if int(row.get("attempts") or 0) >= MAX_INTERRUPTED_ATTEMPTS:
                self._give_up_interrupted(row)
                continue
            todo.append(row)
        if todo:
            log.info("recovery: %d interrupted or queued item(s) to (re)process", len(todo))
        return todo

    def _recover_in_background(self, rows: List[Dict[str, Any]]) -> None:
        """The recovery thread (after READY=1): redo the suspects alone, feed the other requeued rows, then
        redo finished items whose result folder is incomplete.

        Suspects are the items the daemon was processing when it died. Each is redone with nothing else in
        flight, and the watcher starts only after them, so if one of them kills the daemon again, only that
        one is counted towards ``MAX_INTERRUPTED_ATTEMPTS``, not the innocent images that happened to be
        in flight beside it.
        """
        suspects = _suspects(rows)
        if suspects and not self._redo_suspects_alone(suspects):
            return
        try:
            if not self._feed([row for row in rows if row not in suspects]):
                return
            done = self._done_rows()
        except Exception:
            log.exception("recovery: cannot list the finished results; their completeness is not checked")
            return
        redone = 0
        for row in done:
            if self._stopped:
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

    def _redo_suspects_alone(self, suspects: List[Dict[str, Any]]) -> bool:
        """Feed each suspect alone and wait for it to settle, then start the watcher (whatever happens);
        False if the daemon stopped meanwhile."""
        log.info("recovery: %d item(s) were in flight when the daemon stopped; redoing them one at a time",
                 len(suspects))
        try:
            for row in suspects:
                fed = self._feed_one(row)
                if fed == "stopped" or (fed == "submitted" and not self._wait_settled(row["id"])):
                    return False
        except Exception:
            log.exception("recovery: redoing the interrupted items one at a time failed; going on")
        finally:
            self._start_watcher()
        return True

    def _wait_settled(self, rid: str, poll_s: float = 0.05) -> bool:
        """Wait until a fed item is done or failed; False if the daemon stops first."""
        while not self._stopped:
            row = self.journal.get(rid)
            if row is None or row["state"] not in ("queued", "processing"):
                return True
            time.sleep(poll_s)
        return False

    def _redo_if_incomplete(self, row: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """The row to feed again when a 'done' item's result folder is incomplete, else None."""
        rid = row["id"]
        if self.results.is_complete(rid):
            return None
        path = self._find_input(row)
        if path is None:
            log.warning("result %s is incomplete and its input %s is gone; cannot redo", rid, row["source"])
            return None
        current = _row_dict(self.journal.get(rid))
        if current.get("state") != "done":          # dropped in again and requeued meanwhile
            return None
        log.warning("result %s is incomplete; redoing %s", rid, row["source"])
        self.journal.requeue(rid, path=str(path))
        return dict(row, path=str(path))

    def _give_up_interrupted(self, row: Dict[str, Any]) -> None:
        """A poison pill: the daemon died ``attempts`` times while processing this item (a hang or crash
        the watchdog restarted it from). Fail it and quarantine its input instead of requeueing it forever."""
        from vessel_seg.pipeline.store.quarantine import quarantine_file

        rid = row["id"]
        reason = INTERRUPTED_REASON % int(row.get("attempts") or 0)
        log.error("journal item %s (%s): %s; marked failed and quarantined, not retried", rid, row["source"],
                  reason)
        path = self._find_input(row)
        try:
            quarantine_file(path if path is not None else Path(row.get("path") or row["source"]),
                            self.paths.quarantine, "interrupted", reason, sha256=row.get("sha256"),
                            result_id=rid, extra={"attempts": int(row.get("attempts") or 0)})
        except OSError as exc:
            log.error("cannot quarantine %s: %s", row["source"], exc)
        self._drop_partial_result(rid)
        self.journal.mark(rid, "failed", reason)
        self.metrics.inc("failed")

    def _drop_partial_result(self, rid: str) -> None:
        """Remove the incomplete results/<id>/ an interrupted attempt left (a failed item has no result)."""
        folder = self.paths.results / rid
        if folder.is_dir() and not self.results.is_complete(rid):
            shutil.rmtree(str(folder), ignore_errors=True)
            log.info("removed the partial result folder of %s", rid)

    def _done_rows(self) -> List[Dict[str, Any]]:
        out: List[Dict[str, Any]] = []
        offset, page = 0, 500
        while True:
            rows = [_row_dict(r) for r in self.journal.list(offset, page, state="done")]
            out.extend(rows)
            if len(rows) < page:
                return out
            offset += page

    def _find_input(self, row: Dict[str, Any]) -> Optional[Path]:
        candidates = [Path(row["path"])] if row.get("path") else []
        candidates.append(self.paths.archive / ("%s__%s" % (row["id"], row["source"])))
        for c in candidates:
            if c.is_file():
                return c
        return None

    def _feed(self, rows: List[Dict[str, Any]]) -> bool:
        """Submit journal rows to the scheduler; False once it refuses (stopping).

        A row that cannot be handled (e.g. a JournalError marking it) is logged and skipped; it stays in
        the journal for the next start and does not end the recovery.
        """
        return all(self._feed_one(row) != "stopped" for row in rows)

    def _feed_one(self, row: Dict[str, Any]) -> str:
        """Submit one journal row: "submitted", "skipped" (input gone, or an error; logged) or "stopped"."""
        from vessel_seg.pipeline.engine.stages import WorkItem

        if self._stopped:
            return "stopped"
        try:
            path = self._find_input(row)
            if path is None:
                log.error("journal item %s (%s): input file is gone; marked failed", row["id"], row["source"])
                self.journal.mark(row["id"], "failed", "input_missing: the file disappeared before processing")
                self.metrics.inc("failed")
                return "skipped"
            item = WorkItem(id=row["id"], sha256=row["sha256"], source=row["source"], path=path,
                            size=int(row.get("size") or 0))
        except Exception:
            log.exception("recovery: journal item %s (%s) skipped; it stays in the journal for the next start",
                          row.get("id"), row.get("source"))
            return "skipped"
        return "submitted" if self.scheduler.submit(item) else "stopped"

    def _on_ready(self, path: Path) -> None:
        """A stable file in capture/: hash, journal, dedupe, submit (may block: backpressure).

        Never raises: an unexpected error (e.g. disk full while journaling) is logged, the file stays in
        capture/ and the watcher offers it again at its next periodic rescan (``forget``).
        """
        try:
            self._ingest(Path(path))
        except Exception:
            log.exception("ingest of %s failed; the file stays in capture/ and is retried at the next rescan",
                          path)
            watcher = self.watcher
            if watcher is not None and hasattr(watcher, "forget"):
                try:
                    watcher.forget(path)
                except Exception:
                    log.exception("cannot make the watcher offer %s again", path)

    def _ingest(self, path: Path) -> None:
        from vessel_seg.pipeline.store.journal import sha256_file
        from vessel_seg.pipeline.engine.stages import WorkItem

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
        if is_new:
            log.info("new capture %s (%d bytes) -> %s", path.name, size, rid)
            self.scheduler.submit(WorkItem(id=rid, sha256=sha, source=path.name, path=path, size=size))
            return
        row = _row_dict(self.journal.get(rid))
        state = row.get("state")
        same_file = row.get("path") == str(path)
        if state == "done" and self.results.is_complete(rid):
            if not same_file:
                self.metrics.inc("duplicates")
                log.info("duplicate: %s has the same content as %s (result %s); not processed again",
                         path.name, row.get("source"), rid)
            self._after_done(path, rid)
        elif state == "done":
            log.warning("result %s is incomplete; redoing it from %s", rid, path.name)
            self.journal.requeue(rid, source=path.name, path=str(path))
            self.scheduler.submit(WorkItem(id=rid, sha256=sha, source=path.name, path=path, size=size))
        elif state == "failed":
            # the technician fixed the cause and dropped the file in again (failures page): a retry
            log.info("retry: %s has the content of failed item %s (%s); processing it again", path.name, rid,
                     row.get("reason"))
            self.journal.requeue(rid, source=path.name, path=str(path))
            self.scheduler.submit(WorkItem(id=rid, sha256=sha, source=path.name, path=path, size=size))
        elif not same_file:
            self.metrics.inc("duplicates")
            log.info("duplicate: %s has the same content as %s, already %s", path.name, row.get("source"), state)
            self._hold_duplicate(rid, path)

    def _quarantine_duplicate(self, path: Path, rid: str, row: Dict[str, Any]) -> None:
        if not path.exists():
            return
        from vessel_seg.pipeline.store.quarantine import quarantine_file

        try:
            quarantine_file(path, self.paths.quarantine, "duplicate_of_failed",
                            "same content as %s, which failed: %s" % (row.get("source"), row.get("reason")),
                            sha256=row.get("sha256"), result_id=rid)
        except OSError as exc:
            log.error("cannot quarantine %s: %s", path, exc)

    def _hold_duplicate(self, rid: str, path: Path) -> None:
        """A duplicate of an item still queued or processing is settled with its original: archived (per
        ``ingest.after``) once the original is done, quarantined if the original fails; never before."""
        with self._lock:
            self._held_duplicates.setdefault(rid, []).append(path)
        row = _row_dict(self.journal.get(rid))
        if row.get("state") in ("done", "failed"):   # it finished meanwhile
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
            if outcome.get("state") == "failed":
                self._quarantine_duplicate(path, rid, outcome)
            else:
                self._after_done(path, rid)

    def _quarantine_unhashed(self, path: Path, reason: str, detail: str) -> None:
        from vessel_seg.pipeline.store.quarantine import quarantine_file

        try:
            quarantine_file(path, self.paths.quarantine, reason, detail)
        except OSError as exc:
            log.error("cannot quarantine %s: %s", path, exc)
        self.metrics.inc("failed")

    def _on_rejected_path(self, path: Path, reason: str) -> None:
        """The watcher refused a path (e.g. a symlink leading outside capture/)."""
        self._quarantine_unhashed(Path(path), "rejected", str(reason))

    def _after_done(self, path: Path, rid: str) -> None:
        """Apply ``ingest.after`` to a processed input."""
        if self.config["ingest"]["after"] != "archive" or not path.exists():
            return
        try:
            if self.paths.archive in path.parents:
                return
        except Exception:
            pass
        self.paths.archive.mkdir(parents=True, exist_ok=True)
        target = self.paths.archive / ("%s__%s" % (rid, path.name))
        n = 1
        while target.exists():
            target = self.paths.archive / ("%s__%s.%d" % (rid, path.name, n))
            n += 1
        try:
            shutil.move(str(path), str(target))
            fsync_dir(self.paths.archive)
        except OSError as exc:
            log.error("cannot archive %s: %s", path, exc)

    # ------------------------------------------------------------------ uploads
    def submit_upload(self, filename: str, data: bytes) -> str:
        """Write an uploaded image atomically into capture/ and return its result id.

        Raises ValueError for empty, oversized or non-image data. The watcher picks the file up like any
        camera capture (same pipeline, same journal, same dedupe).
        """
        if not data:
            raise ValueError("the upload is empty")
        limit = self.config["ingest"]["max_bytes"]
        if len(data) > limit:
            raise ValueError("the upload has %d bytes; the limit is %d" % (len(data), limit))
        ext = _sniff_extension(data)
        if ext is None:
            raise ValueError("the upload is not an image format this appliance reads")
        name = sanitize_filename(filename)
        stem, given = os.path.splitext(name)
        if given.lower() not in self.config["ingest"]["extensions"]:
            name = (stem or "upload") + ext
        sha = hashlib.sha256(data).hexdigest()
        rid = id_from_sha256(sha)
        target = self._publish_upload(name, rid, data)
        self.metrics.inc("uploads")
        log.info("upload %s (%d bytes) -> %s", target.name, len(data), rid)
        if self.watcher is not None:
            try:
                self.watcher.scan_now()
            except Exception:
                log.exception("waking the watcher failed")
        return rid

    def _publish_upload(self, name: str, rid: str, data: bytes) -> Path:
        """Write ``data`` into capture/ under ``name``, or ``<stem>__<rid8>[-n]<ext>`` when that is taken;
        never overwrites a file (two simultaneous uploads with one name both survive).

        The data is first written durably to a hidden staging file (ignored by the watcher), then published
        with ``os.link``, which fails instead of replacing an existing name. Where the file system has no
        hard links (FAT), a check-then-rename under a lock is the fallback (exclusive among uploads).
        """
        capture = self.paths.capture
        capture.mkdir(parents=True, exist_ok=True)
        staged = atomic_write_bytes(capture / (".upload-%s-%s.staged" % (rid, uuid.uuid4().hex[:12])), data,
                                    sync_dir=False)
        stem, ext = os.path.splitext(name)
        use_link = True
        n = 0
        try:
            while True:
                if n == 0:
                    target = capture / name
                elif n == 1:
                    target = capture / ("%s__%s%s" % (stem, rid[:8], ext))
                else:
                    target = capture / ("%s__%s-%d%s" % (stem, rid[:8], n, ext))
                n += 1
                if use_link:
                    try:
                        os.link(str(staged), str(target))
                        break
                    except FileExistsError:
                        continue
                    except OSError as exc:
                        log.info("no hard links in %s (%s); publishing uploads by rename", capture, exc)
                        use_link = False
                with self._publish_lock:
                    if os.path.lexists(str(target)):
                        continue
                    os.rename(str(staged), str(target))
                    break
        finally:
            try:
                os.unlink(str(staged))
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove the staging file %s: %s", staged, exc)
        fsync_dir(capture)
        return target

    # ------------------------------------------------------------------ health and status
    def _queued_now(self) -> int:
        if self.scheduler is None:
            return 0
        d = self.scheduler.depths()
        return int(d["input"] + d["in_flight"])

    def device_state(self) -> str:
        """The device state as a string ("starting", "ready", "recovering", "failed")."""
        if self.device is None:
            return "starting"
        state = getattr(self.device, "state", "unknown")
        return str(getattr(state, "value", state))

    def hang_seconds(self) -> float:
        """How long the current execute has been in flight (0 when none)."""
        busy = getattr(self.device, "busy_since", None) if self.device is not None else None
        if busy is None:
            return 0.0
        return max(0.0, time.monotonic() - float(busy))

    def dead_pipeline_threads(self) -> List[str]:
        """Names of scheduler threads (pre workers, device thread, post workers) that have died although
        the pipeline is running or paused (they only end while draining or stopped)."""
        sched = self.scheduler
        if sched is None:
            return []
        try:
            if sched.state.value not in ("running", "paused"):
                return []
            threads = list(getattr(sched, "_threads", None) or [])   # read-only look at the scheduler
        except Exception:
            log.debug("cannot inspect the scheduler threads", exc_info=True)
            return []
        return [t.name for t in threads if not t.is_alive()]

    def is_progressing(self) -> bool:
        """For the systemd watchdog: False when an execute hangs, the device failed or the pipeline died."""
        if self.scheduler is None or self.device is None:
            return False
        if self.hang_seconds() > self.config["device"]["hang_timeout_s"]:
            return False
        if self.device_state() == "failed":
            return False
        if self.dead_pipeline_threads():
            return False
        state = self.scheduler.state.value
        if state == "stopped" and not self._stopped:
            return False
        return True

    def health(self) -> Dict[str, str]:
        """{"health": ok|degraded|failed, "health_reason": text}."""
        if self.scheduler is None or self.device is None:
            return {"health": "degraded", "health_reason": "starting"}
        hang = self.hang_seconds()
        if hang > self.config["device"]["hang_timeout_s"]:
            return {"health": "failed", "health_reason": "device execute in flight for %.0f s (hung)" % hang}
        dstate = self.device_state()
        if dstate == "failed":
            return {"health": "failed",
                    "health_reason": "device failed: %s" % (getattr(self.device, "last_error", "") or "unknown")}
        pstate = self.scheduler.state.value
        if pstate == "stopped":
            return {"health": "failed", "health_reason": "pipeline stopped"}
        dead = self.dead_pipeline_threads()
        if dead:
            return {"health": "failed", "health_reason": "pipeline thread(s) died: %s" % ", ".join(dead)}
        if pstate == "paused":
            return {"health": "degraded", "health_reason": self.scheduler.paused_reason or "paused"}
        if pstate in ("draining", "starting"):
            return {"health": "degraded", "health_reason": "pipeline %s" % pstate}
        if dstate == "recovering":
            return {"health": "degraded", "health_reason": "device recovering: %s"
                    % (getattr(self.device, "last_error", "") or "")}
        return {"health": "ok", "health_reason": ""}

    def _last_hour(self) -> Dict[str, int]:
        now = time.monotonic()
        cached_at, cached = self._last_hour_cache
        if now - cached_at < 5.0 and cached:
            return dict(cached)
        counts = {"done": 0, "failed": 0}
        if self.journal is not None and hasattr(self.journal, "counts_since"):
            try:
                got = self.journal.counts_since(utc_now_iso(time.time() - 3600))
                counts.update({str(k): int(v) for k, v in dict(got).items()})
            except Exception:
                log.exception("journal.counts_since failed")
        self._last_hour_cache = (now, dict(counts))
        return counts

    def status(self) -> Dict[str, Any]:
        """The state handed to the web page (ARCHITECTURE.md "Daemon state")."""
        counts = {"queued": 0, "processing": 0, "done": 0, "failed": 0}
        if self.journal is not None:
            try:
                counts.update({str(k): int(v) for k, v in dict(self.journal.counts()).items()})
            except Exception:
                log.exception("journal.counts failed")
        runtime_info = dict(getattr(self.device, "runtime_info", None) or {}) if self.device is not None else {}
        health = self.health()
        sched = self.scheduler
        uptime = time.monotonic() - self._started_mono if self._started_mono else 0.0
        status = {
            "version": __version__,
            "processed": counts["done"],
            "failed": counts["failed"],
            "queued": counts["queued"] + counts["processing"],
            "processing": counts["processing"],
            "duplicates": int(self.metrics.value("duplicates")),
            "runtime": self._runtime,
            "runtime_info": runtime_info,
            "precision": self._precision,
            "model": {"name": getattr(self.bundle, "name", None), "version": getattr(self.bundle, "version", None)},
            "health": health["health"],
            "health_reason": health["health_reason"],
            "device_state": self.device_state(),
            "device_error": getattr(self.device, "last_error", None) if self.device is not None else None,
            "throughput_ipm": round(self.metrics.rate_per_minute("completed", 300.0, since=self._started_mono), 2),
            "stage_latency_ms": self.metrics.median_ms(),
            "last_hour": self._last_hour(),
            "pipeline_state": sched.state.value if sched is not None else "starting",
            "paused_reason": sched.paused_reason if sched is not None else "",
            "queue_depths": sched.depths() if sched is not None else {},
            "uptime_s": round(uptime, 1),
            "started": utc_now_iso(self._started_wall) if self._started_wall else None,
            "data_dir": str(self.paths.root),
        }
        return status

    def status_line(self) -> str:
        """One human line for systemd's STATUS=."""
        s = self.status()
        state = "ready" if s["pipeline_state"] == "running" else s["pipeline_state"]
        line = "%s: %d processed, %d failed, queue %d, device %s" % (
            state, s["processed"], s["failed"], s["queued"], s["device_state"])
        if s["paused_reason"]:
            line += " (%s)" % s["paused_reason"]
        if s.get("health") not in (None, "ok") and s.get("health_reason") and s["health_reason"] != s["paused_reason"]:
            line += "; %s: %s" % (s["health"], s["health_reason"])
        return line

    def _status_to_systemd(self, text: str) -> None:
        if self.notifier is not None:
            self.notifier.status(text)

    # ------------------------------------------------------------------ reload
    def reload(self, new_config: Config) -> Dict[str, List[str]]:
        """Apply the safe part of a new configuration (SIGHUP); returns {"applied": [...], "restart": [...]}."""
        from vessel_seg.pipeline.engine.stages import StageSettings

        if self.notifier is not None:
            self.notifier.reloading("reloading configuration")
        applied, restart = diff_config(self.config, new_config)
        for key in applied:
            section, name = key.split(".", 1)
            self.config[section][name] = new_config[section][name]
        if "logging.level" in applied:
            logging.getLogger().setLevel(self.config["logging"]["level"])
        if self.stages is not None:
            self.stages.settings = StageSettings.from_config(self.config)
        if self.scheduler is not None:
            self.scheduler.retry_interval_s = self.config["pipeline"]["retry_interval_s"]
        if self.watcher is not None:
            for attr, key in (("rescan_seconds", "rescan_seconds"), ("stable_seconds", "stable_seconds")):
                if hasattr(self.watcher, attr):
                    setattr(self.watcher, attr, self.config["ingest"][key])
        for key in applied:
            log.info("reload: %s applied", key)
        for key in restart:
            log.warning("reload: %s changed but needs a restart (systemctl restart vessel-seg)", key)
        if self.notifier is not None:
            self.notifier.ready(self.status_line())
        return {"applied": applied, "restart": restart}


class _Callbacks(object):
    """Scheduler events -> journal, quarantine, archive."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def on_start(self, item: Any) -> None:
        self.d.journal.start(item.id)

    def on_done(self, job: Any) -> None:
        result_dir = str(job.result_path.parent) if job.result_path is not None else None
        self.d.journal.mark(job.item.id, "done", result_dir=result_dir)
        total = job.timings_ms.get("total", 0.0)
        log.info("done %s -> results/%s (%.0f ms)", job.item.source, job.item.id, total)
        self.d._after_done(Path(job.item.path), job.item.id)
        self.d.settle_duplicates(job.item.id, {"state": "done"})

    def on_rejected(self, item: Any, reason: str, detail: str) -> None:
        from vessel_seg.pipeline.store.quarantine import quarantine_file

        try:
            quarantine_file(item.path, self.d.paths.quarantine, reason, detail, sha256=item.sha256,
                            result_id=item.id)
        except OSError as exc:
            log.error("cannot quarantine %s: %s", item.path, exc)
        failure = "%s: %s" % (reason, detail)
        self.d.journal.mark(item.id, "failed", failure)
        self.d.settle_duplicates(item.id, {"state": "failed", "source": item.source, "reason": failure,
                                           "sha256": item.sha256})

    def on_state(self, state: Any, reason: str) -> None:
        if self.d.notifier is not None and self.d.scheduler is not None:
            try:
                self.d.notifier.status(self.d.status_line())
            except Exception:
                log.debug("status notification failed", exc_info=True)
