"""Finding labelled fundus datasets on disk: DRIVE's layout, or any folder of image/label pairs.

Used by ``vessel-seg evaluate`` and by training. Reads by path; nothing is copied.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

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


#: What may follow an image's stem in its label's or mask's stem: ``im0001.ah``, ``01_h_vessels``, ``01-mask``.
_STEM_SEPARATORS = "._-"


def pair_files(images: List[Path], candidates: List[Path]) -> Dict[Path, Path]:
    """Each image's label (or FOV mask) among ``candidates``: the one pairing rule of evaluate and training.

    In order: the same stem (``a.png`` / ``a.gif``); else the one candidate whose stem is the image's stem
    followed by a separator and more (``im0001.png`` / ``im0001.ah.png``, ``01_h.jpg`` / ``01_h_vessels.png``,
    ``01_test.tif`` / ``01_test_mask.gif``; the longest image stem wins, so ``01_h`` never takes
    ``01_hx_...``); else the leading number, only where exactly one image and one candidate carry it
    (``01_test.tif`` / ``01_manual1.gif``). An image with several equally good candidates gets none (logged).
    """
    by_stem = {c.stem: c for c in candidates}
    out = {}  # type: Dict[Path, Path]
    unmatched = []
    for img in images:
        if img.stem in by_stem:
            out[img] = by_stem[img.stem]
            continue
        prefixed = [c for c in candidates if len(c.stem) > len(img.stem) and c.stem.startswith(img.stem)
                    and c.stem[len(img.stem)] in _STEM_SEPARATORS]
        # A candidate that a longer image stem also prefixes belongs to that image (01_h vs 01_h_2).
        prefixed = [c for c in prefixed if not any(
            len(o.stem) > len(img.stem) and c.stem.startswith(o.stem)
            and (len(c.stem) == len(o.stem) or c.stem[len(o.stem)] in _STEM_SEPARATORS) for o in images)]
        if len(prefixed) == 1:
            out[img] = prefixed[0]
        elif len(prefixed) > 1:
            log.warning("%s: %d candidates (%s); none taken", img.name, len(prefixed),
                        ", ".join(sorted(c.name for c in prefixed)))
        else:
            unmatched.append(img)
    taken = set(out.values())
    image_numbers = Counter(_number(i) for i in images)
    cand_by_number = {}  # type: Dict[str, List[Path]]
    for c in candidates:
        if c not in taken:
            cand_by_number.setdefault(_number(c), []).append(c)
    for img in unmatched:
        key = _number(img)
        found = cand_by_number.get(key, [])
        if image_numbers[key] == 1 and len(found) == 1:
            out[img] = found[0]
    return out


def drive_split(root: Path, split: str, observer: int = 1) -> List[Sample]:
    """DRIVE's layout (also STARE's and HRF's in ../shared/datasets): ``<split>/images``,
    ``<split>/{1st,2nd}_manual``, ``<split>/mask``, paired by :func:`pair_files`."""
    base = root / split
    manual = base / ("1st_manual" if observer == 1 else "2nd_manual")
    if not (base / "images").is_dir() or not manual.is_dir():
        raise FileNotFoundError("%s does not have DRIVE's layout (%s/images and %s)" % (root, split, manual.name))
    images = _files(base / "images")
    labels = pair_files(images, _files(manual))
    masks = pair_files(images, _files(base / "mask")) if (base / "mask").is_dir() else {}
    out = []
    for img in images:
        if img in labels:
            out.append(Sample(name=img.stem, image=img, label=labels[img], fov=masks.get(img)))
        else:
            log.warning("no label for %s; skipped", img.name)
    return out


def is_drive(root: Path) -> bool:
    return (root / "test" / "images").is_dir() or (root / "training" / "images").is_dir()


def find_samples(root: Path, split: str = "test", observer: int = 1, images: Optional[str] = None,
                 labels: Optional[str] = None, fov: Optional[str] = None) -> List[Sample]:
    """Samples of a dataset: DRIVE layout when recognised and no folders are given, else folder pairs.

    Generic layout: ``root/<images>``, ``root/<labels>``, optional ``root/<fov>``; files are paired by
    :func:`pair_files` in both layouts.
    """
    root = Path(root)
    if images is None and labels is None and is_drive(root):
        samples = drive_split(root, split, observer)
    else:
        img_dir = root / (images or "images")
        lab_dir = root / (labels or "labels")
        if not img_dir.is_dir() or not lab_dir.is_dir():
            raise FileNotFoundError("expected image folder %s and label folder %s" % (img_dir, lab_dir))
        images_found = _files(img_dir)
        pairs = pair_files(images_found, _files(lab_dir))
        fov_pairs = pair_files(images_found, _files(root / fov)) if fov else {}
        samples = []
        for img in images_found:
            if img not in pairs:
                log.warning("no label for %s; skipped", img.name)
                continue
            samples.append(Sample(img.stem, img, pairs[img], fov_pairs.get(img)))
    if not samples:
        raise FileNotFoundError("no image/label pairs found under %s" % root)
    return samples
