"""The Flask app factory: pages + JSON API blueprints, the daemon handed in, hardened defaults."""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from flask import Flask, Response, request

from vessel_seg.web import api, auth, pages
from vessel_seg.web.context import EXTENSION_KEY, WebState
from vessel_seg.web.errors import register_error_handlers
from vessel_seg.web.security import apply_security_headers

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # same default as config web.max_upload_bytes

REQUIRED_DAEMON_API = ("status", "submit_upload", "results")


def _web_config(config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    cfg = dict(config or {})
    limit = cfg.get("max_upload_bytes")
    cfg["max_upload_bytes"] = DEFAULT_MAX_UPLOAD_BYTES if limit is None else int(limit)
    if cfg["max_upload_bytes"] <= 0:
        raise ValueError("web config max_upload_bytes must be positive, got {}".format(limit))
    token = cfg.get("token")
    if token is not None and not isinstance(token, str):
        raise ValueError("web config token must be a string")
    cfg["token"] = token or None
    return cfg


def create_app(daemon: Any, config: Optional[Dict[str, Any]] = None) -> Flask:
    """Build the status-page app around ``daemon`` (see docs/ARCHITECTURE.md "Daemon state handed to the web").

    config keys: ``token`` (optional str: protects everything but /healthz and /static), ``max_upload_bytes``
    (default 50 MiB). The daemon is stored in ``app.extensions["vessel_seg"]``, never in a module global.
    """
    missing = [name for name in REQUIRED_DAEMON_API if not hasattr(daemon, name)]
    if missing:
        raise TypeError("daemon lacks {} (see docs/ARCHITECTURE.md)".format(", ".join(missing)))
    cfg = _web_config(config)
    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.config.update(
        MAX_CONTENT_LENGTH=cfg["max_upload_bytes"],
        DEBUG=False,
        PROPAGATE_EXCEPTIONS=False,
        TRAP_HTTP_EXCEPTIONS=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SEND_FILE_MAX_AGE_DEFAULT=300,
    )
    app.json.sort_keys = False  # keep the order the daemon chose (Flask 2.2+ JSON provider)
    app.extensions[EXTENSION_KEY] = WebState(daemon, cfg)

    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    register_error_handlers(app)
    app.before_request(auth.check_access)

    @app.after_request
    def _headers(response: Response) -> Response:
        return apply_security_headers(response, static=request.endpoint == "static")

    @app.context_processor
    def _template_globals() -> Dict[str, Any]:
        return {"auth_enabled": cfg["token"] is not None}

    log.info("web app created (token %s, upload limit %d bytes)",
             "enabled" if cfg["token"] else "disabled", cfg["max_upload_bytes"])
    return app
