"""probability.bin format and the bin -> PNG conversion (the reference tool's behaviour)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vessel_seg.pipeline.engine.binfile import (
    PROB_NBYTES,
    BinFormatError,
    bin_to_png,
    bytes_to_probability,
    parse_size,
    probability_to_bytes,
    probability_to_gray,
    read_probability_bin,
)


def _prob(seed=0):
    return np.random.RandomState(seed).rand(512, 512).astype(np.float32)


def test_bin_is_exactly_512x512_float32_little_endian_row_major():
    prob = _prob()
    data = probability_to_bytes(prob.reshape(1, 1, 512, 512))
    assert len(data) == PROB_NBYTES == 1048576
    assert np.frombuffer(data[:8], dtype="<f4").tolist() == [prob[0, 0], prob[0, 1]]
    assert np.frombuffer(data[-4:], dtype="<f4")[0] == prob[511, 511]


def test_bytes_round_trip():
    prob = _prob(1)
    assert np.array_equal(bytes_to_probability(probability_to_bytes(prob)), prob)


def test_wrong_output_size_is_refused():
    with pytest.raises(BinFormatError):
        probability_to_bytes(np.zeros((256, 256), np.float32))


@pytest.mark.parametrize("nbytes", [0, 4, PROB_NBYTES - 4, PROB_NBYTES + 1])
def test_file_of_wrong_size_gives_a_clear_error(tmp_path, nbytes):
    p = tmp_path / "x.bin"
    p.write_bytes(b"\0" * nbytes)
    with pytest.raises(BinFormatError, match="exactly 1048576 bytes"):
        read_probability_bin(p)


def test_gray_is_probability_times_255_rounded_and_clipped():
    prob = np.array([[0.0, 0.5, 1.0, 1.7], [-0.2, 0.002, 0.998, np.nan]], np.float32)
    assert probability_to_gray(prob).tolist() == [[0, 128, 255, 255], [0, 1, 254, 0]]


def test_bin2png_at_model_size_and_resized_to_the_original(tmp_path):
    prob = np.tile(np.linspace(0, 1, 512, dtype=np.float32), (512, 1))
    b = tmp_path / "probability.bin"
    b.write_bytes(probability_to_bytes(prob))
    assert bin_to_png(b, tmp_path / "a.png") == (512, 512)
    gray = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED)
    assert gray.dtype == np.uint8 and gray.shape == (512, 512)
    assert gray[0, 0] == 0 and gray[0, 511] == 255
    assert bin_to_png(b, tmp_path / "b.png", (565, 584)) == (565, 584)
    big = cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_UNCHANGED)
    assert big.shape == (584, 565) and big[10, 0] < 5 and big[10, 564] > 250


def test_parse_size():
    assert parse_size("565x584") == (565, 584)
    for bad in ("565", "0x10", "ax3", "10x-1"):
        with pytest.raises(ValueError):
            parse_size(bad)
