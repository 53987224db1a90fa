"""AIPP config parsing and the integer NV12 -> RGB conversion against an independent float implementation."""
from __future__ import annotations

import numpy as np
import pytest

from vessel_seg.device.aipp import AippError, aipp_nv12_to_nchw, default_aipp_cfg_text, parse_aipp_cfg


def float_ycbcr_to_rgb(nv12: np.ndarray, h: int, w: int, nv21: bool = False) -> np.ndarray:
    """Independent reference: JPEG full-range YCbCr -> RGB in float, rounded, clipped; (3, H, W) float64."""
    y = nv12[:h].astype(np.float64)
    uv = nv12[h:].reshape(h // 2, w // 2, 2).astype(np.float64)
    cb, cr = (uv[..., 1], uv[..., 0]) if nv21 else (uv[..., 0], uv[..., 1])
    cb = np.kron(cb, np.ones((2, 2)))
    cr = np.kron(cr, np.ones((2, 2)))
    r = y + 1.402 * (cr - 128)
    g = y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)
    b = y + 1.772 * (cb - 128)
    return np.clip(np.stack([r, g, b]), 0, 255)


def random_nv12(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h * 3 // 2, w), dtype=np.uint8)


def test_default_config_is_the_jpeg_full_range_rgb_set():
    cfg = parse_aipp_cfg(default_aipp_cfg_text(512, 512))
    assert cfg.input_format == "YUV420SP_U8" and (cfg.src_w, cfg.src_h) == (512, 512)
    assert cfg.csc_switch and not cfg.rbuv_swap
    assert cfg.matrix == ((256, 0, 359), (256, -88, -183), (256, 454, 0))
    assert cfg.input_bias == (0, 128, 128)
    assert cfg.var_reci == (0.00392156862745098,) * 3
    assert cfg.nv12_shape == (768, 512) and cfg.nbytes == 512 * 512 * 3 // 2


def test_integer_csc_matches_float_jpeg_formula_within_two_lsb():
    h, w = 48, 64
    nv12 = random_nv12(h, w)
    cfg = parse_aipp_cfg(default_aipp_cfg_text(w, h))
    out = aipp_nv12_to_nchw(nv12, cfg, "fp32")
    assert out.shape == (1, 3, h, w) and out.dtype == np.float32
    ref = float_ycbcr_to_rgb(nv12, h, w)
    diff = np.abs(out[0].astype(np.float64) * 255.0 - ref)
    assert diff.max() <= 2.0
    assert diff.mean() < 0.75  # floor (>> 8) biases down by about half an LSB, not more


def test_csc_floors_and_clamps_exactly_like_the_integer_formula():
    # one 2x2 block: Y = 10, U = 200, V = 30 -> R = (2560 + 359 * -98) >> 8 = -128 -> clamped to 0,
    # G = (2560 - 88 * 72 - 183 * -98) >> 8 = 14158 >> 8 = 55, B = (2560 + 454 * 72) >> 8 = 35248 >> 8 = 137
    # (137.69 floors to 137; rounding would give 138)
    nv12 = np.array([[10, 10], [10, 10], [200, 30]], dtype=np.uint8)
    cfg = parse_aipp_cfg(default_aipp_cfg_text(2, 2).replace("0.00392156862745098", "1.0"))
    out = aipp_nv12_to_nchw(nv12, cfg, "fp32")
    assert out[0, :, 0, 0].tolist() == [0.0, 55.0, 137.0]
    assert np.all(out[0] == out[0, :, :1, :1])  # chroma replicated over the 2x2 block


def test_nv21_with_rbuv_swap_gives_the_same_rgb_as_nv12():
    h, w = 16, 16
    nv12 = random_nv12(h, w, seed=3)
    nv21 = nv12.copy()
    uv = nv21[h:].reshape(h // 2, w // 2, 2)
    uv[...] = uv[..., ::-1].copy()
    base = default_aipp_cfg_text(w, h)
    a = aipp_nv12_to_nchw(nv12, parse_aipp_cfg(base), "fp32")
    b = aipp_nv12_to_nchw(nv21, parse_aipp_cfg(base.replace("rbuv_swap_switch: false", "rbuv_swap_switch: true")),
                          "fp32")
    assert np.array_equal(a, b)
    assert np.abs(b[0] * 255.0 - float_ycbcr_to_rgb(nv21, h, w, nv21=True)).max() <= 2.0


def test_fp16_normalisation_is_fp16_and_close_to_fp32():
    nv12 = random_nv12(32, 32, seed=4)
    cfg = parse_aipp_cfg(default_aipp_cfg_text(32, 32))
    a16 = aipp_nv12_to_nchw(nv12, cfg, "fp16")
    a32 = aipp_nv12_to_nchw(nv12, cfg, "fp32")
    assert a16.dtype == np.float16 and a32.dtype == np.float32
    assert np.abs(a16.astype(np.float32) - a32).max() <= 1e-3  # fp16 spacing below 1.0 is <= 2**-11
    assert a32.min() >= 0.0 and a32.max() <= 1.0


def test_mean_and_min_are_subtracted_before_var_reci():
    text = default_aipp_cfg_text(2, 2).replace("mean_chn_0: 0", "mean_chn_0: 10").replace(
        "min_chn_0: 0.0", "min_chn_0: 5.5").replace("var_reci_chn_0: 0.00392156862745098", "var_reci_chn_0: 0.5")
    nv12 = np.array([[100, 100], [100, 100], [128, 128]], dtype=np.uint8)  # gray: R = G = B = 100
    out = aipp_nv12_to_nchw(nv12, parse_aipp_cfg(text), "fp32")
    assert out[0, 0, 0, 0] == pytest.approx((100 - 10 - 5.5) * 0.5)
    assert out[0, 1, 0, 0] == pytest.approx(100 / 255.0)


def test_comments_and_layout_are_free_form():
    text = "# header\naipp_op{input_format:YUV420SP_U8 # inline\n src_image_size_w : 4 src_image_size_h: 2}\n"
    cfg = parse_aipp_cfg(text)
    assert (cfg.src_w, cfg.src_h) == (4, 2) and not cfg.csc_switch


@pytest.mark.parametrize("text, message", [
    ("aipp_op { input_format: RGB888_U8 src_image_size_w: 4 src_image_size_h: 4 }", "RGB888_U8"),
    ("aipp_op { input_format: YUV420SP_U8 src_image_size_w: 5 src_image_size_h: 4 }", "even"),
    ("aipp_op { input_format: YUV420SP_U8 src_image_size_w: 4 }", "src_image_size_h"),
    ("aipp_op { src_image_size_w: 4 src_image_size_h: 4 }", "input_format is mandatory"),
    ("aipp_op { input_format: YUV420SP_U8 src_image_size_w: 4 src_image_size_h: 4 colour: 1 }", "unknown key"),
    ("aipp_op { input_format: YUV420SP_U8 src_image_size_w: 4 src_image_size_h: 4 crop: true }", "crop"),
    ("aipp_op { aipp_mode: dynamic input_format: YUV420SP_U8 }", "dynamic"),
    ("aipp_op { input_format: YUV420SP_U8 src_image_size_w: 4 src_image_size_h: 4 csc_switch: true }", "matrix"),
    ("aipp_op { input_format: YUV420SP_U8 src_image_size_w: 4 src_image_size_h: 4 csc_switch: maybe }",
     "true or false"),
    ("aipp_op { input_format: YUV420SP_U8 src_image_size_w: four src_image_size_h: 4 }", "integer"),
    ("aipp_op { input_format: YUV420SP_U8 src_image_size_w: 4 src_image_size_h: 4", "missing '}'"),
    ("", "no aipp_op"),
])
def test_invalid_configs_are_rejected_with_a_clear_message(text, message):
    with pytest.raises(AippError, match=message):
        parse_aipp_cfg(text)


def test_conversion_rejects_wrong_input_shape_or_dtype():
    cfg = parse_aipp_cfg(default_aipp_cfg_text(8, 8))
    with pytest.raises(ValueError, match="shape"):
        aipp_nv12_to_nchw(np.zeros((8, 8), np.uint8), cfg)
    with pytest.raises(ValueError, match="uint8"):
        aipp_nv12_to_nchw(np.zeros((12, 8), np.float32), cfg)
