"""Capture-folder ingest: hand out each image file in the capture folder once it is completely written.

Design (the truth is a scan, events are wake-ups):

* A directory scan finds candidate files (top level only). It runs at start, every ``rescan_seconds``,
  on :meth:`CaptureWatcher.scan_now`, and soon after any watchdog event. Events never hand out a file
  by themselves, so a lost or coalesced event only delays a file until the next periodic rescan.
* A candidate is *ready* when its size and mtime have been observed unchanged for ``stable_seconds``;
  after a close-after-write event (inotify ``IN_CLOSE_WRITE``) it is ready sooner, once a re-check
  ``min(stable_seconds, close_recheck_seconds)`` after the close still sees the same size and mtime and
  no write event came after the close. A writer that pauses in the middle of a file for longer than
  ``stable_seconds`` (or, if it closes the file between chunks, longer than the close re-check) cannot be
  told apart from a finished one: cameras should write to a temporary name (``*.tmp``, ``*.part``, a
  dotfile) and rename, which is always safe; ``close_recheck_seconds >= stable_seconds`` turns the
  close shortcut off.
* Each ready file is passed to ``on_ready(path)`` from the watcher's own thread, oldest first, exactly
  once per (name, size, mtime) identity while the process lives. ``on_ready`` may block
  (backpressure): the watcher simply waits, nothing is dropped. Deduplication across restarts is the
  journal's job, not the watcher's. A consumer that could not take a file (e.g. disk full) calls
  :meth:`CaptureWatcher.forget`: the file is offered again after the next periodic full rescan.
* Directories, FIFOs, sockets and devices are ignored (logged once at debug level). Symlinks are
  followed only when they resolve to a regular file inside the capture folder; others are reported
  once through ``on_rejected(path, reason)`` so the pipeline can quarantine and record them.
* The watcher thread sleeps on an Event with a timeout between scans (no busy polling) and survives
  any exception (logged). Without watchdog (not installed, ``use_watchdog=False`` or the observer
  cannot start, e.g. out of inotify watches) it polls every ``poll_seconds``.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, Set, Tuple, Union

from vessel_seg.vocabulary import DICOM_EXTENSION, IMAGE_EXTENSIONS, has_dicom_preamble

__all__ = ["CaptureWatcher", "DEFAULT_IGNORE", "DEFAULT_EXTENSIONS", "watchdog_available"]

log = logging.getLogger(__name__)

#: File name patterns (case-insensitive, fnmatch) never handed out: partial downloads, temp files, dotfiles,
#: editor backups.
DEFAULT_IGNORE = ("*.tmp", "*.part", "*.partial", "*.crdownload", ".*", "*~")

#: Image file extensions handed out (case-insensitive).
DEFAULT_EXTENSIONS = IMAGE_EXTENSIONS

_MIN_RECHECK_S = 0.02        # smallest wait before re-checking a candidate
_EVENT_SCAN_GAP_S = 0.1      # event-triggered scans are coalesced to at most one per this interval
_ERROR_BACKOFF_S = 1.0       # pause after an unexpected error in the loop
_GONE_MEMORY = 4096          # identities of vanished files remembered (a file moved away and back is not re-sent)

# Event types that are wake-ups; 'opened' / 'closed_no_write' (our own reads, the daemon's hashing) are not.
_WAKE_EVENTS = ("created", "modified", "moved", "deleted", "attrib", "closed")

Identity = Tuple[int, int]   # (size, mtime_ns)


def watchdog_available() -> bool:
    """True when the watchdog package can be imported."""
    try:
        import watchdog.observers  # noqa: F401
    except Exception:
        return False
    return True


class _Candidate(object):
    """A file seen in the folder and not yet handed out."""

    __slots__ = ("sig", "since", "checked", "mtime")

    def __init__(self, sig: Identity, since: float, mtime: float) -> None:
        self.sig = sig          # (size, mtime_ns) at the last check
        self.since = since      # monotonic time this signature was first seen
        self.checked = since    # monotonic time of the last check
        self.mtime = mtime      # wall-clock mtime (for oldest-first ordering)


class CaptureWatcher(object):
    """Watches ``capture_dir`` and calls ``on_ready(path)`` for every completely written image file.

    Args:
        capture_dir: the folder to watch (top-level files only).
        on_ready: called from the watcher thread with the file's Path; may block (backpressure).
        stable_seconds: how long size and mtime must stay unchanged before a file is ready.
        rescan_seconds: period of the full safety rescan while watchdog events are available.
        ignore: file name patterns never handed out (default :data:`DEFAULT_IGNORE`).
        use_watchdog: use watchdog's Observer for wake-ups when available.
        extensions: file extensions handed out (case-insensitive).
        on_rejected: optional ``(path, reason)`` callback for paths refused for safety (symlinks that
            resolve outside ``capture_dir`` or cannot be resolved); called once per path and target.
        poll_seconds: scan period when no observer runs (default ``min(rescan_seconds, 2.0)``).
        close_recheck_seconds: after a close-after-write event, a file whose size and mtime stay unchanged
            for this long (at most ``stable_seconds``) is ready.
        dicom: also hand out DICOM files, known by content: any ``.dcm`` file, and a file without an
            extension (or named by a UID) once it is stable and starts with the DICOM preamble (others
            are skipped).
    """

    def __init__(
        self,
        capture_dir: Union[str, "os.PathLike[str]"],
        on_ready: Callable[[Path], None],
        stable_seconds: float = 1.0,
        rescan_seconds: float = 30.0,
        ignore: Optional[Iterable[str]] = None,
        use_watchdog: bool = True,
        extensions: Tuple[str, ...] = DEFAULT_EXTENSIONS,
        on_rejected: Optional[Callable[[Path, str], None]] = None,
        poll_seconds: Optional[float] = None,
        close_recheck_seconds: float = 0.2,
        dicom: bool = True,
    ) -> None:
        if not callable(on_ready):
            raise TypeError("on_ready must be callable")
        if on_rejected is not None and not callable(on_rejected):
            raise TypeError("on_rejected must be callable or None")
        if float(stable_seconds) < 0:
            raise ValueError("stable_seconds must be >= 0, got %r" % (stable_seconds,))
        if float(rescan_seconds) <= 0:
            raise ValueError("rescan_seconds must be > 0, got %r" % (rescan_seconds,))
        if poll_seconds is not None and float(poll_seconds) <= 0:
            raise ValueError("poll_seconds must be > 0, got %r" % (poll_seconds,))
        if float(close_recheck_seconds) < 0:
            raise ValueError("close_recheck_seconds must be >= 0, got %r" % (close_recheck_seconds,))
        if isinstance(extensions, str):
            raise TypeError("extensions must be a tuple of extensions such as ('.png', '.jpg'), not a string")
        self.capture_dir = Path(capture_dir)
        self.on_ready = on_ready
        self.on_rejected = on_rejected
        self.stable_seconds = float(stable_seconds)
        self.rescan_seconds = float(rescan_seconds)
        self.poll_seconds = float(poll_seconds) if poll_seconds is not None else min(self.rescan_seconds, 2.0)
        self.use_watchdog = bool(use_watchdog)
        self.close_recheck_seconds = min(float(close_recheck_seconds), self.stable_seconds)
        self.ignore = tuple(p.lower() for p in (DEFAULT_IGNORE if ignore is None else ignore))
        self.extensions = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        self.dicom = bool(dicom)

        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = None  # type: Optional[threading.Thread]
        self._observer = None  # type: Any
        self._started = False
        # shared with the observer thread (under _lock)
        self._dirty = set()  # type: Set[str]
        self._closed_at = {}  # type: Dict[str, float]
        self._full_scan_requested = True
        self._event_pending = False
        # owned by the watcher thread (pending() reads _candidates under _lock)
        self._candidates = {}  # type: Dict[str, _Candidate]
        self._handed = {}  # type: Dict[str, Identity]
        self._gone = OrderedDict()  # type: OrderedDict[Tuple[str, Identity], None]
        self._noted = {}  # type: Dict[str, str]
        self._rejected = {}  # type: Dict[str, str]
        # names passed to forget(): offered again from the next full scan on (shared, under _lock)
        self._forgotten = set()  # type: Set[str]
        self._missing_logged = False
        self._last_scan = -1e9
        self._last_full_scan = -1e9

    # ------------------------------------------------------------------ public API
    def start(self) -> None:
        """Start watching: a startup scan runs at once, then periodic rescans and event wake-ups."""
        with self._lock:
            if self._started:
                raise RuntimeError("CaptureWatcher already started")
            self._started = True
        self._start_observer()
        self._thread = threading.Thread(target=self._run, name="vs-capture-watcher", daemon=True)
        self._thread.start()
        log.info("watching %s (stable %.2f s, rescan %.1f s, %s)", self.capture_dir, self.stable_seconds,
                 self.rescan_seconds, "watchdog events" if self._observer is not None else
                 "polling every %.2f s" % self.poll_seconds)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop watching; returns False when the thread did not end within ``timeout`` (a blocked on_ready)."""
        self._stopping.set()
        self._wake.set()
        self._stop_observer(timeout)
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("capture watcher thread still busy after %.1f s (on_ready is blocking)", timeout)
            return False
        return True

    def scan_now(self) -> None:
        """Wake the watcher up: a full scan runs soon (from the watcher thread)."""
        with self._lock:
            self._full_scan_requested = True
        self._wake.set()

    def forget(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Forget that ``path`` was handed out, so it is offered again although unchanged.

        For a consumer that could not take the file (its ``on_ready`` failed). The file becomes a candidate
        again at the next periodic full rescan (``rescan_seconds``, or ``poll_seconds`` when polling), not
        at once, so a persistent failure is retried at that pace rather than in a tight loop. Safe to call
        from any thread, including from inside ``on_ready``.
        """
        name = os.path.basename(os.path.normpath(os.fspath(path)))
        if name:
            with self._lock:
                self._forgotten.add(name)

    def pending(self) -> int:
        """Number of files seen but not handed out yet (waiting to become stable)."""
        with self._lock:
            return len(self._candidates)

    @property
    def watching_events(self) -> bool:
        """True while a watchdog observer delivers wake-up events (False = polling only)."""
        obs = self._observer
        return obs is not None and obs.is_alive()

    # ------------------------------------------------------------------ observer
    def _start_observer(self) -> None:
        if not self.use_watchdog or self._observer is not None:
            return
        if not self.capture_dir.is_dir():
            return
        try:
            from watchdog.observers import Observer
        except Exception as exc:  # not installed or broken: polling still works
            log.info("watchdog unavailable (%s); polling %s every %.2f s", exc, self.capture_dir,
                     self.poll_seconds)
            self.use_watchdog = False
            return
        observer = Observer()
        observer.daemon = True
        try:
            observer.schedule(_EventHandler(self), str(self.capture_dir), recursive=False)
            observer.start()
        except Exception as exc:  # e.g. inotify watch limit reached
            log.warning("cannot watch %s for events (%s); polling every %.2f s instead", self.capture_dir, exc,
                        self.poll_seconds)
            try:
                observer.stop()
            except Exception:
                pass
            return
        self._observer = observer

    def _stop_observer(self, timeout: float) -> None:
        observer, self._observer = self._observer, None
        if observer is None:
            return
        try:
            observer.stop()
            if observer.is_alive() and observer is not threading.current_thread():
                observer.join(timeout)
        except Exception:
            log.debug("stopping the watchdog observer failed", exc_info=True)

    def _on_event(self, event_type: str, paths: List[str]) -> None:
        """Called from the observer thread: remember what changed and wake the watcher up."""
        if event_type not in _WAKE_EVENTS:
            return
        now = time.monotonic()
        base = os.path.normpath(str(self.capture_dir))
        with self._lock:
            for p in paths:
                if not p:
                    continue
                p = os.path.normpath(p)
                if p == base:
                    continue
                if os.path.dirname(p) != base:
                    continue
                name = os.path.basename(p)
                self._dirty.add(name)
                if event_type == "closed":
                    self._closed_at[name] = now
                else:
                    self._closed_at.pop(name, None)
            self._event_pending = True
        self._wake.set()

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._cycle()
            except Exception:
                log.exception("capture watcher: unexpected error; continuing")
                self._stopping.wait(_ERROR_BACKOFF_S)
        log.debug("capture watcher thread ends")

    def _cycle(self) -> None:
        """One scan (when due), hand out what is ready, then sleep until the next thing to do."""
        now = time.monotonic()
        if self._observer is None and self.use_watchdog:
            self._start_observer()     # the folder may have appeared since
        elif self._observer is not None and not self._observer.is_alive():
            log.warning("watchdog observer for %s died; polling every %.2f s", self.capture_dir,
                        self.poll_seconds)
            self._observer = None
            self.use_watchdog = False
        period = self.rescan_seconds if self._observer is not None else self.poll_seconds
        with self._lock:
            full = self._full_scan_requested or now - self._last_full_scan >= period
            event_due = self._event_pending and now - self._last_scan >= _EVENT_SCAN_GAP_S
            recheck_due = self._next_candidate_deadline(now) <= now
            if full or event_due or recheck_due:
                dirty, self._dirty = self._dirty, set()
                self._full_scan_requested = False
                self._event_pending = False
            else:
                dirty = set()
        if full or event_due or recheck_due:
            self._last_scan = now
            if full:
                self._last_full_scan = now
            ready = self._scan(full, dirty)
            self._hand_out(ready)
        if self._stopping.is_set():
            return
        self._sleep(period)

    def _sleep(self, period: float) -> None:
        now = time.monotonic()
        with self._lock:
            deadline = min(self._last_full_scan + period, self._next_candidate_deadline(now))
            if self._event_pending:
                deadline = min(deadline, self._last_scan + _EVENT_SCAN_GAP_S)
            if self._full_scan_requested:
                deadline = now
        timeout = max(0.0, deadline - now)
        if timeout > 0:
            self._wake.wait(timeout)
        self._wake.clear()

    def _next_candidate_deadline(self, now: float) -> float:
        """Monotonic time at which the earliest candidate may be ready (caller holds _lock)."""
        best = float("inf")
        for name, cand in self._candidates.items():
            due = cand.since + max(self.stable_seconds, _MIN_RECHECK_S)
            closed = self._closed_at.get(name)
            if closed is not None:
                due = min(due, max(cand.since, closed) + max(self.close_recheck_seconds, _MIN_RECHECK_S))
            best = min(best, due)
        return best

    # ------------------------------------------------------------------ scanning
    def _scan(self, full: bool, dirty: Set[str]) -> List[Tuple[float, str, Identity]]:
        """Update candidates from the folder; return the ready ones as (mtime, name, identity)."""
        try:
            entries = list(os.scandir(str(self.capture_dir)))
        except FileNotFoundError:
            if not self._missing_logged:
                log.warning("capture folder %s does not exist (yet); waiting for it", self.capture_dir)
                self._missing_logged = True
            self._forget_missing(set())
            return []
        except OSError as exc:
            log.error("cannot list the capture folder %s: %s", self.capture_dir, exc)
            return []
        self._missing_logged = False
        if full:
            self._apply_forgotten()
        now = time.monotonic()
        present = set()  # type: Set[str]
        ready = []  # type: List[Tuple[float, str, Identity]]
        for entry in entries:
            name = entry.name
            present.add(name)
            if not self._wanted_name(name):
                continue
            known = name in self._handed or name in self._noted or name in self._rejected
            if not (full or name in dirty or name in self._candidates or not known):
                continue
            info = self._inspect(entry)
            if info is None:
                with self._lock:
                    self._candidates.pop(name, None)
                continue
            sig, mtime = info
            if self._handed.get(name) == sig:
                with self._lock:
                    self._candidates.pop(name, None)
                continue
            if (name, sig) in self._gone:      # moved away and back unchanged: already handed out
                del self._gone[(name, sig)]
                self._handed[name] = sig
                continue
            with self._lock:
                cand = self._candidates.get(name)
                if cand is None or cand.sig != sig:
                    closed = self._closed_at.get(name)
                    if cand is not None and closed is not None and closed <= cand.checked:
                        # written again after the close we saw (a writer reopening the file): wait again
                        del self._closed_at[name]
                    self._candidates[name] = cand = _Candidate(sig, now, mtime)
                    log.debug("candidate %r: %d bytes", name, sig[0])
                cand.checked = now
                if self._is_ready(name, cand, now):
                    ready.append((cand.mtime, name, sig))
        self._forget_missing(present)
        ready.sort()
        return ready

    def _apply_forgotten(self) -> None:
        """Drop the hand-out memory of names passed to :meth:`forget` (watcher thread, full scans only)."""
        with self._lock:
            names, self._forgotten = self._forgotten, set()
        for name in names:
            self._handed.pop(name, None)
            for key in [k for k in self._gone if k[0] == name]:
                del self._gone[key]
            log.debug("offering %r again (forgotten by the consumer)", name)

    def _is_ready(self, name: str, cand: _Candidate, now: float) -> bool:
        """Caller holds _lock."""
        if now - cand.since >= self.stable_seconds and now > cand.since:
            return True
        closed = self._closed_at.get(name)
        if closed is None:
            return False
        after = max(cand.since, closed)
        return now - after >= self.close_recheck_seconds and now > after

    def _wanted_name(self, name: str) -> bool:
        lower = name.lower()
        for pattern in self.ignore:
            if fnmatch.fnmatchcase(lower, pattern):
                self._note(name, "ignored name (pattern %s)" % pattern)
                return False
        if lower.endswith(self.extensions):
            return True
        if self.dicom and (lower.endswith(DICOM_EXTENSION) or _no_extension(name)):
            return True
        self._note(name, "not an image extension")
        return False

    def _note(self, name: str, why: str) -> None:
        """Log once (debug) that an entry is skipped."""
        if self._noted.get(name) != why:
            self._noted[name] = why
            log.debug("capture watcher skips %r: %s", name, why)

    def _inspect(self, entry: "os.DirEntry[str]") -> Optional[Tuple[Identity, float]]:
        """(size, mtime_ns), mtime of a regular file (or a symlink to one inside the folder); None to skip."""
        name = entry.name
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._note(name, "cannot stat: %s" % exc)
            return None
        if stat.S_ISLNK(st.st_mode):
            st = self._inspect_symlink(entry)
            if st is None:
                return None
        if not stat.S_ISREG(st.st_mode):
            self._note(name, _kind(st.st_mode))
            return None
        self._noted.pop(name, None)
        return (int(st.st_size), int(st.st_mtime_ns)), float(st.st_mtime)

    def _inspect_symlink(self, entry: "os.DirEntry[str]") -> Optional[os.stat_result]:
        name = entry.name
        try:
            target = os.readlink(entry.path)
        except OSError:
            target = "?"
        root = os.path.realpath(str(self.capture_dir))
        real = os.path.realpath(entry.path)
        inside = real != root and os.path.commonpath([root, real]) == root
        if not inside:
            self._reject(entry, target, "symlink resolves outside the capture folder (-> %s)" % target)
            return None
        try:
            st = os.stat(entry.path)
        except OSError as exc:
            self._note(name, "dangling symlink -> %s (%s)" % (target, exc))
            return None
        self._rejected.pop(name, None)
        return st

    def _reject(self, entry: "os.DirEntry[str]", target: str, reason: str) -> None:
        name = entry.name
        key = "%s\0%s" % (target, reason)
        if self._rejected.get(name) == key:
            return
        self._rejected[name] = key
        log.warning("capture watcher rejects %r: %s", name, reason)
        if self.on_rejected is None:
            return
        try:
            self.on_rejected(Path(entry.path), reason)
        except Exception:
            log.exception("on_rejected(%r) failed", name)

    def _forget_missing(self, present: Set[str]) -> None:
        """Drop state of entries that are gone; remember handed identities for a while."""
        for name in [n for n in self._handed if n not in present]:
            self._gone[(name, self._handed.pop(name))] = None
            while len(self._gone) > _GONE_MEMORY:
                self._gone.popitem(last=False)
        for table in (self._noted, self._rejected):
            for name in [n for n in table if n not in present]:
                del table[name]
        with self._lock:
            for name in [n for n in self._candidates if n not in present]:
                del self._candidates[name]
            for name in [n for n in self._closed_at if n not in present and n not in self._dirty]:
                del self._closed_at[name]

    # ------------------------------------------------------------------ hand-out
    def _hand_out(self, ready: List[Tuple[float, str, Identity]]) -> None:
        for _mtime, name, sig in ready:
            if self._stopping.is_set():
                return
            path = self.capture_dir / name
            try:
                st = os.stat(str(path))
            except OSError:
                with self._lock:
                    self._candidates.pop(name, None)
                continue
            if not stat.S_ISREG(st.st_mode) or (int(st.st_size), int(st.st_mtime_ns)) != sig:
                continue          # changed at the last moment: the next check starts its clock again
            with self._lock:
                self._candidates.pop(name, None)
                self._closed_at.pop(name, None)
            self._handed[name] = sig
            if self.dicom and _no_extension(name) and not has_dicom_preamble(str(path)):
                self._note(name, "no extension and not a DICOM file")
                continue
            log.debug("ready: %r (%d bytes)", name, sig[0])
            try:
                self.on_ready(path)
            except Exception:
                log.exception("on_ready(%r) failed; the file is offered again only if it changes, after "
                              "forget() or after a restart", name)


def _no_extension(name: str) -> bool:
    """No file-name extension, or only a number (a DICOM file named by its UID: ``1.2.840.1234``)."""
    ext = os.path.splitext(name)[1]
    return ext == "" or ext[1:].isdigit()


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory (only top-level files are ingested)"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "not a regular file"


class _EventHandler(object):
    """Minimal watchdog event handler (watchdog 3.x .. 7.x call ``dispatch(event)``)."""

    def __init__(self, watcher: CaptureWatcher) -> None:
        self.watcher = watcher

    def dispatch(self, event: Any) -> None:
        try:
            paths = [os.fsdecode(event.src_path)]
            dest = getattr(event, "dest_path", None)
            if dest:
                paths.append(os.fsdecode(dest))
            self.watcher._on_event(str(event.event_type), paths)
        except Exception:
            log.debug("ignoring a watchdog event that could not be handled", exc_info=True)
