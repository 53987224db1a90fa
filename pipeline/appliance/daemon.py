"""The appliance daemon: wires capture watcher -> journal -> scheduler -> result store, and reports status.

``Daemon(config)`` owns the parts and their life cycle; each policy is its own unit:

* :mod:`.datadir`: the data directory layout and the one-daemon lock;
* :mod:`.intake`: files in (hash, journal, dedupe, backpressure) and outcomes out (journal, quarantine, archive);
* :mod:`.recovery`: what a restart redoes, and in which order (poison pills are given up);
* :mod:`.uploads`: the upload validator and the never-overwriting publication into capture/;
* :mod:`.health`: status, health and the watchdog's progress verdict;
* :mod:`.reload`: what SIGHUP may change.

systemd: READY=1 once device and model are up, STATUS= lines, WATCHDOG=1 only while ``is_progressing()``.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List, Optional

from vessel_seg import __version__
from vessel_seg.camera.dicom_receiver import DicomReceiver, ReceiverError
from vessel_seg.camera.ingest import CaptureWatcher
from vessel_seg.pipeline.appliance.config import Config, exposure_problem
from vessel_seg.pipeline.appliance.datadir import DataDirBusy, DataDirLock, DataPaths
from vessel_seg.pipeline.appliance.devicefactory import load_model_bundle, make_device, runtime_name_and_precision
from vessel_seg.pipeline.appliance.health import HealthMonitor
from vessel_seg.pipeline.appliance.intake import Intake
from vessel_seg.pipeline.appliance.recovery import Recovery, suspects
from vessel_seg.pipeline.appliance.reload import apply_reload
from vessel_seg.pipeline.appliance.sdnotify import SystemdNotifier, WatchdogPinger
from vessel_seg.pipeline.appliance.uploads import UploadPublisher, check_upload
from vessel_seg.pipeline.engine.scheduler import PipelineState, Scheduler, SchedulerCallbacks
from vessel_seg.pipeline.engine.stages import ModelInfo, Stages, StageSettings, WorkItem
from vessel_seg.pipeline.engine.telemetry import Metrics
from vessel_seg.pipeline.store.journal import Journal
from vessel_seg.pipeline.store.results import ResultStore
from vessel_seg.vocabulary import result_id, sha256_bytes

log = logging.getLogger(__name__)


class DaemonError(RuntimeError):
    """The daemon cannot start (bad bundle, device unavailable, unwritable or busy data directory)."""


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
        self.journal: Optional[Journal] = None
        self.bundle: Any = None
        self.device: Any = None
        self.stages: Optional[Stages] = None
        self.scheduler: Optional[Scheduler] = None
        self.watcher: Optional[CaptureWatcher] = None
        self.receiver: Optional[DicomReceiver] = None
        self.intake: Optional[Intake] = None
        self.recovery: Optional[Recovery] = None
        self.monitor = HealthMonitor(self)
        self.notifier = (notifier if notifier is not None else SystemdNotifier()) if systemd else None
        self.runtime = "unknown"
        self.precision = "unknown"
        self.started_mono: Optional[float] = None
        self.started_wall: Optional[float] = None
        self.stopped = False
        self._uploads = UploadPublisher(self.paths.capture)
        self._data_lock = DataDirLock(self.paths)
        self._pinger: Optional[WatchdogPinger] = None
        self._recovery_thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Open journal, model and device, start the pipeline, recover, watch; then READY=1."""
        cfg = self.config
        problem = exposure_problem(cfg)
        if problem:
            raise DaemonError(problem)
        if cfg["dicom"]["receiver"]["enabled"] and not cfg["dicom"]["receiver"]["allowed_ae_titles"]:
            raise DaemonError("dicom.receiver is enabled but dicom.receiver.allowed_ae_titles is empty: name the "
                              "AE titles of the cameras allowed to send (an open receiver of patient data is refused)")
        try:
            self.paths.create(archive=cfg["ingest"]["after"] == "archive")
        except OSError as exc:
            raise DaemonError("cannot create the data directories under %s: %s" % (self.paths.root, exc))
        try:
            self._data_lock.acquire()
        except DataDirBusy as exc:
            raise DaemonError(str(exc))
        self.journal = Journal(self.paths.journal)
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
        self.runtime, self.precision = runtime_name_and_precision(self.device, cfg)
        warning = (self.device.runtime_info or {}).get("warning")
        if warning:
            log.warning("%s", warning)
        model = ModelInfo.from_bundle(self.bundle, runtime=self.runtime, precision=self.precision)
        self.stages = Stages(model, StageSettings.from_config(cfg), self.paths.results)
        self.intake = Intake(cfg, self.paths, self.journal, self.results, self.metrics, submit=self._submit,
                             forget=self._forget)
        self.scheduler = Scheduler(self.stages, self.device, callbacks=_Callbacks(self, self.intake),
                                   pre_workers=cfg["pipeline"]["pre_workers"],
                                   post_workers=cfg["pipeline"]["post_workers"],
                                   queue_size=cfg["pipeline"]["queue_size"],
                                   retry_interval_s=cfg["pipeline"]["retry_interval_s"], metrics=self.metrics)
        self.metrics.gauge("queue_depth", lambda: float(self._queued_now()))
        self.metrics.gauge("in_flight", lambda: float(self.scheduler.in_flight if self.scheduler else 0))
        self.scheduler.start()
        self.started_mono = time.monotonic()
        self.started_wall = time.time()
        self.recovery = Recovery(self.paths, self.journal, self.results, self.intake, self.metrics,
                                 submit=self._submit, stopped=lambda: self.stopped)
        recovered = self.recovery.recover()
        self._recovery_thread = threading.Thread(target=self.recovery.run_in_background,
                                                 args=(recovered, self._start_watcher), name="vs-recovery",
                                                 daemon=True)
        self._recovery_thread.start()
        if not suspects(recovered):
            self._start_watcher()           # else the recovery thread starts it once the suspects are settled
        self._start_receiver()
        log.info("vessel-seg %s running: model %s %s on %s (%s), data in %s", __version__, self.bundle.name,
                 self.bundle.version, self.runtime, self.precision, self.paths.root)
        if self.notifier is not None:
            self.notifier.ready(self.status_line())
            self._pinger = WatchdogPinger(self.notifier, self.is_progressing, self.status_line)
            self._pinger.start()

    def _start_receiver(self) -> None:
        """The DICOM C-STORE receiver (config ``dicom.receiver``): instances land in capture/ like any file."""
        rx = self.config["dicom"]["receiver"]
        if not rx["enabled"]:
            return
        try:
            receiver = DicomReceiver(self.paths.capture, rx["ae_title"], rx["port"], rx["allowed_ae_titles"],
                                     max_bytes=self.config["ingest"]["max_bytes"], on_stored=self._wake_watcher)
            receiver.start()
        except ReceiverError as exc:
            raise DaemonError(str(exc))
        self.receiver = receiver

    def _wake_watcher(self, _path: Any) -> None:
        watcher = self.watcher
        if watcher is not None:
            watcher.scan_now()

    def _start_watcher(self) -> None:
        ing = self.config["ingest"]
        intake = self.intake
        assert intake is not None
        with self._lock:
            if self.stopped:
                return
            self.watcher = CaptureWatcher(self.paths.capture, intake.on_ready, stable_seconds=ing["stable_seconds"],
                                          rescan_seconds=ing["rescan_seconds"], extensions=tuple(ing["extensions"]),
                                          on_rejected=intake.on_rejected_path)
            self.watcher.start()

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Stop watching, drain in-flight work within ``timeout`` (default: config), close everything.

        Returns True when every in-flight job finished; unfinished ones stay in the journal.
        """
        if timeout is None:
            timeout = self.config["pipeline"]["shutdown_timeout_s"]
        with self._lock:
            if self.stopped:
                return True
            self.stopped = True
        if self.notifier is not None:
            self.notifier.stopping("stopping: finishing in-flight images")
        if self._pinger is not None:
            self._pinger.stop(2.0)
        if self.receiver is not None:
            self.receiver.stop()              # no new instances; those received are in capture/ already
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
        self._data_lock.release()
        log.info("vessel-seg stopped (%s)", "clean" if finished else "timeout, unfinished work journaled")
        return finished

    def _submit(self, item: WorkItem) -> bool:
        """Hand an item to the scheduler (blocks while its input queue is full); False once it is stopping."""
        assert self.scheduler is not None
        return self.scheduler.submit(item)

    def _forget(self, path: Any) -> None:
        if self.watcher is not None:
            self.watcher.forget(path)

    # ------------------------------------------------------------------ uploads
    def submit_upload(self, filename: str, data: bytes) -> str:
        """Check an uploaded image, write it atomically into capture/ and return its result id.

        Raises UploadRejected (a ValueError with an HTTP ``status``) for empty, oversized, damaged or
        non-image data. The watcher picks the file up like any camera capture (same pipeline, journal, dedupe).
        """
        ing = self.config["ingest"]
        name, _fmt = check_upload(filename, data, max_bytes=ing["max_bytes"], max_pixels=ing["max_pixels"])
        rid = result_id(sha256_bytes(data))
        target = self._uploads.publish(name, rid, data)
        self.metrics.inc("uploads")
        log.info("upload %s (%d bytes) -> %s", target.name, len(data), rid)
        if self.watcher is not None:
            try:
                self.watcher.scan_now()
            except Exception:
                log.exception("waking the watcher failed")
        return rid

    # ------------------------------------------------------------------ health and status
    def _queued_now(self) -> int:
        if self.scheduler is None:
            return 0
        d = self.scheduler.depths()
        return int(d["input"] + d["in_flight"])

    def device_state(self) -> str:
        return self.monitor.device_state()

    def dead_pipeline_threads(self) -> List[str]:
        return self.monitor.dead_pipeline_threads()

    def is_progressing(self) -> bool:
        return self.monitor.is_progressing()

    def health(self) -> Dict[str, str]:
        return self.monitor.health()

    def status(self) -> Dict[str, Any]:
        return self.monitor.status()

    def status_line(self) -> str:
        return self.monitor.status_line()

    def _status_to_systemd(self, text: str) -> None:
        if self.notifier is not None:
            self.notifier.status(text)

    # ------------------------------------------------------------------ reload
    def reload(self, new_config: Config) -> Dict[str, List[str]]:
        """Apply the safe part of a new configuration (SIGHUP); returns {"applied": [...], "restart": [...]}."""
        if self.notifier is not None:
            self.notifier.reloading("reloading configuration")
        changes = apply_reload(self, new_config)
        if self.notifier is not None:
            self.notifier.ready(self.status_line())
        return changes


class _Callbacks(SchedulerCallbacks):
    """Scheduler events: outcomes go to the intake, state changes to systemd's STATUS= line."""

    def __init__(self, daemon: Daemon, intake: Intake) -> None:
        self.d = daemon
        self.on_start = intake.on_start
        self.on_done = intake.on_done
        self.on_rejected = intake.on_rejected

    def on_state(self, state: PipelineState, reason: str) -> None:
        if self.d.notifier is not None and self.d.scheduler is not None:
            try:
                self.d.notifier.status(self.d.status_line())
            except Exception:
                log.debug("status notification failed", exc_info=True)
