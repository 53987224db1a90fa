"""web.serve: the production server (waitress) runs the app in a thread and stops on close()."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from vessel_seg.web import create_app, serve


@pytest.fixture
def served(daemon):
    server = serve(create_app(daemon, {"max_upload_bytes": 10000}), "127.0.0.1", 0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield "http://127.0.0.1:{}".format(int(server.effective_port))
    server.close()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_serve_answers_over_http_through_waitress(served):
    with urllib.request.urlopen(served + "/api/status", timeout=10) as resp:
        assert resp.status == 200
        assert json.loads(resp.read().decode())["runtime"] == "sim"
        assert resp.headers["Server"] == "vessel-seg"


def test_an_oversized_upload_over_http_is_413_json(served, daemon):
    body = b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n" + \
        b"\x89PNG\r\n\x1a\n" + b"0" * 50000 + b"\r\n--b--\r\n"
    req = urllib.request.Request(served + "/api/upload", data=body, method="POST", headers={
        "Content-Type": "multipart/form-data; boundary=b", "X-Requested-With": "test"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 413
    assert "limit" in json.loads(info.value.read().decode())["error"]
    assert daemon.uploads == []


def test_a_server_error_page_over_http_has_no_stack_trace(served, daemon):
    daemon.results.list = lambda offset, limit: 1 / 0
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(served + "/", timeout=10)
    assert info.value.code == 500
    text = info.value.read().decode()
    assert "ZeroDivisionError" not in text and "Traceback" not in text


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status


def test_close_makes_run_return_even_with_a_keep_alive_connection_open(daemon):
    import http.client
    import time
    server = serve(create_app(daemon, {}), "127.0.0.1", 0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
    conn.request("GET", "/healthz")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200 and not resp.will_close       # the connection stays open (keep-alive)
    started = time.time()
    server.close()
    thread.join(timeout=5)
    assert not thread.is_alive() and time.time() - started < 5
    conn.close()


def test_close_before_run_means_run_returns_at_once(daemon):
    server = serve(create_app(daemon, {}), "127.0.0.1", 0)
    server.close()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_a_server_listening_on_several_sockets_serves_each_and_closes_cleanly(daemon):
    from waitress import create_server

    from vessel_seg.web.server import WebServer
    server = WebServer(create_server(create_app(daemon, {}), listen="127.0.0.1:0 127.0.0.1:0",
                                       clear_untrusted_proxy_headers=True))
    ports = [int(port) for _, port in server._server.effective_listen]
    assert server.effective_port == ports[0]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for port in ports:
            assert _get("http://127.0.0.1:{}/healthz".format(port)) == 200
    finally:
        server.close()
        thread.join(timeout=5)
    assert not thread.is_alive()
