"""camera.ingest.CaptureWatcher: complete files are handed out exactly once; nothing else is."""
from __future__ import annotations

import os
import resource
import socket
import threading
import time
from pathlib import Path
from typing import List

import pytest

from vessel_seg.camera.ingest import CaptureWatcher, watchdog_available

STABLE = 0.2

MODES = [pytest.param(True, id="watchdog"), pytest.param(False, id="polling")]
if not watchdog_available():  # pragma: no cover - watchdog is installed in both test venvs
    MODES = [pytest.param(False, id="polling")]


class Collector(object):
    """on_ready recorder: (name, size at hand-out) in call order."""

    def __init__(self) -> None:
        self.calls = []  # type: List[Tuple[str, int]]
        self.lock = threading.Lock()

    def __call__(self, path: Path) -> None:
        size = os.stat(str(path)).st_size
        with self.lock:
            self.calls.append((path.name, size))

    def names(self) -> List[str]:
        with self.lock:
            return [n for n, _ in self.calls]


def wait_until(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for %s" % what)


@pytest.fixture
def make_watcher(tmp_path):
    watchers = []

    def make(on_ready, use_watchdog=True, **kwargs):
        kwargs.setdefault("stable_seconds", STABLE)
        kwargs.setdefault("rescan_seconds", 0.3 if not use_watchdog else 30.0)
        w = CaptureWatcher(tmp_path / "capture", on_ready, use_watchdog=use_watchdog, **kwargs)
        watchers.append(w)
        return w

    (tmp_path / "capture").mkdir()
    yield make
    for w in watchers:
        w.stop(5.0)


@pytest.fixture
def capture(tmp_path):
    return tmp_path / "capture"


def write(path: Path, data: bytes = b"\x89PNG" + b"x" * 1000) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("use_watchdog", MODES)
def test_startup_scan_hands_out_files_that_were_already_there(make_watcher, capture, use_watchdog):
    write(capture / "a.png")
    write(capture / "b.JPG")
    got = Collector()
    make_watcher(got, use_watchdog, rescan_seconds=30.0).start()
    wait_until(lambda: len(got.calls) == 2, what="both files")
    assert sorted(got.names()) == ["a.png", "b.JPG"]


@pytest.mark.parametrize("use_watchdog", MODES)
def test_a_slow_chunked_writer_is_handed_out_only_when_complete(make_watcher, capture, use_watchdog):
    got = Collector()
    make_watcher(got, use_watchdog).start()
    target = capture / "slow.png"
    with open(str(target), "wb") as fh:
        for _ in range(12):
            fh.write(b"y" * 4096)
            fh.flush()
            time.sleep(0.06)
            assert got.calls == []
    wait_until(lambda: got.calls, what="the finished file")
    assert got.calls == [("slow.png", 12 * 4096)]


def test_writes_after_a_close_cancel_the_close_shortcut(make_watcher, capture):
    got = Collector()
    make_watcher(got, True, stable_seconds=1.0, close_recheck_seconds=0.1).start()
    target = capture / "reopened.png"
    with open(str(target), "wb") as fh:          # header written and closed ...
        fh.write(b"h" * 100)
    time.sleep(0.05)
    with open(str(target), "ab") as fh:          # ... then the body streams in with pauses > the re-check
        for _ in range(4):
            fh.write(b"z" * 2048)
            fh.flush()
            time.sleep(0.3)
            assert got.calls == []
    wait_until(lambda: got.calls, what="the finished file")
    assert got.calls == [("reopened.png", 100 + 4 * 2048)]


def test_a_close_after_write_makes_a_file_ready_before_stable_seconds(make_watcher, capture):
    got = Collector()
    make_watcher(got, True, stable_seconds=5.0, close_recheck_seconds=0.1).start()
    t0 = time.monotonic()
    write(capture / "closed.png")
    wait_until(lambda: got.calls, timeout=3.0, what="the closed file")
    assert time.monotonic() - t0 < 3.0
    assert got.calls == [("closed.png", 1004)]


@pytest.mark.parametrize("use_watchdog", MODES)
def test_a_file_renamed_into_place_is_picked_up_and_its_temp_name_never(make_watcher, capture, use_watchdog):
    got = Collector()
    make_watcher(got, use_watchdog).start()
    tmp = write(capture / "shot.png.tmp", b"data" * 500)
    time.sleep(2 * STABLE)
    assert got.calls == []
    os.replace(str(tmp), str(capture / "shot.png"))
    wait_until(lambda: got.calls, what="the renamed file")
    assert got.calls == [("shot.png", 2000)]


def test_temporary_partial_hidden_and_non_image_files_are_ignored(make_watcher, capture):
    for name in ("a.tmp", "b.part", "c.PARTIAL", "d.crdownload", ".hidden.png", "e.png~", "notes.txt",
                 "img.png.part", "noext"):
        write(capture / name)
    got = Collector()
    make_watcher(got, True).start()
    write(capture / "real.png")
    wait_until(lambda: got.calls, what="real.png")
    time.sleep(2 * STABLE)
    assert got.names() == ["real.png"]


def test_custom_ignore_patterns_replace_the_defaults(make_watcher, capture):
    write(capture / "skip_me.png")
    write(capture / "a.tmp.png")
    got = Collector()
    make_watcher(got, False, ignore=("skip_*",)).start()
    wait_until(lambda: got.calls, what="a.tmp.png")
    time.sleep(2 * STABLE)
    assert got.names() == ["a.tmp.png"]


def test_directories_fifos_and_sockets_are_ignored_without_stopping_the_watcher(make_watcher, capture):
    (capture / "folder.png").mkdir()
    write(capture / "folder.png" / "nested.png")      # not top level: ignored too
    os.mkfifo(str(capture / "pipe.png"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(capture / "sock.png"))
    except OSError:  # pragma: no cover - path too long for AF_UNIX on some systems
        pass
    try:
        got = Collector()
        w = make_watcher(got, True)
        w.start()
        write(capture / "after.png")
        wait_until(lambda: got.calls, what="after.png")
        time.sleep(2 * STABLE)
        w.scan_now()
        time.sleep(2 * STABLE)
        assert got.names() == ["after.png"]
        assert w.pending() == 0
    finally:
        sock.close()


def test_a_symlink_leading_outside_the_capture_folder_is_rejected_not_followed(make_watcher, capture, tmp_path):
    outside = write(tmp_path / "secret.png")
    os.symlink(str(outside), str(capture / "link.png"))
    inside = write(capture / "inside.png")
    os.symlink(str(inside), str(capture / "alias.png"))
    os.symlink(str(tmp_path / "nowhere.png"), str(capture / "dangling.png"))
    rejected = []
    got = Collector()
    w = make_watcher(got, True, on_rejected=lambda p, reason: rejected.append((p.name, reason)))
    w.start()
    wait_until(lambda: len(got.calls) == 2, what="the inside file and its alias")
    w.scan_now()
    time.sleep(2 * STABLE)
    assert sorted(got.names()) == ["alias.png", "inside.png"]
    names = sorted(n for n, _ in rejected)
    assert names == ["dangling.png", "link.png"]          # each reported once
    assert all("outside the capture folder" in reason for _, reason in rejected)


@pytest.mark.parametrize("use_watchdog", MODES)
def test_a_blocking_on_ready_makes_the_watcher_wait_and_nothing_is_dropped(make_watcher, capture, use_watchdog):
    release = threading.Event()
    got = Collector()

    def slow_consumer(path):
        got(path)
        release.wait(10)         # a full queue downstream

    w = make_watcher(slow_consumer, use_watchdog)
    write(capture / "f00.png", b"0" * 10)
    w.start()
    wait_until(lambda: got.calls, what="the first hand-out")
    for i in range(1, 6):
        write(capture / ("f%02d.png" % i), b"%d" % i * 10)
    time.sleep(3 * STABLE)
    assert got.names() == ["f00.png"]          # waiting, not skipping
    release.set()
    wait_until(lambda: len(got.calls) == 6, what="the files written while blocked")
    assert sorted(got.names()) == ["f%02d.png" % i for i in range(6)]


def test_polling_rescans_find_new_files_when_watchdog_is_disabled(make_watcher, capture):
    got = Collector()
    w = make_watcher(got, False, rescan_seconds=0.2)
    w.start()
    assert not w.watching_events
    time.sleep(0.3)
    write(capture / "late.png")
    wait_until(lambda: got.calls, timeout=3.0, what="late.png found by a rescan")
    assert got.names() == ["late.png"]


def test_scan_now_wakes_a_polling_watcher_up(make_watcher, capture):
    got = Collector()
    w = make_watcher(got, False, rescan_seconds=60.0, poll_seconds=60.0)
    w.start()
    time.sleep(0.2)
    write(capture / "poke.png")
    time.sleep(STABLE + 0.2)
    assert got.calls == []                # no event source, next rescan in a minute
    w.scan_now()
    wait_until(lambda: got.calls, timeout=2.0, what="poke.png after scan_now")


@pytest.mark.parametrize("use_watchdog", MODES)
def test_each_file_version_is_handed_out_exactly_once(make_watcher, capture, tmp_path, use_watchdog):
    got = Collector()
    w = make_watcher(got, use_watchdog)
    w.start()
    f = write(capture / "once.png", b"v1")
    wait_until(lambda: got.calls, what="first version")
    st = os.stat(str(f))
    os.utime(str(f), ns=(st.st_atime_ns, st.st_mtime_ns))   # an event, same identity
    w.scan_now()
    time.sleep(2 * STABLE)
    assert got.calls == [("once.png", 2)]
    # moved away and back unchanged: the same identity, not handed out again
    os.rename(str(f), str(tmp_path / "parked.png"))
    w.scan_now()
    wait_until(lambda: w.pending() == 0, what="the scan after the move")
    time.sleep(0.1)
    os.rename(str(tmp_path / "parked.png"), str(f))
    w.scan_now()
    time.sleep(2 * STABLE)
    assert got.calls == [("once.png", 2)]
    # rewritten with new content: a new identity
    write(f, b"version 2")
    wait_until(lambda: len(got.calls) == 2, what="second version")
    assert got.calls[1] == ("once.png", 9)


def test_unusual_file_names_work(make_watcher, capture):
    names = ["with space.png", "ünïcødé_眼底.png", "new\nline.png", "-leading-dash.png", "--.jpg",
             "%s.png" % ("x" * 200)]
    for n in names:
        write(capture / n)
    got = Collector()
    make_watcher(got, True).start()
    wait_until(lambda: len(got.calls) == len(names), what="all oddly named files")
    assert sorted(got.names()) == sorted(names)


def test_an_exception_in_on_ready_is_logged_and_the_watcher_continues(make_watcher, capture, caplog):
    got = Collector()

    def flaky(path):
        if path.name == "boom.png":
            raise RuntimeError("consumer bug")
        got(path)

    write(capture / "boom.png")
    make_watcher(flaky, True).start()
    time.sleep(2 * STABLE)
    write(capture / "fine.png")
    wait_until(lambda: got.calls, what="fine.png after the failure")
    assert got.names() == ["fine.png"]
    assert any("boom.png" in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.parametrize("use_watchdog", MODES)
def test_a_file_the_consumer_forgets_is_offered_again_at_the_next_rescan_not_in_a_tight_loop(
        make_watcher, capture, use_watchdog):
    offers = []  # type: List[float]
    box = []  # type: List[CaptureWatcher]

    def disk_full_twice(path):
        offers.append(time.monotonic())
        if len(offers) <= 2:
            box[0].forget(path)
            raise OSError(28, "No space left on device")

    w = make_watcher(disk_full_twice, use_watchdog, rescan_seconds=0.5)
    box.append(w)
    write(capture / "a.png")
    w.start()
    wait_until(lambda: len(offers) == 3, timeout=10.0, what="the third offer of a.png")
    time.sleep(1.2)                                   # two more rescans: taken on the third offer, done
    assert len(offers) == 3
    gaps = [b - a for a, b in zip(offers, offers[1:])]
    assert min(gaps) >= 0.4, gaps                     # at most one retry per rescan period


def test_a_failed_file_that_is_not_forgotten_is_not_offered_again(make_watcher, capture):
    offers = []  # type: List[str]

    def failing(path):
        offers.append(path.name)
        raise OSError(28, "No space left on device")

    w = make_watcher(failing, False, rescan_seconds=0.2)
    write(capture / "a.png")
    w.start()
    wait_until(lambda: offers, what="the first offer")
    time.sleep(1.0)
    assert offers == ["a.png"]


def test_forget_from_another_thread_re_offers_an_unchanged_file_once(make_watcher, capture):
    got = Collector()
    w = make_watcher(got, False, rescan_seconds=0.2)
    write(capture / "a.png")
    write(capture / "b.png")
    w.start()
    wait_until(lambda: len(got.calls) == 2, what="both files")
    w.forget(capture / "a.png")
    wait_until(lambda: len(got.calls) == 3, what="a.png offered again")
    time.sleep(0.8)
    assert sorted(got.names()) == ["a.png", "a.png", "b.png"]


def test_pending_counts_files_waiting_to_become_stable(make_watcher, capture):
    got = Collector()
    w = make_watcher(got, True, stable_seconds=30.0)
    w.start()
    write(capture / "waiting.png")
    wait_until(lambda: w.pending() == 1, what="the file to be pending")
    assert got.calls == []
    (capture / "waiting.png").unlink()
    w.scan_now()
    wait_until(lambda: w.pending() == 0, what="the vanished file to be forgotten")


def test_a_capture_folder_created_after_start_is_watched(tmp_path):
    got = Collector()
    folder = tmp_path / "later"
    w = CaptureWatcher(folder, got, stable_seconds=STABLE, rescan_seconds=0.2)
    w.start()
    try:
        time.sleep(0.3)
        folder.mkdir()
        write(folder / "first.png")
        wait_until(lambda: got.calls, timeout=3.0, what="a file in the new folder")
    finally:
        w.stop(5.0)


def test_an_idle_watcher_uses_almost_no_cpu(make_watcher, capture):
    got = Collector()
    w = make_watcher(got, True)
    w.start()
    write(capture / "one.png")
    wait_until(lambda: got.calls, what="one.png")
    before = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(1.0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 0.05


def test_stop_ends_the_thread_promptly_and_start_twice_is_an_error(make_watcher):
    w = make_watcher(Collector(), True)
    w.start()
    with pytest.raises(RuntimeError):
        w.start()
    t0 = time.monotonic()
    assert w.stop(5.0) is True
    assert time.monotonic() - t0 < 2.0


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        CaptureWatcher("/tmp", lambda p: None, stable_seconds=-1)
    with pytest.raises(ValueError):
        CaptureWatcher("/tmp", lambda p: None, rescan_seconds=0)
    with pytest.raises(TypeError):
        CaptureWatcher("/tmp", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        CaptureWatcher("/tmp", lambda p: None, extensions=".png")  # type: ignore[arg-type]
