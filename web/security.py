"""Security headers for a LAN appliance and the same-origin (CSRF) check for state-changing requests."""
from __future__ import annotations

from typing import Optional
from urllib.parse import urlsplit

from flask import Request, Response

CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

# Header a script (curl, the CLI) may send instead of Origin/Referer. Browsers cannot add a custom header to a
# cross-site request without a CORS preflight, which this app never approves, so its presence proves same-origin.
CSRF_HEADER = "X-Requested-With"


def apply_security_headers(response: Response, static: bool = False) -> Response:
    """Set CSP, nosniff, frame and referrer policies; no caching except for static assets and result files."""
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    if static:
        h["Cache-Control"] = "public, max-age=300"
    elif "Cache-Control" not in h:
        h["Cache-Control"] = "no-store"
    return response


def _normalise_host(scheme: str, netloc: str) -> str:
    netloc = netloc.lower()
    default = {"http": ":80", "https": ":443"}.get(scheme.lower())
    if default and netloc.endswith(default):
        netloc = netloc[: -len(default)]
    return netloc


def _origin_host(value: str) -> Optional[str]:
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return _normalise_host(parts.scheme, parts.netloc)


def same_origin_problem(request: Request) -> Optional[str]:
    """Return why a state-changing request is refused as cross-site, or None when it is acceptable.

    Accepted: an Origin header naming this host; without Origin, a Referer on this host; without either, the
    ``X-Requested-With`` header or an ``Authorization`` header (neither can be sent cross-site without CORS).
    A present but foreign Origin/Referer is always refused.
    """
    own = _normalise_host(request.scheme, request.host)
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null":
        return None if _origin_host(origin) == own else "cross-origin request refused (Origin does not match)"
    if origin == "null":
        return "cross-origin request refused (opaque Origin)"
    referer = request.headers.get("Referer")
    if referer:
        return None if _origin_host(referer) == own else "cross-origin request refused (Referer does not match)"
    if request.headers.get(CSRF_HEADER) or request.headers.get("Authorization"):
        return None
    return "request refused: send it from the status page, or add the header {}".format(CSRF_HEADER)
