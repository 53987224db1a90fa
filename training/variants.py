"""Build "other camera" variants of a labelled dataset, to check that one model serves them all.

    python -m training.variants --data ../shared/datasets/DRIVE --split test --out /tmp/variants
    vessel-seg evaluate /tmp/variants/canvas2x --images images --labels labels --fov fov

Each variant is written as real files in a generic layout (``<out>/<variant>/{images,labels,fov}``), with the
label and FOV mask transformed exactly like the image:
- ``plain``      the images re-encoded losslessly (PNG), as a control
- ``canvas2x``   2x larger, placed off-centre in a wide black canvas (a high-resolution, wide-border camera)
- ``canvas3x``   3x larger in a 3:2 black canvas (about 3500 pixels wide, like 3504x2336 cameras)
- ``jpeg``       JPEG quality 70 (typical camera compression)
- ``dark``       gamma 1.5 and 70% brightness (under-exposed)
- ``bright``     gamma 0.7 and 120% brightness (over-exposed, washed out)
- ``aspect``     1.7x, FOV cut at top and bottom (sensor narrower than the circle), 4:3 frame (~1000x960-class)
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np

from vessel_seg.pipeline.shared.datasets import find_samples

log = logging.getLogger("training.variants")

Triple = Tuple[np.ndarray, np.ndarray, np.ndarray]


def _scale(rgb: np.ndarray, lab: np.ndarray, fov: np.ndarray, s: float) -> Triple:
    h, w = lab.shape
    size = (int(round(w * s)), int(round(h * s)))
    img = cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC)
    lab2 = cv2.resize(lab.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) >= 0.5
    fov2 = cv2.resize(fov.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) >= 0.5
    return img, lab2, fov2


def _place(t: Triple, cw: int, ch: int, x0: int, y0: int) -> Triple:
    rgb, lab, fov = t
    h, w = lab.shape
    big = np.zeros((ch, cw, 3), np.uint8)
    bl = np.zeros((ch, cw), bool)
    bf = np.zeros((ch, cw), bool)
    # crop the source where it leaves the canvas
    sx0, sy0 = max(0, -x0), max(0, -y0)
    dx0, dy0 = max(0, x0), max(0, y0)
    ww, hh = min(w - sx0, cw - dx0), min(h - sy0, ch - dy0)
    big[dy0:dy0 + hh, dx0:dx0 + ww] = rgb[sy0:sy0 + hh, sx0:sx0 + ww]
    bl[dy0:dy0 + hh, dx0:dx0 + ww] = lab[sy0:sy0 + hh, sx0:sx0 + ww]
    bf[dy0:dy0 + hh, dx0:dx0 + ww] = fov[sy0:sy0 + hh, sx0:sx0 + ww]
    return big, bl, bf


def canvas2x(rgb, lab, fov) -> Triple:
    s = _scale(rgb, lab, fov, 2.0)
    h, w = s[1].shape
    return _place(s, int(w * 1.5), int(h * 1.15), int(w * 0.3), int(h * 0.05))


def canvas3x(rgb, lab, fov) -> Triple:
    s = _scale(rgb, lab, fov, 3.0)
    h, w = s[1].shape
    ch = int(h * 1.2)
    cw = ch * 3 // 2
    return _place(s, cw, ch, (cw - w) // 2, (ch - h) // 2)


def jpeg(rgb, lab, fov) -> Triple:
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 70])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy(), lab, fov


def _tone(rgb: np.ndarray, gamma: float, gain: float) -> np.ndarray:
    f = (rgb.astype(np.float32) / 255.0) ** gamma * gain
    return np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)


def dark(rgb, lab, fov) -> Triple:
    return _tone(rgb, 1.5, 0.7), lab, fov


def bright(rgb, lab, fov) -> Triple:
    return _tone(rgb, 0.7, 1.2), lab, fov


def aspect(rgb, lab, fov) -> Triple:
    s = _scale(rgb, lab, fov, 1.7)
    h, w = s[1].shape
    ch = int(h * 0.84)                # the circle loses 8% at the top and at the bottom
    cw = ch * 4 // 3
    return _place(s, cw, ch, (cw - w) // 2, -(h - ch) // 2)


VARIANTS: Dict[str, Callable[..., Triple]] = {
    "plain": lambda rgb, lab, fov: (rgb, lab, fov),
    "canvas2x": canvas2x, "canvas3x": canvas3x, "jpeg": jpeg, "dark": dark, "bright": bright, "aspect": aspect,
}


def build(data: Path, out: Path, split: str = "test", names: Optional[List[str]] = None) -> List[Path]:
    """Write the variants; returns their folders."""
    samples = find_samples(data, split=split)
    made = []
    for vname in names or list(VARIANTS):
        fn = VARIANTS[vname]
        vdir = out / vname
        for sub in ("images", "labels", "fov"):
            (vdir / sub).mkdir(parents=True, exist_ok=True)
        for smp in samples:
            rgb, lab, fov = smp.load()
            if fov is None:
                fov = np.ones(lab.shape, bool)
            img, lab2, fov2 = fn(rgb, lab, fov)
            stem = smp.name.split("_")[0]
            if vname == "jpeg":
                cv2.imwrite(str(vdir / "images" / (stem + ".jpg")), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 70])
            else:
                cv2.imwrite(str(vdir / "images" / (stem + ".png")), img[:, :, ::-1])
            cv2.imwrite(str(vdir / "labels" / (stem + ".png")), lab2.astype(np.uint8) * 255)
            cv2.imwrite(str(vdir / "fov" / (stem + ".png")), fov2.astype(np.uint8) * 255)
        log.info("variant %-9s %d images, e.g. %dx%d", vname, len(samples), img.shape[1], img.shape[0])
        made.append(vdir)
    return made


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.variants", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", help="comma-separated variant names (default: all)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    build(Path(args.data), Path(args.out), args.split, args.only.split(",") if args.only else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
