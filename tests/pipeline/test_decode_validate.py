"""Decode/validate stage: every odd input is converted or rejected with a precise reason, before decoding."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from vessel_seg.pipeline.engine import decode
from vessel_seg.pipeline.engine.decode import DecodeError, decode_image

LIMITS = dict(max_bytes=10 * 1024 * 1024, max_pixels=5000000)


def _rgb(w=64, h=48):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 4 % 256, yy * 5 % 256, (xx + yy) % 256], axis=2).astype(np.uint8)


def _save(tmp_path, name, img, **kw):
    p = tmp_path / name
    img.save(str(p), **kw)
    return p


def _reason(path, **limits):
    args = dict(LIMITS)
    args.update(limits)
    with pytest.raises(DecodeError) as ei:
        decode_image(path, **args)
    return ei.value.reason


def test_plain_rgb_png_round_trips(tmp_path):
    rgb = _rgb()
    out = decode_image(_save(tmp_path, "a.png", Image.fromarray(rgb)), **LIMITS)
    assert out.rgb.dtype == np.uint8 and out.rgb.shape == (48, 64, 3)
    assert np.array_equal(out.rgb, rgb) and out.size == (64, 48) and out.notes == []


def test_zero_byte_file_is_empty(tmp_path):
    p = tmp_path / "z.jpg"
    p.write_bytes(b"")
    assert _reason(p) == decode.EMPTY


def test_non_image_is_rejected_by_content_not_extension(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is a text file, not a png")
    assert _reason(p) == decode.NOT_AN_IMAGE


def test_truncated_jpeg_is_rejected(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb(256, 256)).save(buf, format="JPEG", quality=95)
    p = tmp_path / "t.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert _reason(p) == decode.TRUNCATED


def test_truncated_png_is_rejected(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb(256, 256)).save(buf, format="PNG")
    p = tmp_path / "t.png"
    p.write_bytes(buf.getvalue()[:200])
    assert _reason(p) == decode.TRUNCATED


def test_file_over_max_bytes_is_rejected_without_decoding(tmp_path):
    p = _save(tmp_path, "big.png", Image.fromarray(_rgb()))
    assert _reason(p, max_bytes=100) == decode.TOO_LARGE


def _png_header_only(width, height):
    """A PNG whose header declares a huge image (a decompression bomb) with a tiny IDAT."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + chunk(b"IEND", b""))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_rejected_from_the_header_before_decoding(tmp_path, monkeypatch):
    from PIL import ImageFile

    loads = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(1))
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(10000, 10000))     # 100 Mpixel declared, a few bytes of data
    assert _reason(p) == decode.TOO_MANY_PIXELS
    assert loads == []


def test_pillow_bomb_guard_maps_to_the_same_reason(tmp_path):
    p = tmp_path / "huge.png"
    p.write_bytes(_png_header_only(60000, 60000))
    assert _reason(p, max_pixels=10 ** 12) == decode.TOO_MANY_PIXELS


def test_image_over_max_pixels_is_rejected(tmp_path):
    p = _save(tmp_path, "m.png", Image.fromarray(_rgb(100, 100)))
    assert _reason(p, max_pixels=9999) == decode.TOO_MANY_PIXELS


def test_tiny_image_is_rejected(tmp_path):
    p = _save(tmp_path, "tiny.png", Image.fromarray(_rgb(8, 8)))
    assert _reason(p) == decode.TOO_SMALL


def test_16_bit_gray_is_scaled_to_8_bit(tmp_path):
    arr = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 20).astype(np.uint16)
    p = _save(tmp_path, "g16.png", Image.fromarray(arr))
    out = decode_image(p, **LIMITS)
    expected = np.clip(arr.astype(np.float64) * 255.0 / 65535.0 + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(out.rgb[:, :, 0], expected) and np.array_equal(out.rgb[:, :, 2], expected)
    assert any("8-bit" in n for n in out.notes)


def test_cmyk_jpeg_is_converted(tmp_path):
    p = _save(tmp_path, "c.jpg", Image.fromarray(_rgb()).convert("CMYK"), quality=95)
    out = decode_image(p, **LIMITS)
    assert out.mode == "CMYK" and out.rgb.shape == (48, 64, 3)


def test_grayscale_and_palette_become_rgb(tmp_path):
    g = decode_image(_save(tmp_path, "g.png", Image.fromarray(_rgb()).convert("L")), **LIMITS)
    assert np.array_equal(g.rgb[:, :, 0], g.rgb[:, :, 1])
    pal = decode_image(_save(tmp_path, "p.png", Image.fromarray(_rgb()).convert("P")), **LIMITS)
    assert pal.mode == "P" and pal.rgb.shape == (48, 64, 3)


def test_alpha_is_composited_over_black(tmp_path):
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :32, 3] = 255       # left half opaque, right half transparent
    out = decode_image(_save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA")), **LIMITS)
    assert out.rgb[0, 0, 0] == 200 and out.rgb[0, 63, 0] == 0


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(_rgb(64, 48))
    exif = img.getexif()
    exif[0x0112] = 6            # rotate 90 degrees clockwise for display
    p = _save(tmp_path, "r.jpg", img, exif=exif.tobytes(), quality=95)
    out = decode_image(p, **LIMITS)
    assert out.size == (48, 64)
    assert any("EXIF" in n for n in out.notes)


def test_multi_frame_uses_the_first_frame(tmp_path):
    frames = [Image.fromarray(_rgb()), Image.fromarray(255 - _rgb())]
    p = tmp_path / "pages.tif"
    frames[0].save(str(p), save_all=True, append_images=frames[1:])
    out = decode_image(p, **LIMITS)
    assert out.rgb.shape == (48, 64, 3) and any("first frame" in n for n in out.notes)


def test_missing_file_is_unreadable(tmp_path):
    assert _reason(tmp_path / "gone.png") == decode.UNREADABLE


def test_an_image_format_no_camera_writes_is_refused_even_if_pillow_could_read_it(tmp_path):
    p = tmp_path / "scan.png"
    Image.fromarray(_rgb()).save(str(p), format="GIF")     # readable by Pillow, but not a camera format
    assert _reason(p) == decode.NOT_AN_IMAGE
