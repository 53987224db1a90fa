"""HTML pages and result files: dashboard, results, result detail, failures, upload; safe file serving."""
from __future__ import annotations

import re

import pytest
from web_fakes import add_result


def test_dashboard_shows_runtime_simulator_warning_model_health_queue_and_latency(client, daemon):
    daemon.state.update(queued=4, processed=17, failed=2, throughput_ipm=6.5)
    html = client.get("/").get_data(as_text=True)
    assert 'id="sim-warning"' in html and "Simulated ACL runtime: inference runs on the CPU." in html
    assert "Ascend310 (simulated)" in html
    assert "vessel-unet" in html and "1.0.0" in html
    assert re.search(r'data-bind="queued">4<', html)
    assert re.search(r'data-bind="processed">17<', html)
    assert re.search(r'data-bind="throughput">6.5<', html)
    assert "execute" in html and "41.0" in html
    assert "<dt>processed</dt><dd>7</dd>" in html     # last-hour counts


def test_dashboard_on_the_real_npu_has_no_simulator_warning(client, daemon):
    daemon.state.update(runtime="acl", runtime_info={"runtime": "acl", "soc": "Ascend310"})
    html = client.get("/").get_data(as_text=True)
    assert 'id="sim-warning"' not in html
    assert "Ascend NPU" in html


def test_dashboard_lists_the_newest_results_as_thumbnails(client, daemon):
    rid = add_result(daemon, source="left_eye.jpg")
    daemon.journal.upsert("00000000000000cc", source="waiting.jpg", state="queued")
    html = client.get("/").get_data(as_text=True)
    assert 'src="/results/{}/thumb.jpg"'.format(rid) in html
    assert "left_eye.jpg" in html and "waiting.jpg" in html
    assert html.index("waiting.jpg") < html.index("left_eye.jpg")


def test_dashboard_still_renders_when_the_daemon_status_fails(client, daemon):
    daemon.status = lambda: 1 / 0
    resp = client.get("/")
    assert resp.status_code == 200
    assert b"status is not available" in resp.data


def test_pages_load_scripts_and_styles_only_from_the_app_itself(client, daemon):
    rid = add_result(daemon)
    for url in ("/", "/results", "/results/" + rid, "/failures", "/upload"):
        html = client.get(url).get_data(as_text=True)
        assert "<script>" not in html and "<style" not in html and " style=" not in html, url
        for src in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert src.startswith("/"), (url, src)


def test_static_assets_are_served(client):
    for name in ("app.css", "common.js", "dashboard.js", "result.js", "upload.js", "favicon.svg"):
        resp = client.get("/static/" + name)
        assert resp.status_code == 200 and len(resp.data) > 100, name


def test_result_page_shows_images_side_by_side_with_overlay_control_zoom_metrics_timings_downloads(client, daemon):
    rid = add_result(daemon, source="right_eye.jpg")
    html = client.get("/results/" + rid).get_data(as_text=True)
    for name in ("probability.png", "mask.png", "overlay.png"):
        assert 'src="/results/{}/{}"'.format(rid, name) in html
    assert 'id="opacity"' in html and 'type="range"' in html
    assert 'data-zoom="in"' in html and 'data-zoom="1"' in html
    assert "12.30 %" in html            # vessel density in the FOV
    assert "execute" in html and "30.0" in html and "42.7" in html
    for name in ("probability.bin", "probability.png", "mask.png", "overlay.png", "thumb.jpg", "result.json"):
        assert 'href="/results/{}/{}?download=1"'.format(rid, name) in html


def test_result_page_uses_the_input_preview_when_the_store_provides_one(client, daemon):
    rid = add_result(daemon)
    preview = daemon.results.results_dir / rid / "input.jpg"
    preview.write_bytes(daemon.results.file_path(rid, "thumb.jpg").read_bytes())
    real_file_path = daemon.results.file_path
    daemon.results.file_path = lambda i, n: preview if n == "input.jpg" else real_file_path(i, n)
    html = client.get("/results/" + rid).get_data(as_text=True)
    assert 'src="/results/{}/input.jpg"'.format(rid) in html
    assert client.get("/results/{}/input.jpg".format(rid)).mimetype == "image/jpeg"


def test_result_page_of_a_queued_capture_says_it_will_update(client, daemon):
    daemon.journal.upsert("00000000000000dd", source="wait.jpg", state="queued")
    html = client.get("/results/00000000000000dd").get_data(as_text=True)
    assert "The page updates when it is done" in html and 'id="viewer"' not in html


def test_result_page_of_a_failed_capture_shows_the_reason(client, daemon):
    daemon.add_failed("00000000000000ee", "bad.jpg", "image too dark")
    html = client.get("/results/00000000000000ee").get_data(as_text=True)
    assert "Processing failed: image too dark" in html


@pytest.mark.parametrize("url", ["/results/0123456789abcdef", "/results/xyz", "/results/0123456789ABCDEF",
                                 "/nowhere"])
def test_unknown_pages_are_a_friendly_404_page_without_internals(client, url):
    resp = client.get(url)
    assert resp.status_code == 404
    assert resp.mimetype == "text/html"
    assert b"Traceback" not in resp.data and b"werkzeug" not in resp.data.lower()


def test_results_list_page_paginates(client, daemon):
    for i in range(5):
        daemon.journal.upsert("%016x" % i, source="img%d.jpg" % i, state="queued")
    html = client.get("/results?per_page=2").get_data(as_text=True)
    assert "img4.jpg" in html and "img3.jpg" in html and "img2.jpg" not in html
    assert 'href="/results?page=2&amp;per_page=2"' in html
    assert client.get("/results?page=abc").status_code == 400


def test_failures_page_lists_quarantined_inputs_and_reasons(client, daemon):
    from vessel_seg.pipeline.store.quarantine import quarantine_file
    src = daemon.capture_dir / "blurred.jpg"
    src.write_bytes(b"x")
    quarantine_file(src, daemon.data_dir / "quarantine", "decode_error", "cannot identify image file")
    html = client.get("/failures").get_data(as_text=True)
    assert "blurred.jpg" in html and "decode_error" in html and "cannot identify image file" in html
    assert str(daemon.data_dir) not in html


def test_upload_page_has_a_file_field_named_image_and_states_the_limit(client):
    html = client.get("/upload").get_data(as_text=True)
    assert 'name="image"' in html and 'type="file"' in html and "up to 50 MiB" in html


# -- result files

def test_result_files_are_served_with_their_type(client, daemon):
    rid = add_result(daemon)
    expected = {"overlay.png": "image/png", "probability.png": "image/png", "mask.png": "image/png",
                "thumb.jpg": "image/jpeg", "result.json": "application/json"}
    for name, mimetype in expected.items():
        resp = client.get("/results/{}/{}".format(rid, name))
        assert resp.status_code == 200 and resp.mimetype == mimetype, name
        assert resp.data == daemon.results.file_path(rid, name).read_bytes()


def test_probability_bin_is_always_a_download_of_exactly_512x512_float32(client, daemon):
    rid = add_result(daemon)
    resp = client.get("/results/{}/probability.bin".format(rid))
    assert resp.status_code == 200 and len(resp.data) == 512 * 512 * 4
    assert resp.headers["Content-Disposition"].startswith("attachment")
    assert resp.mimetype == "application/octet-stream"


def test_download_links_force_an_attachment(client, daemon):
    rid = add_result(daemon)
    resp = client.get("/results/{}/mask.png?download=1".format(rid))
    assert resp.headers["Content-Disposition"] == "attachment; filename={}_mask.png".format(rid)


def test_result_files_support_conditional_requests(client, daemon):
    rid = add_result(daemon)
    first = client.get("/results/{}/thumb.jpg".format(rid))
    again = client.get("/results/{}/thumb.jpg".format(rid), headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("path", [
    "/results/{rid}/../../../etc/passwd",
    "/results/{rid}/..%2f..%2f..%2fetc%2fpasswd",
    "/results/{rid}/%2e%2e%2fresult.json",
    "/results/..%2f{rid}/mask.png",
    "/results/{rid}/mask.png%00.txt",
    "/results/{rid}/input.png",
    "/results/{rid}/MASK.PNG",
    "/results/{rid}/journal.sqlite3",
    "/results/{rid}/",
    "/results/{rid}x/mask.png",
    "/results/0000000000000000/mask.png",
    "/static/../web/app.py",
    "/static/%2e%2e/app.py",
])
def test_traversal_bad_ids_and_unknown_file_names_are_404(client, daemon, path):
    rid = add_result(daemon)
    resp = client.get(path.format(rid=rid))
    assert resp.status_code == 404
    assert b"root:" not in resp.data and b"import" not in resp.data


def test_result_page_says_when_a_frame_ran_at_a_high_resolution_working_size_in_tiles(client, daemon):
    tiled = add_result(daemon, source="camera8mp.jpg", extra_meta={
        "working_size": [1024, 1024], "tiles": {"count": 4, "origins": [[0, 0], [0, 512], [512, 0], [512, 512]]}})
    plain = add_result(daemon, source="drive.jpg", seed=1, extra_meta={
        "working_size": [512, 512], "tiles": {"count": 1, "origins": [[0, 0]]}})
    assert "1024 × 1024 px, 4 tiles" in client.get("/results/" + tiled).get_data(as_text=True)
    assert "Working size" not in client.get("/results/" + plain).get_data(as_text=True)
