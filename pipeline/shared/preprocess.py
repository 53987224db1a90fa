"""Field-of-view normalisation, colour normalisation and NV12 conversion.

Shared by the pipeline and by training, so the network always sees exactly what the appliance feeds it.

Steps (each a small function):
1. ``detect_fov``: the circular retina area, found as the largest bright component.
2. ``square_crop_geometry``: a square box around the FOV (plus a margin) that is scaled to the model size,
   so vessels have a consistent scale whatever the camera's resolution or black border.
3. ``crop_and_resize``: cut that box (padding with black where it leaves the image) and resize it.
4. ``normalise_colour``: the green channel (best vessel contrast), the area outside the FOV filled with a
   smooth extension of the retina (no artificial rim edge), then CLAHE. The result is gray, which makes
   the NV12 path lossless (U = V = 128) and the model indifferent to the camera's colour balance.
   With ``colour`` set (a bundle trained on colour), each of R, G and B is normalised that way instead,
   and the NV12 path carries the chroma at half resolution.
5. ``rgb_to_nv12``: full-range BT.601 (JPEG) YUV420SP, what AIPP's JPEG CSC matrix expects.
``restore_to_original`` maps the 512x512 probability back to the input's size.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

import cv2
import numpy as np

from vessel_seg.pipeline.shared.tiling import TileLayout, working_size

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreprocessParams:
    """Parameters of the preprocessing; a model bundle records the ones it was trained with."""

    size: int = 512
    fov_margin: float = 0.02
    clahe_clip: float = 2.0
    clahe_grid: int = 8
    colour: bool = False
    #: a larger working size for large fields of view, run as tiles of ``size`` (``shared.tiling``); 0: never
    hires_size: int = 0
    #: the FOV's square box, in original pixels, from which ``hires_size`` applies
    hires_from_px: int = 0
    #: the least overlap of neighbouring tiles, in model pixels
    tile_overlap: int = 0
    #: the binarisation threshold at ``hires_size`` (chosen on training images); 0: the bundle's threshold
    hires_threshold: float = 0.0

    @classmethod
    def from_mapping(cls, values: Optional[Mapping[str, Any]]) -> "PreprocessParams":
        """Build from a bundle's ``preprocess:`` mapping; unknown keys are an error."""
        if not values:
            return cls()
        known = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
        unknown = set(values) - known
        if unknown:
            raise ValueError("unknown preprocess parameter(s): %s" % ", ".join(sorted(unknown)))
        for k, v in values.items():
            if isinstance(getattr(cls(), k), bool) and not isinstance(v, bool):
                raise ValueError("preprocess parameter %s must be true or false, got %r" % (k, v))
        return cls(**{k: type(getattr(cls(), k))(v) for k, v in values.items()})

    def to_dict(self) -> Dict[str, Any]:
        """The bundle's ``preprocess:`` mapping (``colour`` only when set, so gray bundles read as before)."""
        out: Dict[str, Any] = {"size": self.size, "fov_margin": self.fov_margin,
                               "clahe_clip": self.clahe_clip, "clahe_grid": self.clahe_grid}
        if self.colour:
            out["colour"] = True
        if self.hires_size:
            out.update(hires_size=self.hires_size, hires_from_px=self.hires_from_px, tile_overlap=self.tile_overlap)
            if self.hires_threshold:
                out["hires_threshold"] = self.hires_threshold
        return out

    def working_size(self, fov_side_px: float) -> int:
        """The model-space size for a FOV box ``fov_side_px`` original pixels wide (``size`` or ``hires_size``)."""
        return working_size(self.size, self.hires_size, self.hires_from_px, fov_side_px)

    def tile_layout(self, work: int) -> TileLayout:
        """The tiles of ``size`` that cover a ``work``-sized model-space image."""
        return TileLayout(work=int(work), tile=self.size, min_overlap=self.tile_overlap)


@dataclass(frozen=True)
class Geometry:
    """How the original image maps onto the model input: a square box of ``side`` pixels at (x0, y0)."""

    width: int
    height: int
    x0: int
    y0: int
    side: int
    size: int

    def to_dict(self) -> Dict[str, int]:
        return {"width": self.width, "height": self.height, "x0": self.x0, "y0": self.y0,
                "side": self.side, "size": self.size}

    def scaled(self, factor: int, width: int, height: int) -> "Geometry":
        """This geometry of an image reduced ``factor`` times, on the full (``width`` x ``height``) image.

        Pixel i of the reduced image covers full-size pixels [i*factor, (i+1)*factor) (JPEG DCT scaling).
        """
        k = int(factor)
        return Geometry(width=int(width), height=int(height), x0=self.x0 * k, y0=self.y0 * k, side=self.side * k,
                        size=self.size)


@dataclass
class Preprocessed:
    """Output of ``preprocess``: the model-sized image and what is needed to map results back."""

    model_rgb: np.ndarray          # (size, size, 3) uint8: gray replicated in R, G, B (or colour, if set)
    fov: np.ndarray                # (size, size) bool, FOV at model scale
    fov_original: np.ndarray       # (H, W) bool, FOV at the size of the image given to ``preprocess``
    geometry: Geometry
    timings_ms: Dict[str, float] = field(default_factory=dict)
    #: the FOV as found (at most 256 px on a side, uint8 0/1); ``fov_from_small`` gives it at any size
    fov_small: Optional[np.ndarray] = None


def detect_fov_small(rgb: np.ndarray) -> np.ndarray:
    """The field of view on a small copy (longest side at most 256 px): uint8 0/1, the largest bright,
    hole-free component; all ones when no dark surround is found (an already cropped photograph)."""
    h, w = rgb.shape[:2]
    r, g, b = cv2.split(rgb)
    bright = cv2.max(cv2.max(r, g), b)
    small_scale = 256.0 / max(h, w)
    if small_scale < 1.0:
        small = cv2.resize(bright, (max(1, int(round(w * small_scale))), max(1, int(round(h * small_scale)))),
                           interpolation=cv2.INTER_AREA)
    else:
        small = bright
    small = cv2.GaussianBlur(small, (5, 5), 0)
    otsu, _ = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # The surround is near black; keep the threshold low so a dark retina periphery stays inside.
    thresh = float(np.clip(otsu * 0.5, 8.0, 40.0))
    mask = (small > thresh).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.ones(small.shape[:2], dtype=np.uint8)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    comp = (labels == largest).astype(np.uint8)
    # Fill holes (dark lesions, the macula in a dark image): flood the background from the border.
    padded = cv2.copyMakeBorder(comp, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = (flood == 0)[1:-1, 1:-1]
    comp = comp.astype(bool) | holes
    return cv2.morphologyEx(comp.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))


def fov_from_small(small: np.ndarray, width: int, height: int) -> np.ndarray:
    """The FOV of ``detect_fov_small`` at (``width``, ``height``): bool, bilinear upscale > 0; the whole image
    when that covers less than 5 % of it (no plausible FOV)."""
    comp = np.asarray(small) > 0
    if comp.all():
        return np.ones((height, width), dtype=bool)
    if comp.shape != (height, width):
        comp = cv2.resize(comp.astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR) > 0
    if comp.mean() < 0.05:
        log.warning("no plausible field of view found (%.1f%% of the image); using the whole image",
                    100.0 * comp.mean())
        return np.ones((height, width), dtype=bool)
    return comp


def detect_fov(rgb: np.ndarray) -> np.ndarray:
    """Return the field of view as a bool mask: the largest bright, hole-free component.

    Falls back to the whole image when no dark surround is found (an already cropped photograph).
    """
    h, w = rgb.shape[:2]
    return fov_from_small(detect_fov_small(rgb), w, h)


def square_crop_geometry(fov: np.ndarray, size: int, margin: float) -> Geometry:
    """A square box centred on the FOV's bounding box, ``margin`` (fraction of its side) on each side."""
    h, w = fov.shape
    bx, by, bw, bh = cv2.boundingRect(fov.astype(np.uint8))
    if bw == 0 or bh == 0:
        x_min, x_max, y_min, y_max = 0, w - 1, 0, h - 1
    else:
        x_min, x_max, y_min, y_max = bx, bx + bw - 1, by, by + bh - 1
    side = int(round(max(x_max - x_min + 1, y_max - y_min + 1) * (1.0 + 2.0 * margin)))
    side = max(side, 8)
    cx = (x_min + x_max + 1) / 2.0
    cy = (y_min + y_max + 1) / 2.0
    x0 = int(round(cx - side / 2.0))
    y0 = int(round(cy - side / 2.0))
    return Geometry(width=w, height=h, x0=x0, y0=y0, side=side, size=size)


def _crop_padded(image: np.ndarray, g: Geometry) -> np.ndarray:
    """Cut the geometry's square box out of ``image``, padding with zeros outside the image."""
    h, w = image.shape[:2]
    out_shape = (g.side, g.side) + image.shape[2:]
    out = np.zeros(out_shape, dtype=image.dtype)
    sx0, sy0 = max(g.x0, 0), max(g.y0, 0)
    sx1, sy1 = min(g.x0 + g.side, w), min(g.y0 + g.side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - g.y0:sy1 - g.y0, sx0 - g.x0:sx1 - g.x0] = image[sy0:sy1, sx0:sx1]
    return out


def crop_and_resize(image: np.ndarray, g: Geometry, nearest: bool = False) -> np.ndarray:
    """Map an original-size image (or mask) into model space."""
    crop = _crop_padded(image, g)
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if g.side > g.size else cv2.INTER_LINEAR
    return cv2.resize(crop, (g.size, g.size), interpolation=interp)


def map_mask(mask: np.ndarray, g: Geometry) -> np.ndarray:
    """Map an original-size bool/0-255 mask into model space (area-weighted, then >= 0.5)."""
    m = (np.asarray(mask) > 0).astype(np.float32)
    return crop_and_resize(m, g) >= 0.5


class _FillPlan(object):
    """What ``_fill_outside`` computes from the FOV alone: done once, used for every colour plane."""

    SIGMAS = (1.0, 3.0, 9.0, 25.0)

    def __init__(self, fov: np.ndarray, rim_px: int = 4) -> None:
        src = cv2.erode(fov.astype(np.uint8), np.ones((2 * rim_px + 1, 2 * rim_px + 1), np.uint8)).astype(bool)
        if not src.any():
            src = fov
        self.src = src
        self.src_f = src.astype(np.float32)
        h, w = src.shape
        self.shape = (h, w)
        self.small = (max(1, w // 4), max(1, h // 4))
        small_den = cv2.resize(self.src_f, self.small, interpolation=cv2.INTER_AREA)
        done = np.zeros((self.small[1], self.small[0]), bool)
        self.steps = []
        for sigma in self.SIGMAS:
            den = cv2.GaussianBlur(small_den, (0, 0), sigma)
            ok = (den > 1e-3) & ~done
            self.steps.append((sigma, ok, den[ok]))
            done |= ok
        self.rest = ~done if not done.all() else None


def _fill_outside(gray: np.ndarray, fov: np.ndarray, rim_px: int = 4, plan: Optional[_FillPlan] = None) -> np.ndarray:
    """Replace pixels outside the FOV by a smooth extension of the retina.

    The source is the FOV eroded by ``rim_px`` (the FOV's edge is dark vignetting), and the extension is a
    normalised masked blur computed at quarter resolution (it is smooth by construction, so this is cheap).
    ``plan`` (from the same FOV) carries the FOV-only part. ``gray`` may also be (H, W, C): each plane is
    extended on its own, with the same arithmetic (one pass over all planes).
    """
    if plan is None:
        plan = _FillPlan(fov, rim_px)
    img = gray.astype(np.float32)
    h, w = plan.shape
    weight = plan.src_f if img.ndim == 2 else plan.src_f[:, :, None]
    small_num = cv2.resize(img * weight, plan.small, interpolation=cv2.INTER_AREA)
    fill = np.zeros(small_num.shape, np.float32)
    for sigma, ok, den in plan.steps:
        num = cv2.GaussianBlur(small_num, (0, 0), sigma)
        fill[ok] = num[ok] / (den if img.ndim == 2 else den[:, None])
    if plan.rest is not None:
        if img.ndim == 2:
            fill[plan.rest] = float(img[plan.src].mean())
        else:
            for c in range(img.shape[2]):
                fill[:, :, c][plan.rest] = float(img[:, :, c][plan.src].mean())
    fill_full = cv2.resize(fill, (w, h), interpolation=cv2.INTER_LINEAR)
    if fill_full.shape != img.shape:        # a one-plane (H, W, 1) image comes back from OpenCV as (H, W)
        fill_full = fill_full.reshape(img.shape)
    np.copyto(fill_full, img, where=plan.src if img.ndim == 2 else plan.src[:, :, None])
    return fill_full


def normalise_colour(plane: np.ndarray, fov_model: np.ndarray, params: PreprocessParams,
                     plan: Optional[_FillPlan] = None) -> np.ndarray:
    """Outside-FOV extension of a (model-sized) colour plane, then CLAHE. Returns uint8 (size, size)."""
    if fov_model.any():
        extended = _fill_outside(plane, fov_model, plan=plan)
    else:
        extended = plane.astype(np.float32)
    extended += np.float32(0.5)                  # round half up, in place: the array is ours
    np.clip(extended, 0, 255, out=extended)
    g8 = extended.astype(np.uint8)
    clahe = cv2.createCLAHE(clipLimit=params.clahe_clip, tileGridSize=(params.clahe_grid, params.clahe_grid))
    return clahe.apply(g8)


def normalise_colour_planes(rgb: np.ndarray, fov_model: np.ndarray, params: PreprocessParams) -> np.ndarray:
    """``normalise_colour`` of each plane of a (size, size, 3) image, with the FOV-only part of the outside-FOV
    fill computed once (the same numbers; plane by plane, which OpenCV does faster than three channels at
    once). Returns uint8 (size, size, 3)."""
    plan = _FillPlan(fov_model) if fov_model.any() else None
    return cv2.merge([normalise_colour(p, fov_model, params, plan) for p in cv2.split(rgb)])


def preprocess(rgb: np.ndarray, params: Optional[PreprocessParams] = None, scale: int = 1) -> Preprocessed:
    """Full host preprocessing of an RGB uint8 image into the model's input space.

    ``scale``: the image is the original reduced that many times (a reduced JPEG decode); the working size
    (``PreprocessParams.working_size``) is chosen on the FOV's size in original pixels.
    """
    import time

    params = params or PreprocessParams()
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError("preprocess expects an RGB uint8 HxWx3 array, got %s %s" % (rgb.dtype, rgb.shape))
    t0 = time.perf_counter()
    h, w = rgb.shape[:2]
    fov_small = detect_fov_small(rgb)
    fov = fov_from_small(fov_small, w, h)
    if fov.all():
        fov_small = np.ones_like(fov_small)     # whole image (none found, or an implausible one)
    g = square_crop_geometry(fov, params.size, params.fov_margin)
    work = params.working_size(g.side * int(scale))
    if work != g.size:
        g = Geometry(width=g.width, height=g.height, x0=g.x0, y0=g.y0, side=g.side, size=work)
    t1 = time.perf_counter()
    fov_model = map_mask(fov, g)
    if params.colour:
        cropped = crop_and_resize(rgb, g)
        t2 = time.perf_counter()
        model_rgb = normalise_colour_planes(cropped, fov_model, params)
    else:
        # Only the green channel is used (best vessel contrast), so only it is cropped and resized.
        green_model = crop_and_resize(np.ascontiguousarray(rgb[:, :, 1]), g)
        t2 = time.perf_counter()
        gray = normalise_colour(green_model, fov_model, params)
        model_rgb = cv2.merge([gray, gray, gray])
    t3 = time.perf_counter()
    return Preprocessed(model_rgb=model_rgb, fov=fov_model, fov_original=fov, geometry=g,
                        timings_ms={"fov": (t1 - t0) * 1e3, "resize": (t2 - t1) * 1e3,
                                    "colour": (t3 - t2) * 1e3}, fov_small=fov_small)


def rgb_to_nv12(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3), H and W even -> NV12 uint8 (H*3/2, W), full-range BT.601 (JPEG/JFIF)."""
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError("NV12 needs even width and height, got %dx%d" % (w, h))
    out = np.empty((h * 3 // 2, w), dtype=np.uint8)
    r8, g8, b8 = cv2.split(rgb)
    if np.array_equal(r8, g8) and np.array_equal(g8, b8):
        # Gray input (what ``preprocess`` produces): Y is the gray value exactly, chroma is neutral.
        out[:h] = g8
        out[h:] = 128
        return out
    r, g, b = r8.astype(np.float32), g8.astype(np.float32), b8.astype(np.float32)

    def combine(cr: float, cg: float, cb: float, offset: float) -> np.ndarray:
        out_plane = r * np.float32(cr)
        out_plane += g * np.float32(cg)
        out_plane += b * np.float32(cb)
        if offset:
            out_plane += np.float32(offset)
        return out_plane

    def block_mean(plane: np.ndarray) -> np.ndarray:
        # 2x2 block averages, summed pairwise as numpy's mean over the two block axes does
        top = plane[0::2, 0::2] + plane[0::2, 1::2]
        top += plane[1::2, 0::2] + plane[1::2, 1::2]
        top /= np.float32(4.0)
        return top

    y = combine(0.299, 0.587, 0.114, 0.0)
    uv = np.empty((h // 2, w), dtype=np.float32)
    uv[:, 0::2] = block_mean(combine(-0.168736, -0.331264, 0.5, 128.0))
    uv[:, 1::2] = block_mean(combine(0.5, -0.418688, -0.081312, 128.0))
    out[:h] = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    out[h:] = np.clip(np.rint(uv), 0, 255).astype(np.uint8)
    return out


def rgb_to_nchw_float(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (1, 3, H, W) in [0, 1], the input of a bundle without AIPP."""
    return np.ascontiguousarray(rgb.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)


def restore_to_original(prob: np.ndarray, g: Geometry, fov_original: Optional[np.ndarray] = None) -> np.ndarray:
    """Map a square model-space probability (``g.size``, or any other square size: a map stored reduced)
    back to the original (H, W); 0 outside the box (and the FOV if given)."""
    p = np.asarray(prob, dtype=np.float32)
    if p.ndim != 2 or p.shape[0] != p.shape[1]:
        p = p.reshape(g.size, g.size)
    big = cv2.resize(p, (g.side, g.side), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((g.height, g.width), dtype=np.float32)
    sx0, sy0 = max(g.x0, 0), max(g.y0, 0)
    sx1, sy1 = min(g.x0 + g.side, g.width), min(g.y0 + g.side, g.height)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0:sy1, sx0:sx1] = big[sy0 - g.y0:sy1 - g.y0, sx0 - g.x0:sx1 - g.x0]
    if fov_original is not None:
        out[~fov_original] = 0.0
    return out
