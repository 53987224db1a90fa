"""Skeletonisation (Zhang-Suen thinning) and the skeleton's pixel graph, in numpy + OpenCV only.

``thin(mask)`` is the two-sub-iteration parallel thinning of Zhang and Suen (Commun. ACM 27(3), 1984),
vectorised with a 256-entry lookup table over the 8-neighbourhood code of *candidate* pixels only: after the
first pass, only the still-foreground neighbours of pixels deleted in the previous sub-iteration (and the
candidates that survived) can change, so the work shrinks to the skeleton's size instead of the image's.

Neighbour order P2..P9 as in the paper: N, NE, E, SE, S, SW, W, NW (bit k of the code is P(k+2)).
"""
from __future__ import annotations

import logging
from typing import Optional, Tuple

import cv2
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
_ANY_CORNER = np.logical_or.reduce(_CORNERS)


def _offsets(width: int) -> np.ndarray:
    """Flat-index offsets of P2..P9 in an array ``width`` wide."""
    return np.array([dy * width + dx for dy, dx in NEIGHBOURS], dtype=np.int64)


def neighbour_codes(flat: np.ndarray, idx: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The 8-bit neighbourhood code of the pixels ``idx`` of a padded, flattened 0/1 uint8 image."""
    code = np.zeros(idx.shape, dtype=np.uint8)
    for k in range(8):
        code |= flat[idx + offsets[k]] << np.uint8(k)
    return code


#: 3x3 correlation kernel giving the code: weight 2**k at the position of P(k+2).
_CODE_KERNEL = np.zeros((3, 3), dtype=np.float32)
for _k, (_dy, _dx) in enumerate(NEIGHBOURS):
    _CODE_KERNEL[_dy + 1, _dx + 1] = float(1 << _k)
#: Per neighbour k: the code bit that pixel carries for *its* neighbour in the opposite direction (k + 4).
_OPPOSITE_CLEAR = np.array([~np.uint8(1 << ((k + 4) % 8)) for k in range(8)], dtype=np.uint8)


def neighbour_code_image(binary01: np.ndarray) -> np.ndarray:
    """The 8-bit neighbourhood code (bit k = P(k+2) set) of every pixel of a 0/1 uint8 image, uint8;
    outside the image counts as background. One 3x3 correlation: the weights sum to 255, so it is exact."""
    src = np.ascontiguousarray(binary01, dtype=np.uint8)
    return cv2.filter2D(src, -1, _CODE_KERNEL, borderType=cv2.BORDER_CONSTANT)


def _unique(idx: np.ndarray, stamp: np.ndarray) -> np.ndarray:
    """``idx`` without repeats (order not kept), using ``stamp`` (int32, image-sized) as scratch: every
    index writes its position there, and only the one whose write survived is kept."""
    order = np.arange(idx.size, dtype=np.int32)
    stamp[idx] = order
    return np.compress(np.take(stamp, idx) == order, idx)


#: The deletion tables as 0/1 uint8, for cv2.LUT.
_STEPS_U8 = (_STEP1.astype(np.uint8), _STEP2.astype(np.uint8))
#: Sub-iterations deleting at least this many pixels run on the whole image (OpenCV), smaller ones sparsely.
DENSE_MIN_DELETED = 4000
_BOX3 = np.ones((3, 3), dtype=np.uint8)


def thin_with_codes(mask: np.ndarray, max_iterations: int = 1000) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`thin`, and the 8-neighbourhood code (see :func:`neighbour_code_image`) of every pixel of the
    skeleton's image, both (h, w): bool and uint8.

    While sub-iterations delete many pixels they run on the whole image (lookup table and code image in
    OpenCV); then sparsely: the codes are updated as pixels go (a deleted pixel clears one bit in each of its
    8 neighbours), and a pixel can only be deleted in a sub-iteration if its code changed since the last
    sub-iteration of the same kind (which it survived), so the candidates are the foreground neighbours of
    the pixels deleted in the previous two sub-iterations."""
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = m
    flat = padded.reshape(-1)
    codes = neighbour_code_image(padded)
    steps = 2 * max(0, int(max_iterations))
    step = 0
    kill = before = np.zeros_like(padded)
    while step < steps:
        before = kill
        kill = cv2.bitwise_and(cv2.LUT(codes, _STEPS_U8[step % 2]), padded)
        deleted = cv2.countNonZero(kill)
        step += 1
        if deleted:
            cv2.subtract(padded, kill, dst=padded)
            codes = neighbour_code_image(padded)
        if deleted < DENSE_MIN_DELETED:
            break
    cflat = codes.reshape(-1)
    # hand over to the sparse loop: the foreground pixels next to the last two deletions
    if step == 1:
        # a survivor of the first sub-iteration can go in the second also with its code unchanged
        before = cv2.bitwise_and(cv2.LUT(codes, _STEPS_U8[1]), padded)
    else:
        before = cv2.dilate(before, _BOX3)
    changed_before = np.flatnonzero(cv2.bitwise_and(cv2.dilate(kill, _BOX3), padded).view(bool))
    cand = np.flatnonzero(cv2.bitwise_and(cv2.bitwise_or(cv2.dilate(kill, _BOX3), before), padded).view(bool))
    offsets = _offsets(w + 2)
    stamp = np.empty(flat.shape, dtype=np.int32)
    luts = (_STEP1, _STEP2)
    while cand.size and step < steps:
        # (np.take / np.compress: the same as fancy and boolean indexing, and cheaper)
        gone = np.compress(np.take(luts[step % 2], np.take(cflat, cand)), cand)
        if gone.size:
            changed = _delete(flat, cflat, gone, offsets)
            changed = _unique(np.compress(np.take(flat, changed) != 0, changed), stamp)
        else:
            changed = changed_before[:0]
        # repeats in the candidates are harmless (the same pixel deleted twice), so no second _unique
        cand = np.concatenate([changed, np.compress(np.take(flat, changed_before) != 0, changed_before)])
        changed_before = changed
        step += 1
    log.debug("thinning: %d sub-iterations", step)
    _remove_staircases(flat, cflat, w + 2, offsets)
    return np.ascontiguousarray(padded[1:-1, 1:-1].view(bool)), np.ascontiguousarray(codes[1:-1, 1:-1])


def _delete(flat: np.ndarray, cflat: np.ndarray, gone: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Clear the pixels ``gone`` (flat indices) and their bit in each neighbour's code; returns the flat indices
    of those neighbours (8 per deleted pixel, in neighbour order, repeats kept)."""
    flat[gone] = 0
    near = []
    for k in range(8):
        nb = gone + offsets[k]
        cflat[nb] &= _OPPOSITE_CLEAR[k]
        near.append(nb)
    return np.concatenate(near)


def thin(mask: np.ndarray, max_iterations: int = 1000) -> np.ndarray:
    """One-pixel-wide, 8-connected skeleton of a binary mask (Zhang-Suen); same shape, bool."""
    return thin_with_codes(mask, max_iterations)[0]


def _remove_staircases(flat: np.ndarray, cflat: np.ndarray, width: int, offsets: np.ndarray) -> None:
    """Delete the redundant corner pixels of 4-connected staircases (in place, keeping the codes ``cflat``
    up to date), so that every skeleton pixel of a simple curve has exactly two 8-neighbours; one corner
    direction and one chessboard parity at a time, so no two neighbouring pixels go in the same pass and
    connectivity is kept. Only pixels with a corner code, or next to a deleted one, are looked at."""
    idx = np.flatnonzero(flat.view(bool))
    cand = idx[_ANY_CORNER[cflat[idx]]]
    for lut in _CORNERS:
        for parity in (0, 1):
            rows, cols = np.divmod(cand, width)
            sel = cand[((rows + cols) % 2 == parity) & (flat[cand] == 1)]
            gone = sel[lut[cflat[sel]]]
            if gone.size:
                cand = np.concatenate([cand, _delete(flat, cflat, gone, offsets)])
                cand = cand[flat[cand] == 1]
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


def _kulpa_luts() -> Tuple[np.ndarray, np.ndarray]:
    """Per code: the 4-adjacent pairs (E, S) and the diagonal pairs not joined through a common 4-neighbour
    (SE without E and S, SW without W and S) that a pixel starts, counting each pair once."""
    even = np.zeros(256, dtype=np.int64)
    odd = np.zeros(256, dtype=np.int64)
    for c in range(256):
        n_, ne, e, se, s, sw, w, nw = [(c >> k) & 1 for k in range(8)]
        even[c] = e + s
        odd[c] = (se and not e and not s) + (sw and not w and not s)
    return even, odd


_KULPA_EVEN_PAIRS, _KULPA_ODD_PAIRS = _kulpa_luts()


def path_length(skel: np.ndarray, codes: Optional[np.ndarray] = None) -> float:
    """Length of a skeleton in pixels with Kulpa's unbiased chain-code weights (0.948 per 4-adjacent pair,
    1.343 per diagonal pair not already joined through a common 4-neighbour). ``codes``: the skeleton's
    :func:`neighbour_code_image`, when already at hand."""
    s = np.asarray(skel, dtype=bool)
    if codes is None:
        codes = neighbour_code_image(s.view(np.uint8))
    return path_length_of_codes(codes[s])


def path_length_of_codes(code: np.ndarray) -> float:
    """:func:`path_length` from the neighbourhood codes of the skeleton's pixels (uint8, one per pixel)."""
    hist = np.bincount(code, minlength=256)
    return float(KULPA_EVEN * int(hist @ _KULPA_EVEN_PAIRS) + KULPA_ODD * int(hist @ _KULPA_ODD_PAIRS))
