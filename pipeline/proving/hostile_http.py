"""The web part of ``vessel-seg stress``: hostile HTTP against the live status page of the real daemon.

Only 127.0.0.1 is ever contacted. :func:`attack_cases` (traversal, uploads, tokens, malformed requests) each
with the status codes that are right; :func:`burst` (N requests from T threads); :func:`fuzz` (random paths,
query strings, methods and multipart bodies; property-based with hypothesis when it is installed, otherwise
a seeded random generator) checking the invariants: never a 5xx, JSON errors under /api/, nothing outside the
allow-list ever served, no forbidden content (journal, config, /etc/passwd, the secret sibling folder) in any
answer.
"""
from __future__ import annotations

import http.client
import json
import logging
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote, unquote

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


@dataclass
class Answer(object):
    status: int
    headers: Dict[str, str]
    body: bytes
    ms: float

    @property
    def is_json(self) -> bool:
        return self.headers.get("content-type", "").startswith("application/json")


class Http(object):
    """Tiny HTTP client for raw paths (nothing is normalised or re-encoded), one connection per request."""

    def __init__(self, port: int, token: Optional[str] = None, timeout: float = 15.0) -> None:
        self.port = port
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, headers: Optional[Dict[str, str]] = None, body: bytes = b"",
                auth: bool = True) -> Answer:
        hdrs = dict(headers or {})
        if auth and self.token and "Authorization" not in hdrs:
            hdrs["Authorization"] = "Bearer " + self.token
        conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
        t0 = time.perf_counter()
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in hdrs.items():
                conn.putheader(k, v)
            if body or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
            data = resp.read()
            return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data,
                          (time.perf_counter() - t0) * 1000.0)
        finally:
            conn.close()

    def raw(self, payload: bytes, read_timeout: float = 5.0) -> bytes:
        """Send raw bytes on a fresh socket; return whatever comes back (the status line, usually)."""
        s = socket.create_connection((HOST, self.port), timeout=read_timeout)
        try:
            s.sendall(payload)
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            chunks = []
            while True:
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    break
                if not data:
                    break
                chunks.append(data)
            return b"".join(chunks)
        finally:
            s.close()


def multipart(fields: Sequence[Tuple[str, str, bytes, str]], boundary: str = "stressBoundary7MA4YWxk"
              ) -> Tuple[bytes, str]:
    """(body, content type) for multipart/form-data; fields: (name, filename, data, content type)."""
    parts = []
    for name, filename, data, ctype in fields:
        head = 'Content-Disposition: form-data; name="%s"; filename="%s"\r\nContent-Type: %s\r\n\r\n' % (
            name, filename, ctype)
        parts.append(b"--" + boundary.encode() + b"\r\n" + head.encode("utf-8") + data + b"\r\n")
    body = b"".join(parts) + b"--" + boundary.encode() + b"--\r\n"
    return body, "multipart/form-data; boundary=" + boundary


# ------------------------------------------------------------------------------------------------ allow-list
_ID = r"[0-9a-f]{16}"
_FILES = r"(input\.jpg|overlay\.png|probability\.png|mask\.png|thumb\.jpg|fov\.png|result\.json|probability\.bin)"


def servable(path: str, static_names: Sequence[str]) -> bool:
    """True when a 2xx answer for ``path`` (decoded, without query) is allowed by the web's allow-list."""
    patterns = [r"/", r"/results", r"/results/%s" % _ID, r"/results/%s/%s" % (_ID, _FILES), r"/failures",
                r"/upload", r"/login", r"/logout", r"/api/status", r"/api/results", r"/api/results/%s" % _ID,
                r"/api/failures", r"/api/upload", r"/healthz", r"/metrics"]
    if any(re.fullmatch(p, path) for p in patterns):
        return True
    if path.startswith("/static/"):
        return path[len("/static/"):] in static_names
    return False


class Invariants(object):
    """What must hold for every answer (module docstring); collects violations."""

    def __init__(self, static_names: Sequence[str], forbidden: Sequence[bytes]) -> None:
        self.static_names = list(static_names)
        self.forbidden = [f for f in forbidden if f]
        self.violations: List[str] = []
        self.checked = 0
        self.statuses: Dict[int, int] = {}
        self._lock = threading.Lock()

    def check(self, method: str, path: str, ans: Answer) -> List[str]:
        problems = []
        bare = path.split("?", 1)[0]
        decoded = re.sub(r"/{2,}", "/", unquote(bare))      # the router matches "//results" as "/results"
        if ans.status >= 500:
            problems.append("%s %s -> %d" % (method, path[:120], ans.status))
        if decoded.startswith("/api/") and ans.status >= 400 and not ans.is_json:
            problems.append("%s %s -> %d is not JSON (%s)" % (method, path[:120], ans.status,
                                                             ans.headers.get("content-type")))
        serves = not (method == "OPTIONS" and not ans.body)   # Flask answers OPTIONS anywhere: Allow, no body
        if 200 <= ans.status < 300 and serves and not servable(decoded, self.static_names):
            problems.append("%s %s -> %d served a path outside the allow-list" % (method, path[:120], ans.status))
        for marker in self.forbidden:
            if marker in ans.body:
                problems.append("%s %s -> %d leaked forbidden content %r" % (method, path[:120], ans.status,
                                                                           marker[:20]))
        with self._lock:
            self.checked += 1
            self.statuses[ans.status] = self.statuses.get(ans.status, 0) + 1
            self.violations.extend(problems)
        return problems


# ------------------------------------------------------------------------------------------------ attack cases
@dataclass
class WebCase(object):
    name: str
    expect: Tuple[int, ...]
    got: Optional[int] = None
    ok: bool = False
    note: str = ""


def attack_cases(http: Http, inv: Invariants, result_id: Optional[str], good_png: bytes,
                 max_upload: int) -> List[WebCase]:
    """Traversal, token, upload and malformed-request cases; each answered with an expected status."""
    rid = result_id or "0123456789abcdef"
    cases: List[WebCase] = []

    def run(name: str, expect: Sequence[int], method: str, path: str, headers: Optional[Dict[str, str]] = None,
            body: bytes = b"", auth: bool = True, extra: Optional[Callable[[Answer], str]] = None) -> Answer:
        case = WebCase(name, tuple(expect))
        try:
            ans = http.request(method, path, headers, body, auth)
        except (OSError, http.client.HTTPException) as exc:
            case.note = "no answer: %s" % exc
            cases.append(case)
            return Answer(0, {}, b"", 0.0)
        case.got = ans.status
        problems = inv.check(method, path, ans)
        note = extra(ans) if extra else ""
        case.ok = ans.status in case.expect and not problems and not note
        case.note = "; ".join(problems + ([note] if note else []))
        cases.append(case)
        return ans

    # tokens
    run("status without token", [401], "GET", "/api/status", auth=False,
        extra=lambda a: "" if a.is_json else "401 under /api is not JSON")
    run("status with a wrong bearer token", [401], "GET", "/api/status", {"Authorization": "Bearer nope"})
    run("status with a malformed Authorization header", [401], "GET", "/api/status", {"Authorization": "Basic ???"})
    run("dashboard with a wrong ?token=", [401], "GET", "/?token=wrong", auth=False)
    run("result file without token", [401], "GET", "/results/%s/probability.bin" % rid, auth=False)
    run("healthz is open", [200, 503], "GET", "/healthz", auth=False)
    run("status with the token", [200], "GET", "/api/status",
        extra=lambda a: "" if "pipeline_state" in _json(a) else "no pipeline_state in /api/status")
    # traversal
    for path in ["/results/..%2f..%2fstate%2fjournal.sqlite3", "/results/%s/..%%2fresult.json" % rid,
                 "/results/%s/../../state/journal.sqlite3" % rid, "/results/%s/%%2e%%2e/%%2e%%2e/config" % rid,
                 "/static/../pipeline/config.py", "/static/..%2f..%2fconfig%2fvessel-seg.yaml",
                 "/static/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd", "/api/results/../../../etc/passwd",
                 "/results/%s/probability.bin%%00.png" % rid, "/results/%s/input.jpg/../../secret" % rid,
                 "/results/%s/" % rid.upper(), "/results/%s%%0a/result.json" % rid,
                 "/results/..%5c..%5cstate%5cjournal.sqlite3", "/%2e%2e/%2e%2e/etc/passwd"]:
        run("traversal " + path, [400, 404, 405, 308], "GET", path)
    # uploads
    hdr = {"X-Requested-With": "stress"}
    body, ctype = multipart([("image", "big.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * (max_upload + 4096), "image/png")])
    run("oversized upload", [413], "POST", "/api/upload", dict(hdr, **{"Content-Type": ctype}), body,
        extra=lambda a: "" if a.is_json else "413 is not JSON")
    body, ctype = multipart([("image", "tool.png", b"MZ\x90\x00 this is an executable" * 20, "image/png")])
    run("wrong-type upload (exe bytes named .png)", [415], "POST", "/api/upload",
        dict(hdr, **{"Content-Type": ctype}), body)
    body, ctype = multipart([("image", "half.png", good_png[: len(good_png) // 2], "image/png")])
    run("truncated PNG upload", [422], "POST", "/api/upload", dict(hdr, **{"Content-Type": ctype}), body)
    body, ctype = multipart([("image", "empty.png", b"", "image/png")])
    run("empty upload", [400], "POST", "/api/upload", dict(hdr, **{"Content-Type": ctype}), body)
    body, ctype = multipart([("other", "x.png", good_png, "image/png")])
    run("upload without the image field", [400], "POST", "/api/upload", dict(hdr, **{"Content-Type": ctype}), body)
    run("upload with a broken multipart body", [400], "POST", "/api/upload",
        dict(hdr, **{"Content-Type": "multipart/form-data; boundary=zzz"}), b"--zzz\r\ngarbage")
    body, ctype = multipart([("image", "x.png", good_png, "image/png")])
    run("cross-site upload (foreign Origin)", [403], "POST", "/api/upload",
        {"Content-Type": ctype, "Origin": "http://evil.example"}, body)
    run("upload without token", [401], "POST", "/api/upload", dict(hdr, **{"Content-Type": ctype}), body,
        auth=False)
    body, ctype = multipart([("image", "../../../../etc/cron.d/evil.png", good_png, "image/png")])
    run("valid upload with a traversal file name", [202], "POST", "/api/upload",
        dict(hdr, **{"Content-Type": ctype}), body,
        extra=lambda a: "" if re.fullmatch(_ID, str(_json(a).get("id", ""))) else "no result id in the answer")
    # malformed requests
    run("non-integer page", [400], "GET", "/api/results?page=abc")
    run("page out of range", [400], "GET", "/api/results?per_page=100000")
    run("offset together with page", [400], "GET", "/api/results?offset=1&page=2")
    run("invalid result id", [404], "GET", "/api/results/xyz")
    run("DELETE on the API", [405], "DELETE", "/api/status")
    run("PUT on a result", [405], "PUT", "/api/results/%s" % rid, body=b"{}")
    run("unknown API path", [404], "GET", "/api/nope", extra=lambda a: "" if a.is_json else "404 not JSON")
    run("8 KiB path", [404, 414, 431], "GET", "/results/" + "a" * 8192)
    run("bad percent-encoding", [400, 404], "GET", "/results/%zz%ff")
    run("header injection attempt", [200], "GET", "/api/status", {"X-Test": "a\tb"})
    for label, expect, payload in [
            ("garbage request line (any 4xx: waitress 2.x parses it as a method)", (400, 401, 404, 405),
             b"GARBAGE\r\n\r\n"),
            ("request line without a version (treated as HTTP/1.0, no token)", (401,), b"GET /\r\n\r\n"),
            ("300 KB header (answer or drop)", (400, 431, 0),
             b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300000 + b"\r\n\r\n"),
            ("Content-Length larger than the body, then EOF", (400, 0),
             b"POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\nshort")]:
        case = WebCase("raw: " + label, expect)
        try:
            reply = http.raw(payload)
        except OSError as exc:
            reply = b""
            case.note = "connection error %s" % exc
        m = re.match(br"HTTP/1\.[01] (\d{3})", reply)
        case.got = int(m.group(1)) if m else 0
        case.ok = case.got in case.expect and case.got < 500
        if not m:
            case.note = case.note or "connection closed without an answer"
        cases.append(case)
    run("still responsive after the attacks", [200, 503], "GET", "/healthz", auth=False)
    return cases


def _json(ans: Answer) -> Dict[str, Any]:
    try:
        data = json.loads(ans.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------------------------------------------------ burst
def burst(http: Http, inv: Invariants, paths: Sequence[str], n: int = 200, threads: int = 16
          ) -> Dict[str, Any]:
    """``n`` GET requests over ``threads`` threads; returns counts, errors and latency percentiles."""
    lock = threading.Lock()
    todo = list(range(n))
    out: Dict[str, Any] = {"ok": 0, "errors": [], "latencies": []}

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            path = paths[i % len(paths)]
            try:
                ans = http.request("GET", path)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    out["errors"].append("%s: %s" % (path, exc))
                continue
            problems = inv.check("GET", path, ans)
            with lock:
                out["latencies"].append(ans.ms)
                if ans.status == 200 and not problems:
                    out["ok"] += 1
                else:
                    out["errors"].append("%s -> %d %s" % (path, ans.status, "; ".join(problems)))

    ts = [threading.Thread(target=worker, name="stress-burst-%d" % k, daemon=True) for k in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    lat = sorted(out["latencies"])
    out["seconds"] = time.perf_counter() - t0
    out["p50_ms"] = lat[len(lat) // 2] if lat else None
    out["p95_ms"] = lat[int(len(lat) * 0.95) - 1] if lat else None
    out["max_ms"] = lat[-1] if lat else None
    del out["latencies"]
    return out


# ------------------------------------------------------------------------------------------------ fuzz
SEGMENTS = ["api", "results", "status", "failures", "upload", "static", "healthz", "metrics", "login", "..",
            "%2e%2e", "%2e%2e%2f", "..%2f", "%2f", "%5c", ".", "", "etc", "passwd", "state", "journal.sqlite3",
            "config", "vessel-seg.yaml", "result.json", "probability.bin", "thumb.jpg", "input.jpg", "%00",
            "%0a", "app.css", "favicon.svg", "secret", "secret.png", "~root", "%c0%ae%c0%ae", "%252e%252e"]
QUERY_KEYS = ["page", "per_page", "offset", "limit", "token", "download", "next", "id", "x"]
METHODS = ["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]


@dataclass
class FuzzRequest(object):
    method: str
    path: str
    body: bytes = b""
    headers: Dict[str, str] = field(default_factory=dict)
    auth: bool = True


def _build(method: str, segments: List[str], query: List[Tuple[str, str]], upload: Optional[Tuple[str, bytes]],
           auth: bool) -> FuzzRequest:
    path = "/" + "/".join(segments)
    if query:
        path += "?" + "&".join("%s=%s" % (quote(k, safe=""), quote(v, safe="")) for k, v in query)
    if upload is not None:
        body, ctype = multipart([("image", upload[0], upload[1], "application/octet-stream")])
        return FuzzRequest("POST", "/api/upload", body, {"Content-Type": ctype, "X-Requested-With": "fuzz"}, auth)
    return FuzzRequest(method, path, b"", {}, auth)


def random_requests(n: int, seed: int, result_ids: Sequence[str]) -> List[FuzzRequest]:
    """Seeded random requests (the fallback when hypothesis is not installed)."""
    rng = random.Random(seed)
    pool = SEGMENTS + list(result_ids)
    out = []
    for _ in range(n):
        segs = [rng.choice(pool) if rng.random() < 0.8 else quote(_rand_text(rng), safe="")
                for _ in range(rng.randint(0, 5))]
        query = [(rng.choice(QUERY_KEYS), _rand_text(rng)) for _ in range(rng.randint(0, 3))]
        upload = None
        if rng.random() < 0.15:
            upload = (_rand_text(rng) + rng.choice([".png", ".jpg", "", ".exe"]),
                      bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 2048))))
        out.append(_build(rng.choice(METHODS), segs, query, upload, rng.random() < 0.9))
    return out


def _rand_text(rng: random.Random) -> str:
    alphabet = "abc019-_./\\%?#&=;:@!$'()*+, \u00e9\u4e2d\U0001f600\x00\n"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def fuzz(http: Http, inv: Invariants, n: int, seed: int, result_ids: Sequence[str]) -> Dict[str, Any]:
    """Fuzz the live server with ``n`` requests; property-based (hypothesis) when available."""
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        for req in random_requests(n, seed, result_ids):
            _send(http, inv, req)
        return {"engine": "seeded random", "requests": n}
    return _fuzz_hypothesis(http, inv, n, seed, result_ids)


def _send(http: Http, inv: Invariants, req: FuzzRequest) -> List[str]:
    try:
        ans = http.request(req.method, req.path, req.headers, req.body, req.auth)
    except http.client.InvalidURL:
        return []                                   # the client refuses to send it: nothing reached the server
    except (OSError, http.client.HTTPException) as exc:
        problem = "%s %s: no answer (%s)" % (req.method, req.path[:120], exc)
        inv.violations.append(problem)
        return [problem]
    return inv.check(req.method, req.path, ans)


def _fuzz_hypothesis(http: Http, inv: Invariants, n: int, seed: int, result_ids: Sequence[str]
                     ) -> Dict[str, Any]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hyp_seed
    from hypothesis import strategies as st

    text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
    segment = st.one_of(st.sampled_from(SEGMENTS + list(result_ids)), text.map(lambda s: quote(s, safe="")))
    query = st.lists(st.tuples(st.sampled_from(QUERY_KEYS), text), max_size=3)
    upload = st.one_of(st.none(), st.tuples(text, st.binary(max_size=2048)))
    sent = {"n": 0}

    @hyp_seed(seed)
    @settings(max_examples=n, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(method=st.sampled_from(METHODS), segments=st.lists(segment, max_size=5), query=query,
           upload=upload, auth=st.sampled_from([True, True, True, False]))
    def prop(method: str, segments: List[str], query: List[Tuple[str, str]],
             upload: Optional[Tuple[str, bytes]], auth: bool) -> None:
        sent["n"] += 1
        problems = _send(http, inv, _build(method, segments, query, upload, auth))
        assert not problems, problems

    try:
        prop()
    except AssertionError:
        pass                                        # the violations are recorded in ``inv``
    return {"engine": "hypothesis", "requests": sent["n"]}
