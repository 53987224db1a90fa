"""Production WSGI serving through waitress (pure Python; Python 3.7+ and aarch64)."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)

# Slack above MAX_CONTENT_LENGTH for multipart framing, so Flask (not waitress) answers 413 with a clear message.
_BODY_SLACK = 1024 * 1024


def serve(app: Flask, host: str, port: int, threads: int = 4) -> Any:
    """Create (not start) a waitress server for ``app``; call ``.run()`` (blocking, e.g. in a thread) and
    ``.close()`` to stop. ``port=0`` picks a free port; the bound port is ``server.effective_port``.
    """
    from waitress import create_server

    limit = int(app.config.get("MAX_CONTENT_LENGTH") or 0)
    kwargs = {"host": host, "port": int(port), "threads": int(threads), "ident": "vessel-seg",
              "clear_untrusted_proxy_headers": True}
    if limit:
        kwargs["max_request_body_size"] = limit + _BODY_SLACK
    server = create_server(app, **kwargs)
    log.info("serving the status page on http://%s:%s/ (%d threads)", host, getattr(server, "effective_port", port), threads)
    return server
