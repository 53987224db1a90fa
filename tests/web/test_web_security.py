"""Access token, security headers, error handling without stack traces, app factory contract."""
from __future__ import annotations

import io

import pytest
from web_fakes import FakeDaemon, add_result, image_bytes

from vessel_seg.web import create_app
from vessel_seg.web.auth import COOKIE_NAME, safe_next

TOKEN = "s3cret-token"


@pytest.fixture
def locked(daemon):
    return create_app(daemon, {"token": TOKEN}).test_client()


PROTECTED = ["/", "/results", "/failures", "/upload", "/api/status", "/api/results", "/api/failures",
             "/metrics", "/results/0123456789abcdef", "/api/results/0123456789abcdef"]


@pytest.mark.parametrize("url", PROTECTED)
def test_with_a_token_every_page_and_api_call_needs_it(locked, url):
    resp = locked.get(url)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_api_401_is_json_and_page_401_is_a_login_form(locked):
    assert locked.get("/api/status").is_json
    html = locked.get("/").get_data(as_text=True)
    assert 'name="token"' in html and 'action="/login"' in html


def test_result_files_need_the_token_too(daemon):
    rid = add_result(daemon)
    client = create_app(daemon, {"token": TOKEN}).test_client()
    assert client.get("/results/{}/probability.bin".format(rid)).status_code == 401


def test_a_bearer_token_opens_the_api(locked):
    resp = locked.get("/api/status", headers={"Authorization": "Bearer " + TOKEN})
    assert resp.status_code == 200 and resp.get_json()["health"] == "ok"


@pytest.mark.parametrize("header", ["Bearer wrong", "Bearer " + TOKEN + "x", "Basic " + TOKEN, "Bearer"])
def test_a_wrong_token_is_401(locked, header):
    assert locked.get("/api/status", headers={"Authorization": header}).status_code == 401


def test_token_query_login_sets_an_httponly_strict_cookie_and_drops_the_token_from_the_url(locked):
    resp = locked.get("/results?page=2&token=" + TOKEN)
    assert resp.status_code == 303
    assert resp.headers["Location"].endswith("/results?page=2")
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(COOKIE_NAME + "=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    assert locked.get("/results?page=2").status_code == 200
    assert locked.get("/api/status").status_code == 200


def test_a_wrong_token_query_is_401_and_sets_no_cookie(locked):
    resp = locked.get("/?token=nope")
    assert resp.status_code == 401 and "Set-Cookie" not in resp.headers


def test_a_forged_cookie_is_401(locked):
    for value in (TOKEN, "0" * 64, ""):
        resp = locked.get("/api/status", headers={"Cookie": "{}={}".format(COOKIE_NAME, value)})
        assert resp.status_code == 401


def test_the_login_form_accepts_the_right_token_and_redirects_to_a_local_page(locked):
    resp = locked.post("/login", data={"token": TOKEN, "next": "/failures"}, headers={"Origin": "http://localhost"})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/failures")
    assert locked.get("/failures").status_code == 200


def test_the_login_form_refuses_a_wrong_token_and_cross_site_posts(locked):
    assert locked.post("/login", data={"token": "x"}, headers={"Origin": "http://localhost"}).status_code == 401
    assert locked.post("/login", data={"token": TOKEN},
                       headers={"Origin": "http://evil.example"}).status_code == 403


@pytest.mark.parametrize("target,expected", [("/failures", "/failures"), ("//evil.example/", "/"),
                                             ("http://evil.example/", "/"), ("/\\evil.example", "/"),
                                             (None, "/"), ("/a\nb", "/")])
def test_login_never_redirects_off_site(target, expected):
    assert safe_next(target) == expected


def test_healthz_and_static_stay_open_with_a_token(locked):
    assert locked.get("/healthz").status_code == 200
    assert locked.get("/static/app.css").status_code == 200


def test_uploads_with_the_bearer_token_need_no_origin(locked, daemon):
    resp = locked.post("/api/upload", data={"image": (io.BytesIO(image_bytes("PNG")), "a.png")},
                       headers={"Authorization": "Bearer " + TOKEN}, content_type="multipart/form-data")
    assert resp.status_code == 202


def test_logout_forgets_the_session(locked):
    locked.get("/?token=" + TOKEN)
    assert locked.get("/").status_code == 200
    locked.post("/logout", headers={"Origin": "http://localhost"})
    assert locked.get("/").status_code == 401


def test_without_a_token_login_just_redirects_home(client):
    resp = client.get("/login")
    assert resp.status_code == 303


# -- headers

@pytest.mark.parametrize("url", ["/", "/api/status", "/healthz", "/metrics", "/nowhere", "/static/app.css"])
def test_security_headers_are_on_every_response(client, url):
    h = client.get(url).headers
    csp = h["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "img-src 'self' data: blob:" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["X-Frame-Options"] == "DENY"
    assert h["Referrer-Policy"] == "no-referrer"


def test_dynamic_answers_are_not_cached_and_static_assets_briefly(client, daemon):
    rid = add_result(daemon)
    assert client.get("/api/status").headers["Cache-Control"] == "no-store"
    assert client.get("/").headers["Cache-Control"] == "no-store"
    assert "max-age=300" in client.get("/static/app.css").headers["Cache-Control"]
    assert client.get("/results/{}/mask.png".format(rid)).headers["Cache-Control"] == "private, no-cache"


# -- errors

def test_an_unexpected_exception_is_a_generic_500_without_stack_trace(daemon, caplog):
    def explode(offset, limit):
        raise RuntimeError("secret internal detail")
    daemon.results.list = explode
    client = create_app(daemon, {}).test_client()
    page = client.get("/")
    api = client.get("/api/results")
    assert page.status_code == 500 and page.mimetype == "text/html"
    assert api.status_code == 500 and api.is_json
    for resp in (page, api):
        assert b"secret internal detail" not in resp.data and b"Traceback" not in resp.data
    assert "secret internal detail" in caplog.text


def test_405_on_pages_is_html_and_on_the_api_json(client):
    assert client.post("/").status_code == 405
    assert client.delete("/api/status").is_json


def test_the_app_is_not_in_debug_mode(app):
    assert app.debug is False
    assert app.config["PROPAGATE_EXCEPTIONS"] is False


# -- factory

def test_the_daemon_lives_on_the_app_so_two_apps_serve_two_daemons(tmp_path):
    one, two = FakeDaemon(tmp_path / "one"), FakeDaemon(tmp_path / "two")
    two.state["processed"] = 42
    a, b = create_app(one, {}).test_client(), create_app(two, {}).test_client()
    assert a.get("/api/status").get_json()["processed"] == 0
    assert b.get("/api/status").get_json()["processed"] == 42


def test_create_app_refuses_an_object_without_the_daemon_contract():
    with pytest.raises(TypeError) as info:
        create_app(object(), {})
    assert "status" in str(info.value)


@pytest.mark.parametrize("config", [{"max_upload_bytes": 0}, {"token": 1234}])
def test_create_app_refuses_invalid_config(daemon, config):
    with pytest.raises(ValueError):
        create_app(daemon, config)


def test_blueprints_for_pages_and_api_are_registered(app):
    assert {"pages", "api"} <= set(app.blueprints)
    assert app.config["MAX_CONTENT_LENGTH"] == 50 * 1024 * 1024
