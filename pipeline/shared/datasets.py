"""Finding labelled fundus datasets on disk: DRIVE's layout, or any folder of image/label pairs.

Used by ``vessel-seg evaluate`` and by training. Reads by path; nothing is copied.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
from PIL import Image

from vessel_seg.vocabulary import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

#: Dataset images, labels and masks: what the appliance reads, plus GIF (DRIVE's labels and masks).
IMAGE_EXTS = IMAGE_EXTENSIONS + (".gif",)


@dataclass
class Sample:
    """One image with its manual vessel label and optional FOV mask."""

    name: str
    image: Path
    label: Path
    fov: Optional[Path] = None

    def load(self):
        """-> (rgb uint8 HxWx3, label bool HxW, fov bool HxW or None)."""
        rgb = np.array(Image.open(self.image).convert("RGB"))
        label, fov = self.load_masks(rgb.shape[:2])
        return rgb, label, fov

    def load_masks(self, image_shape):
        """-> (label bool HxW, fov bool HxW or None), checked against the image's (H, W)."""
        label = np.array(Image.open(self.label).convert("L")) > 127
        fov = np.array(Image.open(self.fov).convert("L")) > 127 if self.fov else None
        if label.shape != tuple(image_shape):
            raise ValueError("%s: label size %s differs from image size %s" % (self.name, label.shape, image_shape))
        if fov is not None and fov.shape != tuple(image_shape):
            raise ValueError("%s: FOV mask size %s differs from image size %s" % (self.name, fov.shape, image_shape))
        return label, fov


def _number(p: Path) -> str:
    m = re.match(r"(\d+)", p.name)
    return m.group(1) if m else p.stem


def _files(d: Path) -> List[Path]:
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _stem(p: Path) -> str:
    return p.name.split(".")[0] if p.name.count(".") > 1 else p.stem


def match_file(img: Path, candidates: List[Path]) -> Optional[Path]:
    """The file of ``candidates`` that belongs to ``img``: the one whose name starts with the image's stem
    followed by ``.``, ``_`` or ``-`` (STARE ``im0001.ah.png``, HRF ``01_dr_vessels.png``, ``01_dr_mask.png``)
    or equals it; else the one with the same leading number (DRIVE ``01_test`` / ``01_manual1``), when unique."""
    stem = img.stem
    for cand in candidates:
        if _stem(cand) == stem or (cand.name.startswith(stem) and cand.name[len(stem):len(stem) + 1] in "._-"
                                   and len(cand.name) > len(stem)):
            return cand
    key = _number(img)
    same = [c for c in candidates if _number(c) == key]
    return same[0] if len(same) == 1 else None


def drive_split(root: Path, split: str, observer: int = 1) -> List[Sample]:
    """DRIVE's ``<split>/images``, ``<split>/{1st,2nd}_manual``, ``<split>/mask``, matched by
    :func:`match_file` (STARE and HRF copies in that layout work too)."""
    base = root / split
    manual = base / ("1st_manual" if observer == 1 else "2nd_manual")
    if not (base / "images").is_dir() or not manual.is_dir():
        raise FileNotFoundError("%s does not have DRIVE's layout (%s/images and %s)" % (root, split, manual.name))
    labels = _files(manual)
    masks = _files(base / "mask") if (base / "mask").is_dir() else []
    out = []
    for img in _files(base / "images"):
        label = match_file(img, labels)
        if label is not None:
            out.append(Sample(name=img.stem, image=img, label=label, fov=match_file(img, masks)))
    return out


def is_drive(root: Path) -> bool:
    return (root / "test" / "images").is_dir() or (root / "training" / "images").is_dir()


def find_samples(root: Path, split: str = "test", observer: int = 1, images: Optional[str] = None,
                 labels: Optional[str] = None, fov: Optional[str] = None) -> List[Sample]:
    """Samples of a dataset: DRIVE layout when recognised and no folders are given, else folder pairs.

    Generic layout: ``root/<images>``, ``root/<labels>``, optional ``root/<fov>``; files are matched by
    stem, or by the stem's leading number when stems differ (``01_test.tif`` / ``01_manual1.gif``).
    """
    root = Path(root)
    if images is None and labels is None and is_drive(root):
        samples = drive_split(root, split, observer)
    else:
        img_dir = root / (images or "images")
        lab_dir = root / (labels or "labels")
        if not img_dir.is_dir() or not lab_dir.is_dir():
            raise FileNotFoundError("expected image folder %s and label folder %s" % (img_dir, lab_dir))
        lab_files = _files(lab_dir)
        by_stem = {p.stem: p for p in lab_files}
        by_num = {_number(p): p for p in lab_files}
        fov_files = _files(root / fov) if fov else []
        fov_stem = {p.stem: p for p in fov_files}
        fov_num = {_number(p): p for p in fov_files}
        samples = []
        for img in _files(img_dir):
            lab = by_stem.get(img.stem) or by_num.get(_number(img))
            if lab is None:
                log.warning("no label for %s; skipped", img.name)
                continue
            samples.append(Sample(img.stem, img, lab, fov_stem.get(img.stem) or fov_num.get(_number(img))))
    if not samples:
        raise FileNotFoundError("no image/label pairs found under %s" % root)
    return samples
