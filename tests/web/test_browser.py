"""Real-browser test: headless Chromium (Debian's /usr/bin/chromium, driven over the DevTools protocol with
the standard library only) loads the dashboard, uploads an image, lands on its result page, checks that every
image rendered and that the console stayed clean, and saves screenshots to artifacts/browser/.

Two servers: the web app around the FakeDaemon (served by waitress in a thread), and — once the daemon, its
journal and the capture watcher exist — the real daemon started as ``python -m pipeline.cli run --runtime sim``.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from web_fakes import FakeDaemon, add_result, fundus_like

from vessel_seg.web import create_app, serve

pytestmark = pytest.mark.browser

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARTIFACTS = os.path.join(ROOT, "artifacts", "browser")
CHROMIUM = "/usr/bin/chromium"

if not os.path.exists(CHROMIUM):
    pytest.skip("headless browser test needs {} (apt-get install -y chromium chromium-driver)".format(CHROMIUM),
                allow_module_level=True)

from cdp_client import Browser  # noqa: E402  (after the skip: no chromium, nothing to import for)


@pytest.fixture
def browser():
    b = Browser(1280, 900)
    yield b
    b.close()


@pytest.fixture
def upload_image(tmp_path):
    """A synthetic fundus the real pipeline can segment (camera.synthetic), else the simple fake one."""
    path = tmp_path / "browser_upload.png"
    try:
        from vessel_seg.camera.synthetic import write_fundus
    except ImportError:
        fundus_like(565, 584, seed=7).save(str(path), "PNG")
    else:
        write_fundus(str(path), 565, 584, seed=7)
    return str(path)


def _shot(browser, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    browser.screenshot(os.path.join(ARTIFACTS, name))


def upload_and_open_result(browser, base, image_path, label):
    """Upload through the page and wait until the upload page lands on the finished result page."""
    browser.navigate(base + "/upload")
    browser.set_file_input("#image", image_path)
    assert browser.evaluate("document.getElementById('file-name').textContent") == os.path.basename(image_path)
    browser.evaluate("document.getElementById('upload-button').click()")
    browser.wait_for("document.getElementById('upload-progress').value === 100", timeout=30)
    browser.wait_for("/^\\/results\\/[0-9a-f]{16}$/.test(location.pathname) && document.readyState === 'complete'"
                     " && !!document.getElementById('viewer')", timeout=120)
    browser.wait_for("Array.prototype.every.call(document.images, function (i) { return i.complete; })"
                     " && !!document.querySelector('#stack-stage canvas')", timeout=30)
    broken = browser.evaluate(
        "Array.prototype.filter.call(document.images, function (i) { return !(i.naturalWidth > 0); })"
        ".map(function (i) { return i.src; })")
    assert broken == [], "images that did not render: {}".format(broken)
    assert browser.evaluate("document.images.length") >= 5
    _shot(browser, label + "_result.png")


def check_result_controls(browser):
    """The opacity slider drives the mask layer; 1:1 zoom shows the image at full resolution."""
    browser.evaluate("var s = document.getElementById('opacity'); s.value = 30;"
                     " s.dispatchEvent(new Event('input'));")
    assert browser.evaluate("document.querySelector('#stack-stage canvas').style.opacity") == "0.3"
    assert browser.evaluate("document.getElementById('opacity-label').textContent") == "30 %"
    browser.evaluate("document.querySelector('[data-zoom=\"1\"]').click()")
    widths = browser.evaluate("[document.querySelector('.stage').getBoundingClientRect().width,"
                              " document.querySelector('img.zoomable').naturalWidth]")
    assert abs(widths[0] - widths[1]) < 1.5
    assert browser.evaluate("document.getElementById('zoom-label').textContent") == "100 %"


@pytest.fixture
def fake_server(tmp_path):
    daemon = FakeDaemon(tmp_path / "data", process_delay_s=0.3)
    server = serve(create_app(daemon, {}), "127.0.0.1", 0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield daemon, "http://127.0.0.1:{}".format(int(server.effective_port))
    server.close()
    thread.join(timeout=10)


def test_dashboard_upload_and_result_page_in_a_real_browser_against_the_fake_daemon(browser, fake_server,
                                                                                     upload_image):
    daemon, base = fake_server
    add_result(daemon, source="earlier_capture.jpg", image=fundus_like(400, 380, seed=3))
    browser.navigate(base + "/")
    browser.wait_for("document.querySelector('[data-bind=health]').textContent === 'ok'")
    assert browser.evaluate("document.querySelectorAll('.result-card img')[0].naturalWidth") > 0

    # the dashboard picks up new results and counters without a reload
    browser.evaluate("window.__noReload = true")
    add_result(daemon, source="new_while_watching.jpg", image=fundus_like(300, 300, seed=4))
    daemon.state["processed"] = 2
    browser.wait_for("document.body.textContent.indexOf('new_while_watching.jpg') >= 0"
                     " && document.querySelector('[data-bind=processed]').textContent === '2'", timeout=15)
    assert browser.evaluate("window.__noReload") is True
    _shot(browser, "fake_dashboard.png")

    upload_and_open_result(browser, base, upload_image, "fake")
    assert browser.evaluate("document.querySelector('.result-title').textContent") == "browser_upload.png"
    check_result_controls(browser)

    browser.set_viewport(800, 1100)   # tablet portrait
    browser.navigate(base + "/")
    browser.wait_for("document.querySelectorAll('.result-card').length >= 3")
    _shot(browser, "fake_dashboard_tablet.png")
    browser.drain_events()
    assert browser.console_errors() == []


# -- against the real daemon (once pipeline/daemon.py exists)

def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait_healthy(url, proc, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


@pytest.fixture
def real_daemon(tmp_path):
    port = _free_port()
    log_path = tmp_path / "daemon.log"
    with open(str(log_path), "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "vessel_seg", "run", "--data-dir", str(tmp_path / "data"),
                                 "--runtime", "sim", "--port", str(port)], cwd=str(tmp_path), stdout=log,
                                stderr=subprocess.STDOUT)
    base = "http://127.0.0.1:{}".format(port)
    try:
        if not _wait_healthy(base, proc, 90):
            pytest.fail("daemon did not become healthy:\n" + log_path.read_text(errors="replace")[-3000:])
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def test_upload_through_the_page_against_the_real_daemon_on_the_simulator(browser, real_daemon, upload_image):
    browser.navigate(real_daemon + "/")
    browser.wait_for("document.querySelector('[data-bind=health]').textContent === 'ok'", timeout=30)
    assert browser.evaluate("!!document.getElementById('sim-warning')") is True
    _shot(browser, "daemon_dashboard.png")
    upload_and_open_result(browser, real_daemon, upload_image, "daemon")
    check_result_controls(browser)
    browser.drain_events()
    assert browser.console_errors() == []
