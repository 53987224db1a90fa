"""Uploads: POST /api/upload and the /upload form — content-checked, size-limited, same-origin only."""
from __future__ import annotations

import io

import pytest
from web_fakes import image_bytes

from vessel_seg.pipeline.appliance.uploads import UploadRejected, sniff_format, upload_name, verify_image
from vessel_seg.web import create_app
from vessel_seg.web.presenters import human_size

SAME_ORIGIN = {"Origin": "http://localhost"}


def post_image(client, data, filename="eye.png", headers=None, field="image", content_type=None):
    files = {field: (io.BytesIO(data), filename) if content_type is None
             else (io.BytesIO(data), filename, content_type)}
    return client.post("/api/upload", data=files, headers=headers if headers is not None else SAME_ORIGIN,
                       content_type="multipart/form-data")


@pytest.mark.parametrize("fmt,ext", [("PNG", ".png"), ("JPEG", ".jpg"), ("TIFF", ".tif"), ("BMP", ".bmp"),
                                     ("PPM", ".ppm"), ("WEBP", ".webp")])
def test_a_valid_image_is_handed_to_the_daemon_and_answered_202_with_its_id(client, daemon, fmt, ext):
    data = image_bytes(fmt)
    resp = post_image(client, data, filename="scan" + ext)
    assert resp.status_code == 202
    body = resp.get_json()
    assert body["id"] == daemon.uploads[0]["id"]
    assert body["status_url"] == "/api/results/" + body["id"]
    assert body["result_url"] == "/results/" + body["id"]
    assert daemon.uploads[0]["data"] == data
    assert daemon.uploads[0]["filename"] == "scan" + ext


def test_the_stored_name_gets_the_extension_of_the_detected_format_not_the_claimed_one(client, daemon):
    resp = post_image(client, image_bytes("JPEG"), filename="photo.png", content_type="image/png")
    assert resp.status_code == 202
    assert daemon.uploads[0]["filename"] == "photo.jpg"


def test_a_traversal_filename_is_reduced_to_a_safe_base_name(client, daemon):
    resp = post_image(client, image_bytes("PNG"), filename="../../etc/cron.d/evil.png")
    assert resp.status_code == 202
    assert daemon.uploads[0]["filename"] == "evil.png"
    assert daemon.uploads[0]["path"].parent == daemon.capture_dir


def test_a_missing_image_field_is_400(client, daemon):
    resp = post_image(client, image_bytes("PNG"), field="file")
    assert resp.status_code == 400
    assert "image" in resp.get_json()["error"]
    assert daemon.uploads == []


def test_an_empty_file_is_400(client, daemon):
    resp = post_image(client, b"")
    assert resp.status_code == 400 and "empty" in resp.get_json()["error"]


def test_a_non_image_with_an_image_name_and_content_type_is_415(client, daemon):
    resp = post_image(client, b"#!/bin/sh\nrm -rf /\n", filename="eye.jpg", content_type="image/jpeg")
    assert resp.status_code == 415
    assert "JPEG, PNG, TIFF, BMP, PPM or WebP" in resp.get_json()["error"]
    assert daemon.uploads == []


def test_a_gif_is_refused_as_unsupported(client):
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "GIF")
    assert post_image(client, buf.getvalue(), filename="eye.gif").status_code == 415


def test_a_truncated_image_with_valid_magic_is_422(client, daemon):
    data = image_bytes("PNG", width=200, height=200)
    resp = post_image(client, data[: len(data) // 2])
    assert resp.status_code == 422
    assert "damaged" in resp.get_json()["error"]
    assert daemon.uploads == []


def test_an_oversized_upload_is_413_json_and_never_reaches_the_daemon(daemon):
    client = create_app(daemon, {"max_upload_bytes": 2000}).test_client()
    resp = post_image(client, image_bytes("BMP", width=100, height=100))
    assert resp.status_code == 413
    assert resp.is_json and "limit" in resp.get_json()["error"]
    assert daemon.uploads == []


def test_a_cross_site_upload_is_403(client, daemon):
    resp = post_image(client, image_bytes("PNG"), headers={"Origin": "http://evil.example"})
    assert resp.status_code == 403 and "cross-origin" in resp.get_json()["error"]
    assert daemon.uploads == []


def test_a_foreign_referer_without_origin_is_403(client):
    resp = post_image(client, image_bytes("PNG"), headers={"Referer": "http://evil.example/page"})
    assert resp.status_code == 403


def test_an_upload_without_origin_referer_or_csrf_header_is_403(client):
    assert post_image(client, image_bytes("PNG"), headers={}).status_code == 403


@pytest.mark.parametrize("headers", [{"Referer": "http://localhost/upload"}, {"X-Requested-With": "curl"},
                                     {"Origin": "http://localhost:80"}])
def test_same_origin_referer_or_the_csrf_header_is_accepted(client, headers):
    assert post_image(client, image_bytes("PNG"), headers=headers).status_code == 202


def test_get_on_the_upload_api_is_405_json(client):
    resp = client.get("/api/upload")
    assert resp.status_code == 405 and resp.is_json
    assert "POST" in resp.headers["Allow"]


def test_a_daemon_refusal_is_a_clear_4xx_and_a_daemon_failure_a_503(client, daemon):
    daemon.upload_error = ValueError("capture folder is paused: disk full")
    resp = post_image(client, image_bytes("PNG"))
    assert resp.status_code == 400 and "disk full" in resp.get_json()["error"]
    daemon.upload_error = OSError(28, "No space left on device", "/data/capture/x")
    resp = post_image(client, image_bytes("PNG"))
    assert resp.status_code == 503 and b"/data/capture" not in resp.data


def test_an_accepted_upload_is_reported_queued_until_the_store_knows_it(client, daemon):
    daemon.journal_uploads = False
    rid = post_image(client, image_bytes("PNG")).get_json()["id"]
    body = client.get("/api/results/" + rid).get_json()
    assert (body["state"], body["source"]) == ("queued", "eye.png")
    assert client.get("/results/" + rid).status_code == 200


def test_an_accepted_upload_that_was_quarantined_is_reported_failed_with_the_reason(client, daemon):
    from vessel_seg.pipeline.store.quarantine import quarantine_file
    daemon.journal_uploads = False
    rid = post_image(client, image_bytes("PNG")).get_json()["id"]
    quarantine_file(daemon.uploads[0]["path"], daemon.data_dir / "quarantine", "no_fov",
                    "no field of view found", result_id=rid)
    body = client.get("/api/results/" + rid).get_json()
    assert body["state"] == "failed" and body["reason"] == "no_fov: no field of view found"


def test_the_html_form_upload_redirects_to_the_result_page(client, daemon):
    resp = client.post("/upload", data={"image": (io.BytesIO(image_bytes("PNG")), "eye.png")},
                       headers=SAME_ORIGIN, content_type="multipart/form-data")
    assert resp.status_code == 303
    assert resp.headers["Location"].endswith("/results/" + daemon.uploads[0]["id"])


def test_the_html_form_upload_of_a_non_image_shows_an_html_error(client):
    resp = client.post("/upload", data={"image": (io.BytesIO(b"plain text"), "eye.png")},
                       headers=SAME_ORIGIN, content_type="multipart/form-data")
    assert resp.status_code == 415
    assert resp.mimetype == "text/html" and b"Unsupported file type" in resp.data and b"expected a JPEG" in resp.data


# -- unit level

@pytest.mark.parametrize("raw,expected", [
    ("eye.png", "eye.png"), ("C:\\Users\\tech\\eye.PNG", "eye.png"), ("../../x.png", "x.png"),
    ("..png", "upload.png"), (".hidden.png", "hidden.png"), ("", "upload.png"), (None, "upload.png"),
    ("na\u00efve r\u00e9tine;rm -rf.png", "naive_retinerm_-rf.png"), ("a" * 300 + ".png", "a" * 96 + ".png"),
])
def test_the_stored_name_is_a_safe_base_name_with_the_detected_extension(raw, expected):
    assert upload_name(raw, sniff_format(image_bytes("PNG"))) == expected


@pytest.mark.parametrize("nbytes,text", [(52428800, "50 MiB"), (50000000, "50 MB"), (2000, "2000 bytes"),
                                         (1500000, "1.5 MB")])
def test_sizes_are_stated_in_the_unit_they_were_configured_in(nbytes, text):
    assert human_size(nbytes) == text


def test_verify_image_refuses_decompression_bombs(monkeypatch):
    from PIL import Image
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 120x100 = 12000 px is now a "bomb"
    for limit_hit in (image_bytes("PNG"), image_bytes("JPEG")):
        with pytest.raises(UploadRejected) as info:
            verify_image(limit_hit, max_pixels=10 ** 8)
        assert info.value.status == 422 and "too many pixels" in info.value.message


def test_verify_image_refuses_images_above_the_appliance_pixel_limit():
    with pytest.raises(UploadRejected) as info:
        verify_image(image_bytes("PNG"), max_pixels=100)
    assert info.value.status == 422 and "120x100" in info.value.message
