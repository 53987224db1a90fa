"""Production WSGI serving through waitress (pure Python; Python 3.7+ and aarch64)."""
from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)

# Slack above MAX_CONTENT_LENGTH for multipart framing, so Flask (not waitress) answers 413 with a clear message.
_BODY_SLACK = 1024 * 1024


class WebServer(object):
    """A waitress server with ``run()`` (blocking, e.g. in a thread) and a ``close()`` that makes run() return.

    waitress's own ``close()`` only closes the listening socket: its loop keeps running while a browser holds
    keep-alive connections open. Here close() asks the loop thread (through waitress's trigger) to close every
    channel, so run() returns promptly and the worker threads stop.
    """

    def __init__(self, server: Any) -> None:
        from waitress.trigger import trigger

        self._server = server
        # One socket: the server's own map; several (a host name resolving to IPv4 and IPv6): the shared map.
        self._map = getattr(server, "_map", None)
        if self._map is None:
            self._map = server.map
        self._trigger = next(ch for ch in self._map.values() if isinstance(ch, trigger))
        self._lock = threading.Lock()
        self._closed = False
        self._running = False

    @property
    def effective_port(self) -> int:
        """The bound TCP port (useful with port 0; the first one when the host has several addresses)."""
        if hasattr(self._server, "effective_port"):
            return int(self._server.effective_port)
        return int(self._server.effective_listen[0][1])

    @property
    def effective_host(self) -> str:
        """The bound address."""
        if hasattr(self._server, "effective_host"):
            return str(self._server.effective_host)
        return str(self._server.effective_listen[0][0])

    def run(self) -> None:
        """Serve until close() is called."""
        with self._lock:
            if self._closed:
                return
            self._running = True
        try:
            self._server.run()
        finally:
            with self._lock:
                self._running = False
            self._server.task_dispatcher.shutdown()

    def _close_all(self) -> None:
        for channel in list(self._map.values()):
            try:
                channel.close()
            except Exception:  # a channel that is already closing: nothing to do
                log.debug("closing a web channel failed", exc_info=True)

    def close(self) -> None:
        """Stop accepting connections, drop open ones and let run() return."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            running = self._running
        if running:
            self._trigger.pull_trigger(self._close_all)
        else:
            self._close_all()
            self._server.task_dispatcher.shutdown()


def serve(app: Flask, host: str, port: int, threads: int = 4) -> WebServer:
    """Create (not start) a waitress server for ``app``; call ``.run()`` (blocking, e.g. in a thread) and
    ``.close()`` to stop. ``port=0`` picks a free port; the bound port is ``server.effective_port``.
    """
    from waitress import create_server

    limit = int(app.config.get("MAX_CONTENT_LENGTH") or 0)
    kwargs = {"host": host, "port": int(port), "threads": int(threads), "ident": "vessel-seg",
              "clear_untrusted_proxy_headers": True}
    if limit:
        kwargs["max_request_body_size"] = limit + _BODY_SLACK
    server = WebServer(create_server(app, **kwargs))
    log.info("serving the status page on http://%s:%s/ (%d threads)", host, server.effective_port, threads)
    return server
