"""A high-resolution working size for large fields of view, run as tiles of the model's input size.

A model takes ``size`` x ``size`` (512) inputs. At 512 across the field of view, a 3504x2336 camera's thin vessels
are under a pixel; a bundle may therefore name a larger *working size* (``hires_size``, e.g. 1024) for fields of
view of at least ``hires_from_px`` original pixels. The preprocessed image is then ``hires_size`` square and is cut
into ``n`` x ``n`` tiles of ``size`` (one execute each); the outputs are blended back into one map with weights that
ramp linearly across each overlap, so no seam is visible and every pixel's weights sum to one.

Shared by the pipeline, ``vessel-seg evaluate`` and training, so all three see the same tiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np


def working_size(size: int, hires_size: int, hires_from_px: int, fov_side_px: float) -> int:
    """The model-space size for a field of view whose square box is ``fov_side_px`` original pixels wide."""
    if hires_size > size and hires_from_px > 0 and fov_side_px >= hires_from_px:
        return int(hires_size)
    return int(size)


def tile_starts(work: int, tile: int, min_overlap: int = 0) -> List[int]:
    """Top-left offsets along one axis: the fewest tiles of ``tile`` covering ``work`` with neighbours
    overlapping by at least ``min_overlap`` pixels, spread evenly (the first at 0, the last at the end)."""
    if work < tile:
        raise ValueError("working size %d is smaller than the tile size %d" % (work, tile))
    if work == tile:
        return [0]
    if not 0 <= min_overlap < tile:
        raise ValueError("tile overlap must be in [0, %d), got %d" % (tile, min_overlap))
    n = 1 + int(math.ceil((work - tile) / float(tile - min_overlap)))
    return [int(round(i * (work - tile) / float(n - 1))) for i in range(n)]


@dataclass(frozen=True)
class TileLayout:
    """How a ``work`` x ``work`` image is cut into ``tile`` x ``tile`` tiles (row-major order)."""

    work: int
    tile: int
    min_overlap: int = 0

    @property
    def starts(self) -> List[int]:
        return tile_starts(self.work, self.tile, self.min_overlap)

    @property
    def count(self) -> int:
        """Number of tiles (executes)."""
        return len(self.starts) ** 2

    def origins(self) -> List[tuple]:
        """(y, x) of each tile, row-major."""
        s = self.starts
        return [(y, x) for y in s for x in s]

    def split(self, image: np.ndarray) -> List[np.ndarray]:
        """The tiles of a (work, work, ...) image, contiguous copies."""
        if image.shape[0] != self.work or image.shape[1] != self.work:
            raise ValueError("expected a %dx%d image, got %s" % (self.work, self.work, image.shape[:2]))
        t = self.tile
        return [np.ascontiguousarray(image[y:y + t, x:x + t]) for y, x in self.origins()]

    def _ramp(self) -> np.ndarray:
        """Per-axis weights of one tile: 1 inside, a linear ramp across the overlap with each neighbour."""
        s = self.starts
        t = self.tile
        ramp = np.ones(t, dtype=np.float32)
        if len(s) > 1:
            overlap = t - (s[1] - s[0])          # the evenly spread starts give (nearly) equal overlaps
            if overlap > 0:
                r = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
                ramp[:overlap] = np.minimum(ramp[:overlap], r)
                ramp[-overlap:] = np.minimum(ramp[-overlap:], r[::-1])
        return ramp

    def stitch(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """Blend the tiles' (tile, tile) outputs into one float32 (work, work) map."""
        if len(outputs) != self.count:
            raise ValueError("expected %d tile outputs, got %d" % (self.count, len(outputs)))
        t = self.tile
        if self.count == 1:
            return np.asarray(outputs[0], dtype=np.float32).reshape(t, t).copy()
        ramp = self._ramp()
        acc = np.zeros((self.work, self.work), dtype=np.float32)
        wsum = np.zeros((self.work, self.work), dtype=np.float32)
        first, last = self.starts[0], self.starts[-1]
        for (y, x), out in zip(self.origins(), outputs):
            wy = ramp.copy()
            wx = ramp.copy()
            if y == first:                       # no neighbour above / left: full weight up to the edge
                wy[: t // 2] = 1.0
            if y == last:
                wy[t // 2:] = 1.0
            if x == first:
                wx[: t // 2] = 1.0
            if x == last:
                wx[t // 2:] = 1.0
            w = wy[:, None] * wx[None, :]
            acc[y:y + t, x:x + t] += np.asarray(out, dtype=np.float32).reshape(t, t) * w
            wsum[y:y + t, x:x + t] += w
        acc /= wsum
        return acc
