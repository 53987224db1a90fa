"""Error handlers: JSON errors under /api/ (and the other machine endpoints), HTML pages elsewhere.

Nothing here ever shows a stack trace: unexpected exceptions are logged and answered with a generic 500.
"""
from __future__ import annotations

import logging
from typing import Tuple

from flask import Flask, Response, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

from vessel_seg.web.presenters import human_size

log = logging.getLogger(__name__)

JSON_PREFIXES = ("/api/", "/healthz", "/metrics")

_FRIENDLY = {
    400: "The request was not understood.",
    401: "An access token is required.",
    403: "This request is not allowed.",
    404: "There is nothing here.",
    405: "This method is not allowed here.",
    413: "The upload is larger than this appliance accepts.",
    415: "This file type is not supported.",
    422: "The file could not be processed.",
    500: "Something went wrong on the appliance. The error was logged.",
    503: "The service is not available right now.",
}


_TITLES = {
    400: "Bad request", 401: "Sign-in required", 403: "Not allowed", 404: "Not found",
    405: "Method not allowed", 413: "Upload too large", 415: "Unsupported file type", 422: "Unreadable image",
    500: "Internal error", 503: "Service unavailable",
}


def wants_json() -> bool:
    """True for the machine-facing endpoints, whose errors are JSON."""
    return request.path.startswith(JSON_PREFIXES)


def json_error(status: int, message: str) -> Response:
    """A JSON error response ``{"error": message, "status": status}``."""
    resp = jsonify({"error": message, "status": status})
    resp.status_code = status
    return resp


def error_response(status: int, message: str) -> Response:
    """JSON or HTML error response depending on the request path."""
    if wants_json():
        return json_error(status, message)
    html = render_template("error.html", code=status, message=message,
                           title=_TITLES.get(status, "Error"))
    return current_app.make_response((html, status))


def _message_for(exc: HTTPException) -> str:
    code = exc.code or 500
    if code == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        if limit:
            return "upload too large: the limit is {}".format(human_size(int(limit)))
    return _FRIENDLY.get(code, exc.name)


def handle_http_exception(exc: HTTPException) -> Tuple[Response, int]:
    """All HTTP errors (404, 405, 413, ...) through the same renderer; keeps Allow/WWW-Authenticate headers."""
    code = exc.code or 500
    resp = error_response(code, _message_for(exc))
    if code == 405 and exc.get_response().headers.get("Allow"):
        resp.headers["Allow"] = exc.get_response().headers["Allow"]
    return resp, code


def handle_unexpected(exc: Exception) -> Tuple[Response, int]:
    """Log the traceback server-side, answer a generic 500."""
    if isinstance(exc, HTTPException):
        return handle_http_exception(exc)
    original = getattr(exc, "original_exception", None) if isinstance(exc, InternalServerError) else exc
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=original or exc)
    return error_response(500, _FRIENDLY[500]), 500


def register_error_handlers(app: Flask) -> None:
    """Install the handlers on the app."""
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
