"""camera.simulator: writes complete images into a capture folder like real cameras do."""
from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from vessel_seg.camera.ingest import CaptureWatcher
from vessel_seg.camera.simulator import CameraSimulator, add_camera_sim_arguments, run_camera_sim
from vessel_seg.camera.synthetic import make_fundus

SMALL = (96, 80)


def sim(to_dir, **kwargs):
    kwargs.setdefault("rate_per_s", 200.0)
    kwargs.setdefault("size", SMALL)
    return CameraSimulator(to_dir, **kwargs)


def decode(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, "%s does not decode" % path.name
    return img


@pytest.mark.parametrize("mode", ["rename", "chunked", "copy"])
def test_each_mode_writes_the_requested_number_of_complete_images(tmp_path, mode):
    out = tmp_path / "capture"
    s = sim(out, count=3, mode=mode, chunk_bytes=2048, chunk_delay_s=0.005)
    assert s.run() == 3
    files = sorted(out.iterdir())
    assert [p.name for p in files] == sorted(p.name for p in s.written)
    assert len({p.name for p in files}) == 3
    for i, p in enumerate(sorted(s.written, key=lambda q: q.name)):
        assert p.suffix == ".png"
        rgb = make_fundus(SMALL[0], SMALL[1], seed=i)[0]
        assert np.array_equal(decode(p)[..., ::-1], rgb)


def test_rename_mode_never_shows_a_partial_file_under_its_final_name(tmp_path):
    out = tmp_path / "capture"
    out.mkdir()
    first_seen = {}  # type: Dict[str, int]
    done = threading.Event()

    def observe():
        while not done.is_set():
            for name in os.listdir(str(out)):
                if name not in first_seen and not name.endswith(".tmp"):
                    try:
                        first_seen[name] = os.stat(str(out / name)).st_size
                    except FileNotFoundError:
                        pass
            time.sleep(0.001)

    t = threading.Thread(target=observe)
    t.start()
    try:
        s = CameraSimulator(out, rate_per_s=100.0, count=5, mode="rename", size=(565, 584))
        s.run()
    finally:
        done.set()
        t.join()
    assert sorted(os.listdir(str(out))) == sorted(p.name for p in s.written)       # no *.tmp left behind
    assert first_seen and all(first_seen[p.name] == p.stat().st_size for p in s.written if p.name in first_seen)


def test_chunked_mode_streams_the_final_name_in_pieces(tmp_path):
    out = tmp_path / "capture"
    sizes = []
    s = sim(out, count=1, mode="chunked", chunk_bytes=1024, chunk_delay_s=0.02)
    t = threading.Thread(target=s.run)
    t.start()
    while t.is_alive():
        for p in out.glob("*.png") if out.exists() else []:
            sizes.append(p.stat().st_size)
        time.sleep(0.005)
    t.join()
    final = s.written[0].stat().st_size
    assert any(0 < n < final for n in sizes)          # a partial file was visible under the final name
    decode(s.written[0])


def test_copy_mode_replays_a_source_folder_byte_for_byte(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    payloads = {}
    for i, ext in enumerate([".png", ".jpg", ".tif"]):
        rgb = make_fundus(64, 64, seed=i)[0]
        ok, buf = cv2.imencode(ext, rgb)
        assert ok
        (src / ("img%d%s" % (i, ext))).write_bytes(buf.tobytes())
        payloads["img%d" % i] = buf.tobytes()
    (src / "notes.txt").write_text("not an image")
    (src / ".hidden.png").write_bytes(b"x")
    out = tmp_path / "capture"
    s = sim(out, source_dir=src, mode="copy")          # count None = each source once
    assert s.run() == 3
    for p in s.written:
        stem = p.stem.rsplit("_", 1)[-1]
        assert p.read_bytes() == payloads[stem]


def test_count_larger_than_the_source_folder_cycles_through_it(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "only.png").write_bytes(b"\x89PNG-fake")
    s = sim(tmp_path / "out", source_dir=src, count=3, mode="rename")
    assert s.run() == 3
    assert [p.read_bytes() for p in s.written] == [b"\x89PNG-fake"] * 3
    assert len({p.name for p in s.written}) == 3


def test_duplicate_every_repeats_the_previous_image_under_a_new_name(tmp_path):
    s = sim(tmp_path / "out", count=4, duplicate_every=2, mode="copy")
    s.run()
    data = [p.read_bytes() for p in s.written]
    assert data[1] == data[0] and data[3] == data[2] and data[0] != data[2]


def test_same_seed_writes_the_same_images(tmp_path):
    a = sim(tmp_path / "a", count=2, seed=7)
    b = sim(tmp_path / "b", count=2, seed=7)
    a.run()
    b.run()
    assert [p.read_bytes() for p in a.written] == [p.read_bytes() for p in b.written]


def test_jpeg_and_tiff_extensions_for_synthetic_images(tmp_path):
    for ext in (".jpg", ".tif"):
        s = sim(tmp_path / ext[1:], count=1, extension=ext)
        s.run()
        assert s.written[0].suffix == ext
        assert decode(s.written[0]).shape == (SMALL[1], SMALL[0], 3)


def test_the_rate_paces_the_writes_and_a_stop_event_ends_an_endless_run(tmp_path):
    t0 = time.monotonic()
    sim(tmp_path / "paced", count=3, rate_per_s=10.0).run()
    assert time.monotonic() - t0 >= 0.19            # files at 0, 0.1 and 0.2 s
    stop = threading.Event()
    endless = sim(tmp_path / "endless", rate_per_s=20.0)
    threading.Timer(0.3, stop.set).start()
    n = endless.run(stop)
    assert 2 <= n <= 12 and n == len(os.listdir(str(tmp_path / "endless")))


@pytest.mark.parametrize("kwargs", [{"mode": "ftp"}, {"rate_per_s": 0}, {"count": -1}, {"chunk_bytes": 0},
                                    {"chunk_delay_s": -1}, {"duplicate_every": -2}, {"extension": ".gif"},
                                    {"size": (10, 10)}])
def test_invalid_settings_are_refused(tmp_path, kwargs):
    with pytest.raises(ValueError):
        CameraSimulator(tmp_path, **kwargs)


def test_an_empty_or_missing_source_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        CameraSimulator(tmp_path / "out", source_dir=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        CameraSimulator(tmp_path / "out", source_dir=tmp_path / "empty")


def test_chunked_files_reach_a_capture_watcher_only_when_complete(tmp_path):
    out = tmp_path / "capture"
    out.mkdir()
    handed = []
    w = CaptureWatcher(out, lambda p: handed.append((p.name, p.stat().st_size)), stable_seconds=0.3)
    w.start()
    try:
        s = sim(out, count=3, mode="chunked", chunk_bytes=1024, chunk_delay_s=0.03, rate_per_s=20.0)
        s.run()
        deadline = time.monotonic() + 5
        while len(handed) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        w.stop(5.0)
    assert sorted(handed) == sorted((p.name, p.stat().st_size) for p in s.written)


# ---------------------------------------------------------------------------------------------- CLI
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="camera-sim")
    add_camera_sim_arguments(p)
    return p


def test_cli_arguments_have_the_documented_defaults():
    args = parser().parse_args(["--to", "/data/capture"])
    assert args.to == "/data/capture" and args.source_dir is None
    assert (args.rate, args.count, args.mode) == (1.0, None, "rename")
    assert (args.chunk_bytes, args.chunk_delay, args.seed) == (16384, 0.05, 0)
    assert tuple(args.size) == (565, 584) and args.format == "png"


def test_cli_run_writes_images_of_the_requested_size_and_format(tmp_path):
    args = parser().parse_args(["--to", str(tmp_path / "cap"), "--count", "2", "--rate", "100", "--size", "120x90",
                                "--format", "jpg", "--mode", "chunked", "--chunk-bytes", "4096",
                                "--chunk-delay", "0", "--seed", "3"])
    assert run_camera_sim(args) == 0
    files = sorted((tmp_path / "cap").iterdir())
    assert len(files) == 2 and all(p.suffix == ".jpg" for p in files)
    assert decode(files[0]).shape == (90, 120, 3)


def test_cli_replays_a_folder_with_from(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(b"\x89PNG-a")
    (src / "b.png").write_bytes(b"\x89PNG-b")
    args = parser().parse_args(["--to", str(tmp_path / "cap"), "--from", str(src), "--rate", "100"])
    assert run_camera_sim(args) == 0
    assert sorted(p.read_bytes() for p in (tmp_path / "cap").iterdir()) == [b"\x89PNG-a", b"\x89PNG-b"]


@pytest.mark.parametrize("argv", [["--size", "12x"], ["--size", "10x10"], ["--rate", "0"], ["--count", "-1"],
                                  ["--mode", "ftp"], ["--format", "gif"], []])
def test_cli_rejects_bad_arguments(argv, capsys):
    base = ["--to", "/tmp/x"] if argv else []
    with pytest.raises(SystemExit):
        parser().parse_args(base + argv)


def test_cli_reports_a_missing_source_folder_with_exit_status_2(tmp_path, caplog):
    args = parser().parse_args(["--to", str(tmp_path / "cap"), "--from", str(tmp_path / "nope")])
    assert run_camera_sim(args) == 2
    assert "does not exist" in caplog.text
    assert not (tmp_path / "cap").exists()
