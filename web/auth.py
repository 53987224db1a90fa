"""Optional access token (config ``token``).

When a token is configured it protects every page, API call, result file and /metrics. It is accepted as
``Authorization: Bearer <token>``, or via a login (``?token=<token>`` on any page, or the login form, which
POSTs to /login) that sets an HttpOnly, SameSite=Strict session cookie. The cookie carries an HMAC of the token,
never the token itself. Left open on purpose: ``/healthz`` (a liveness probe that reveals only ok/not-ok and a
reason) and ``/static/*`` (the CSS/JS of the login page; nothing patient-related).
Without a token the whole site is open: read-only pages plus upload.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Optional
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, redirect, render_template, request

from vessel_seg.web.context import app_config
from vessel_seg.web.errors import json_error, wants_json
from vessel_seg.web.security import same_origin_problem

log = logging.getLogger(__name__)

COOKIE_NAME = "vessel_seg_session"
COOKIE_MAX_AGE = 12 * 3600
OPEN_PATHS = ("/healthz",)

bp = Blueprint("auth", __name__)


def configured_token() -> Optional[str]:
    """The access token from the app config, or None when the site is open."""
    token = app_config().get("token")
    return str(token) if token else None


def _session_value(token: str) -> str:
    return hmac.new(token.encode("utf-8"), b"vessel-seg web session v1", hashlib.sha256).hexdigest()


def _matches(candidate: Optional[str], token: str) -> bool:
    if not candidate:
        return False
    return hmac.compare_digest(candidate.encode("utf-8"), token.encode("utf-8"))


def safe_next(target: Optional[str]) -> str:
    """A local path to go to after login; anything else (absolute URLs, //host, backslashes) becomes '/'."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(c) < 32 for c in target):
        return "/"
    return target


def _set_session_cookie(response: Response, token: str) -> Response:
    response.set_cookie(COOKIE_NAME, _session_value(token), max_age=COOKIE_MAX_AGE, httponly=True,
                        samesite="Strict", secure=request.is_secure, path="/")
    return response


def _unauthorized(message: str) -> Response:
    if wants_json():
        resp = json_error(401, message)
    else:
        resp = current_app.make_response((render_template(
            "login.html", message=message, next=safe_next(request.full_path.rstrip("?"))), 401))
    resp.headers["WWW-Authenticate"] = 'Bearer realm="vessel-seg"'
    return resp


def _url_without_token() -> str:
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
    return request.path + ("?" + urlencode(args) if args else "")


def check_access() -> Optional[Response]:
    """before_request hook: None to continue, or a 401/redirect response."""
    token = configured_token()
    if token is None or request.path in OPEN_PATHS or request.endpoint in ("static", "auth.login"):
        return None
    auth = request.headers.get("Authorization", "")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and _matches(value.strip(), token):
            return None
        return _unauthorized("invalid access token")
    if "token" in request.args:
        if not _matches(request.args.get("token"), token):
            return _unauthorized("invalid access token")
        if request.method in ("GET", "HEAD") and not wants_json():
            return _set_session_cookie(redirect(_url_without_token(), code=303), token)
        return None
    if _matches(request.cookies.get(COOKIE_NAME), _session_value(token)):
        return None
    return _unauthorized("access token required")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response:
    """Login form (GET) and token check (POST, same-origin only); sets the session cookie and redirects."""
    token = configured_token()
    target = safe_next(request.values.get("next"))
    if token is None:
        return redirect(target, code=303)
    if request.method == "GET":
        return current_app.make_response(render_template("login.html", message=None, next=target))
    problem = same_origin_problem(request)
    if problem:
        return current_app.make_response((render_template("login.html", message=problem, next=target), 403))
    if not _matches(request.form.get("token"), token):
        log.warning("failed login from %s", request.remote_addr)
        return current_app.make_response((render_template(
            "login.html", message="wrong access token", next=target), 401))
    return _set_session_cookie(redirect(target, code=303), token)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    """Forget the session cookie."""
    resp = redirect("/login" if configured_token() else "/", code=303)
    resp.delete_cookie(COOKIE_NAME, path="/")
    return resp
