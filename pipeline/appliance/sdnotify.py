"""systemd service notification (sd_notify protocol) without libsystemd.

The protocol is a datagram of ``KEY=VALUE`` lines sent to the AF_UNIX socket named
in ``$NOTIFY_SOCKET`` (an abstract socket when the name starts with ``@``).
Everything here is a silent no-op when the process is not started by systemd
with ``Type=notify``, and nothing ever raises on a failed send.

Typical daemon use::

    notifier = SystemdNotifier()
    ...                       # bring up device and model
    notifier.ready("ready: model vessel-unet on acl")
    pinger = WatchdogPinger(notifier, is_healthy=daemon.is_progressing, status_text=daemon.status_line)
    pinger.start()            # pings only while is_healthy(): a hung execute ends in a restart
    ...
    notifier.stopping(); pinger.stop()
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Callable, Mapping, Optional

log = logging.getLogger(__name__)

__all__ = ["SystemdNotifier", "WatchdogPinger"]

#: Period of STATUS= refreshes when systemd runs no watchdog for us.
DEFAULT_STATUS_PERIOD_S = 2.0
#: Longest a send may wait when the receiver's queue is full.
SEND_TIMEOUT_S = 0.5


def _socket_address(name: str) -> str:
    """Translate a NOTIFY_SOCKET value into an address for ``socket.sendto``."""
    if name.startswith("@"):
        return "\0" + name[1:]
    return name


def _clean_value(value: object) -> str:
    """One-line string for a notify field (newlines would start a new field)."""
    text = str(value)
    return text.replace("\r", " ").replace("\n", " ")


class SystemdNotifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET``; no-op when it is not set.

    ``env`` defaults to ``os.environ``; pass a mapping to override (tests).
    Thread-safe: a lock serialises sends on the one socket.
    """

    def __init__(self, env: Optional[Mapping[str, str]] = None) -> None:
        environ = os.environ if env is None else env
        name = environ.get("NOTIFY_SOCKET", "") or ""
        self._address = None  # type: Optional[str]
        if name.startswith("/") or (name.startswith("@") and len(name) > 1):
            self._address = _socket_address(name)
        elif name:
            log.warning("ignoring NOTIFY_SOCKET=%r: neither a path nor an abstract socket", name)
        self._watchdog_usec = environ.get("WATCHDOG_USEC", "")
        self._watchdog_pid = environ.get("WATCHDOG_PID", "")
        self._sock = None  # type: Optional[socket.socket]
        self._lock = threading.Lock()
        self._error_logged = False

    @property
    def enabled(self) -> bool:
        """True when a notification socket is configured."""
        return self._address is not None

    def watchdog_interval(self) -> Optional[float]:
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when no watchdog.

        Honours WATCHDOG_PID: the watchdog belongs to that process only.
        """
        if not self._watchdog_usec:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None
            except ValueError:
                log.warning("ignoring invalid WATCHDOG_PID=%r", self._watchdog_pid)
                return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            log.warning("ignoring invalid WATCHDOG_USEC=%r", self._watchdog_usec)
            return None
        if usec <= 0:
            return None
        return usec / 2.0 / 1e6

    def notify(self, **fields: object) -> bool:
        """Send ``KEY=VALUE`` fields in one datagram; returns True when it was sent."""
        if self._address is None or not fields:
            return False
        payload = "\n".join(
            "{}={}".format(key, _clean_value(value)) for key, value in fields.items()
        ).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    # Python sockets are close-on-exec. A short timeout rides out a
                    # momentarily full receive queue but never blocks the pipeline for long.
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.settimeout(SEND_TIMEOUT_S)
                self._sock.sendto(payload, self._address)
                return True
            except OSError as exc:
                if not self._error_logged:
                    log.warning("sd_notify to %r failed: %s (further failures logged at debug level)",
                                self._address.replace("\0", "@"), exc)
                    self._error_logged = True
                else:
                    log.debug("sd_notify failed: %s", exc)
                self._drop_socket()
                return False

    def ready(self, status: Optional[str] = None) -> bool:
        """READY=1 (startup finished), optionally with a STATUS= line."""
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """STATUS=<text>, shown by ``systemctl status``."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """WATCHDOG=1 keep-alive ping."""
        return self.notify(WATCHDOG=1)

    def stopping(self, status: Optional[str] = None) -> bool:
        """STOPPING=1 (shutdown began)."""
        if status is None:
            return self.notify(STOPPING=1)
        return self.notify(STOPPING=1, STATUS=status)

    def reloading(self, status: Optional[str] = None) -> bool:
        """RELOADING=1 (configuration reload began; send ready() when done)."""
        if status is None:
            return self.notify(RELOADING=1)
        return self.notify(RELOADING=1, STATUS=status)

    def close(self) -> None:
        """Close the socket (a later send reopens it)."""
        with self._lock:
            self._drop_socket()

    def _drop_socket(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None


class WatchdogPinger:
    """Background thread: WATCHDOG=1 every interval while ``is_healthy()``; STATUS= on change.

    A ping is sent only when ``is_healthy()`` returns True at that moment, so a hung
    pipeline stops the pings and systemd's watchdog restarts the service. Without a
    systemd watchdog the thread still refreshes STATUS= every ``status_period_s``.
    Exceptions from the callbacks count as unhealthy / no status; they never kill the thread.
    """

    def __init__(
        self,
        notifier: SystemdNotifier,
        is_healthy: Callable[[], bool],
        status_text: Callable[[], str],
        interval: Optional[float] = None,
        status_period_s: float = DEFAULT_STATUS_PERIOD_S,
    ) -> None:
        self._notifier = notifier
        self._is_healthy = is_healthy
        self._status_text = status_text
        watchdog = notifier.watchdog_interval() if interval is None else interval
        self.watchdog_enabled = watchdog is not None and watchdog > 0
        self.period = watchdog if self.watchdog_enabled else status_period_s  # type: float
        self.pings = 0
        self.skipped = 0
        self._last_status = None  # type: Optional[str]
        self._was_healthy = True
        self._stop = threading.Event()
        self._thread = None  # type: Optional[threading.Thread]

    def start(self) -> "WatchdogPinger":
        """Start the thread (once); a no-op when the notifier is disabled."""
        if self._thread is not None or not self._notifier.enabled:
            return self
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def tick(self) -> None:
        """One round: refresh STATUS= if changed, then ping if healthy (called by the thread)."""
        try:
            text = self._status_text()
        except Exception:  # noqa: BLE001 - a status callback must not stop the watchdog thread
            log.exception("status_text callback failed")
            text = None
        if text is not None and text != self._last_status:
            if self._notifier.status(text):
                self._last_status = text
        if not self.watchdog_enabled:
            return
        try:
            healthy = bool(self._is_healthy())
        except Exception:  # noqa: BLE001 - treat a failing health callback as unhealthy
            log.exception("is_healthy callback failed; withholding watchdog ping")
            healthy = False
        if healthy:
            if self._notifier.watchdog():
                self.pings += 1
            if not self._was_healthy:
                log.info("pipeline healthy again; watchdog pings resumed")
        else:
            self.skipped += 1
            if self._was_healthy:
                log.warning("pipeline unhealthy; withholding watchdog pings (systemd will restart us)")
        self._was_healthy = healthy

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.period)
