"""The datasets a run trains on: one or several roots, each with its held-out images and a sampling share.

``--data`` may be given several times (``--data DRIVE --data STARE --data HRF``); ``--shares 0.5,0.2,0.3``
sets how often a training sample comes from each (default: equal shares). Every root is read with the same
layout options (DRIVE's layout, which ../shared/datasets uses for STARE and HRF too, or ``--images/--labels``),
through ``find_samples``, the pairing ``vessel-seg evaluate`` uses. ``--val-count N`` holds out the last N
images of each root.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from vessel_seg.pipeline.shared.datasets import Sample, find_samples


@dataclass
class DataRoot:
    """One dataset root of a run: its samples split into training and held-out ones, and its share."""

    path: Path
    share: float
    train: List[Sample]
    val: List[Sample]

    @property
    def name(self) -> str:
        return self.path.name


def data_roots(targs: Dict[str, Any]) -> List[str]:
    """The roots of a run's saved arguments (one string in checkpoints from before several were allowed)."""
    data = targs.get("data")
    if not data:
        return []
    return [data] if isinstance(data, str) else list(data)


def parse_shares(text: str, n_roots: int) -> List[float]:
    """``"0.5,0.2,0.3"`` -> normalised shares, one per root; empty -> equal shares."""
    if not text:
        return [1.0 / n_roots] * n_roots
    try:
        shares = [float(s) for s in text.split(",")]
    except ValueError:
        raise ValueError("--shares: comma-separated numbers, got %r" % text)
    if len(shares) != n_roots:
        raise ValueError("--shares: %d values for %d --data roots" % (len(shares), n_roots))
    if any(s < 0 for s in shares) or sum(shares) <= 0:
        raise ValueError("--shares: values must be >= 0 with a positive sum, got %r" % text)
    total = sum(shares)
    return [s / total for s in shares]


def split_samples(samples: List[Sample], val_count: int) -> Tuple[List[Sample], List[Sample]]:
    """(training, validation): the last ``val_count`` samples by name are held out."""
    order = sorted(samples, key=lambda s: s.name)
    return order[:len(order) - val_count], (order[len(order) - val_count:] if val_count else [])


def load_roots(targs: Dict[str, Any]) -> List[DataRoot]:
    """Each root of a run's arguments, found, paired and split as the run saw it."""
    roots = data_roots(targs)
    shares = parse_shares(targs.get("shares") or "", len(roots))
    out = []
    for root, share in zip(roots, shares):
        samples = find_samples(Path(root), split=targs.get("split", "training"), images=targs.get("images"),
                               labels=targs.get("labels"), fov=targs.get("fov"))
        train, val = split_samples(samples, int(targs.get("val_count") or 0))
        if not train:
            raise ValueError("%s: no training images left after holding out %s" % (root, targs.get("val_count")))
        out.append(DataRoot(Path(root), share, train, val))
    return out


def qualified_names(roots: Sequence[DataRoot], which: str) -> List[str]:
    """Sample names for the summary: bare for one root (as before), ``ROOT/name`` for several."""
    if len(roots) == 1:
        return [s.name for s in getattr(roots[0], which)]
    return ["%s/%s" % (r.name, s.name) for r in roots for s in getattr(r, which)]


class RootSampler:
    """Draws a training item: a root by its share, then an item of that root uniformly.

    With one root no root is drawn, so a single-dataset run draws exactly what it drew before."""

    def __init__(self, items_by_root: Sequence[Sequence[Any]], shares: Sequence[float]) -> None:
        if not items_by_root or any(len(items) == 0 for items in items_by_root):
            raise ValueError("every root needs at least one training item")
        self.items_by_root = items_by_root
        self.shares = np.asarray(shares, dtype=np.float64) / float(np.sum(shares))

    def draw(self, rng: np.random.Generator) -> Any:
        root = 0 if len(self.items_by_root) == 1 else int(rng.choice(len(self.items_by_root), p=self.shares))
        items = self.items_by_root[root]
        return items[int(rng.integers(len(items)))]
