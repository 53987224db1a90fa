"""Skeletonisation (Zhang-Suen thinning) and the skeleton's pixel graph, in numpy + OpenCV only.

``thin(mask)`` is the two-sub-iteration parallel thinning of Zhang and Suen (Commun. ACM 27(3), 1984),
vectorised with a 256-entry lookup table over the 8-neighbourhood code of *candidate* pixels only: after the
first pass, only the still-foreground neighbours of pixels deleted in the previous sub-iteration (and the
candidates that survived) can change, so the work shrinks to the skeleton's size instead of the image's.

Neighbour order P2..P9 as in the paper: N, NE, E, SE, S, SW, W, NW (bit k of the code is P(k+2)).
"""
from __future__ import annotations

import logging
from typing import Tuple

import numpy as np

log = logging.getLogger(__name__)

#: (dy, dx) of P2..P9.
NEIGHBOURS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


def _build_luts() -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(delete in sub-iteration 1, delete in sub-iteration 2, number of foreground neighbours) per code."""
    step1 = np.zeros(256, dtype=bool)
    step2 = np.zeros(256, dtype=bool)
    count = np.zeros(256, dtype=np.uint8)
    for code in range(256):
        p = [(code >> k) & 1 for k in range(8)]          # p[0] = P2 ... p[7] = P9
        b = sum(p)
        a = sum(1 for k in range(8) if p[k] == 0 and p[(k + 1) % 8] == 1)
        count[code] = b
        if not (3 <= b <= 6 and a == 1):
            continue
        p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
        step1[code] = p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0
        step2[code] = p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0
    return step1, step2, count


_STEP1, _STEP2, _COUNT = _build_luts()

#: Kulpa (1977) length weights of a 4-step and a diagonal step of an 8-connected chain.
KULPA_EVEN, KULPA_ODD = 0.948, 1.343


def _components8(code: int) -> int:
    """Number of 8-connected groups among the set neighbours of a pixel (positions P2..P9)."""
    pos = [NEIGHBOURS[k] for k in range(8) if (code >> k) & 1]
    seen = [False] * len(pos)
    groups = 0
    for i in range(len(pos)):
        if seen[i]:
            continue
        groups += 1
        stack = [i]
        seen[i] = True
        while stack:
            j = stack.pop()
            for m in range(len(pos)):
                if not seen[m] and max(abs(pos[j][0] - pos[m][0]), abs(pos[j][1] - pos[m][1])) == 1:
                    seen[m] = True
                    stack.append(m)
    return groups


def _corner_luts() -> Tuple[np.ndarray, ...]:
    """Per corner direction (N+E, E+S, S+W, W+N with the opposite diagonal empty): the codes of a redundant
    staircase pixel, i.e. one whose neighbours stay one 8-connected group without it."""
    simple = np.array([_components8(c) == 1 and _COUNT[c] >= 2 for c in range(256)], dtype=bool)
    bit = {name: 1 << k for k, name in enumerate(("N", "NE", "E", "SE", "S", "SW", "W", "NW"))}
    out = []
    for a, b, opposite in (("N", "E", "SW"), ("E", "S", "NW"), ("S", "W", "NE"), ("W", "N", "SE")):
        lut = np.zeros(256, dtype=bool)
        for c in range(256):
            lut[c] = bool(simple[c] and c & bit[a] and c & bit[b] and not c & bit[opposite])
        out.append(lut)
    return tuple(out)


_CORNERS = _corner_luts()


def _offsets(width: int) -> np.ndarray:
    """Flat-index offsets of P2..P9 in an array ``width`` wide."""
    return np.array([dy * width + dx for dy, dx in NEIGHBOURS], dtype=np.int64)


def neighbour_codes(flat: np.ndarray, idx: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The 8-bit neighbourhood code of the pixels ``idx`` of a padded, flattened 0/1 uint8 image."""
    code = np.zeros(idx.shape, dtype=np.uint8)
    for k in range(8):
        code |= flat[idx + offsets[k]] << np.uint8(k)
    return code


def thin(mask: np.ndarray, max_iterations: int = 1000) -> np.ndarray:
    """One-pixel-wide, 8-connected skeleton of a binary mask (Zhang-Suen); same shape, bool."""
    m = np.asarray(mask).astype(bool)
    h, w = m.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = m
    flat = padded.reshape(-1)
    offsets = _offsets(w + 2)
    fg = np.flatnonzero(flat)                      # every pixel that can ever be a candidate
    slot = np.full(flat.shape, -1, dtype=np.int64)  # image index -> position in fg
    slot[fg] = np.arange(fg.size)
    mark = np.zeros(fg.shape, dtype=bool)
    cand = fg
    iterations = 0
    while cand.size and iterations < max_iterations:
        iterations += 1
        deleted_any = False
        for lut in (_STEP1, _STEP2):
            code = neighbour_codes(flat, cand, offsets)
            kill = lut[code]
            gone = cand[kill]
            if gone.size == 0:
                continue
            deleted_any = True
            flat[gone] = 0
            # next candidates: surviving candidates that may still go, plus neighbours of the deleted ones
            mark[slot[cand[~kill & (_COUNT[code] <= 6)]]] = True
            for k in range(8):
                s = slot[gone + offsets[k]]
                mark[s[s >= 0]] = True
            pos = np.flatnonzero(mark)
            mark[pos] = False
            cand = fg[pos]
            cand = cand[flat[cand] == 1]
        if not deleted_any:
            break
    log.debug("thinning: %d iterations", iterations)
    _remove_staircases(flat, w + 2, offsets)
    return padded[1:-1, 1:-1].astype(bool)


def _remove_staircases(flat: np.ndarray, width: int, offsets: np.ndarray) -> None:
    """Delete the redundant corner pixels of 4-connected staircases (in place), so that every skeleton
    pixel of a simple curve has exactly two 8-neighbours; one corner direction and one chessboard parity
    at a time, so no two neighbouring pixels go in the same pass and connectivity is kept."""
    idx = np.flatnonzero(flat)
    for lut in _CORNERS:
        for parity in (0, 1):
            rows, cols = np.divmod(idx, width)
            sel = idx[(rows + cols) % 2 == parity]
            sel = sel[flat[sel] == 1]
            gone = sel[lut[neighbour_codes(flat, sel, offsets)]]
            flat[gone] = 0
    return None


def neighbour_count(skel: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(row, col) of every skeleton pixel paired with its number of 8-neighbours in the skeleton."""
    s = np.asarray(skel).astype(bool)
    h, w = s.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = s
    flat = padded.reshape(-1)
    idx = np.flatnonzero(flat)
    counts = _COUNT[neighbour_codes(flat, idx, _offsets(w + 2))]
    rows, cols = np.divmod(idx, w + 2)
    return np.stack([rows - 1, cols - 1], axis=1), counts


def path_length(skel: np.ndarray) -> float:
    """Length of a skeleton in pixels with Kulpa's unbiased chain-code weights (0.948 per 4-adjacent pair,
    1.343 per diagonal pair not already joined through a common 4-neighbour)."""
    s = np.asarray(skel).astype(bool)
    h, w = s.shape
    padded = np.zeros((h + 2, w + 2), dtype=bool)
    padded[1:-1, 1:-1] = s
    flat = padded.reshape(-1)
    width = w + 2
    idx = np.flatnonzero(flat)
    east = flat[idx + 1]
    south = flat[idx + width]
    se = flat[idx + width + 1] & ~east & ~south
    sw = flat[idx + width - 1] & ~flat[idx - 1] & ~south
    return float(KULPA_EVEN * (np.count_nonzero(east) + np.count_nonzero(south))
                 + KULPA_ODD * (np.count_nonzero(se) + np.count_nonzero(sw)))
