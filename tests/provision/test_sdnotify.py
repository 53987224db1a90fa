"""Behaviour of pipeline.sdnotify against a real AF_UNIX datagram socket."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

import pytest
from notify_helpers import fields

from vessel_seg.pipeline.appliance.sdnotify import SystemdNotifier, WatchdogPinger


def test_without_notify_socket_every_call_is_a_silent_noop():
    notifier = SystemdNotifier(env={})
    assert notifier.enabled is False
    assert notifier.ready() is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    assert notifier.reloading() is False
    assert notifier.notify(FOO="bar") is False
    assert notifier.watchdog_interval() is None


def test_default_environment_is_read_from_os_environ(monkeypatch, notify_receiver):
    monkeypatch.setenv("NOTIFY_SOCKET", notify_receiver.address)
    notifier = SystemdNotifier()
    assert notifier.enabled
    assert notifier.ready()
    assert notify_receiver.receive() == "READY=1"


def test_ready_status_and_watchdog_arrive_as_separate_datagrams(notify_receiver):
    notifier = SystemdNotifier(env={"NOTIFY_SOCKET": notify_receiver.address})
    assert notifier.ready()
    assert notifier.status("running: 3 processed, device ready")
    assert notifier.watchdog()
    assert notifier.stopping()
    assert notifier.reloading()
    assert notify_receiver.receive() == "READY=1"
    assert notify_receiver.receive() == "STATUS=running: 3 processed, device ready"
    assert notify_receiver.receive() == "WATCHDOG=1"
    assert notify_receiver.receive() == "STOPPING=1"
    assert notify_receiver.receive() == "RELOADING=1"


def test_notify_sends_all_fields_in_one_datagram_in_order(notify_receiver):
    notifier = SystemdNotifier(env={"NOTIFY_SOCKET": notify_receiver.address})
    assert notifier.notify(READY=1, STATUS="up", MAINPID=os.getpid())
    msg = notify_receiver.receive()
    assert msg == "READY=1\nSTATUS=up\nMAINPID={}".format(os.getpid())


def test_ready_with_status_is_one_message(notify_receiver):
    notifier = SystemdNotifier(env={"NOTIFY_SOCKET": notify_receiver.address})
    notifier.ready("model vessel-unet 1.0.0 on sim")
    assert fields(notify_receiver.receive()) == {"READY": "1", "STATUS": "model vessel-unet 1.0.0 on sim"}


def test_newlines_in_status_cannot_inject_extra_fields(notify_receiver):
    notifier = SystemdNotifier(env={"NOTIFY_SOCKET": notify_receiver.address})
    notifier.status("bad input\nREADY=1")
    assert notify_receiver.receive() == "STATUS=bad input READY=1"


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX") or os.uname().sysname != "Linux",
                    reason="abstract AF_UNIX sockets are Linux-only")
def test_abstract_socket_addresses_start_with_at_sign():
    name = "vessel-seg-test-{}-{}".format(os.getpid(), time.monotonic_ns() if hasattr(time, "monotonic_ns") else 0)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(1.0)
    try:
        notifier = SystemdNotifier(env={"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_send_errors_never_raise_and_are_logged_once(short_tmp, caplog):
    missing = os.path.join(short_tmp, "nobody-listens.sock")
    notifier = SystemdNotifier(env={"NOTIFY_SOCKET": missing})
    assert notifier.enabled
    with caplog.at_level(logging.DEBUG, logger="vessel_seg.pipeline.appliance.sdnotify"):
        assert notifier.ready() is False
        assert notifier.watchdog() is False
        assert notifier.status("x") is False
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "nobody-listens.sock" in warnings[0].getMessage()


def test_notifier_recovers_when_the_socket_appears_later(short_tmp):
    path = os.path.join(short_tmp, "late.sock")
    notifier = SystemdNotifier(env={"NOTIFY_SOCKET": path})
    assert notifier.watchdog() is False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(1.0)
    try:
        assert notifier.watchdog() is True
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_relative_notify_socket_is_ignored():
    assert SystemdNotifier(env={"NOTIFY_SOCKET": "relative.sock"}).enabled is False


@pytest.mark.parametrize("env, expected", [
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
    ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "me"}, None),
    ({}, None),
])
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid(env, expected):
    env = dict(env, NOTIFY_SOCKET="/run/systemd/notify")
    assert SystemdNotifier(env=env).watchdog_interval() == expected


def test_notifier_is_safe_to_use_from_many_threads(notify_receiver):
    notifier = SystemdNotifier(env={"NOTIFY_SOCKET": notify_receiver.address})
    threads = [threading.Thread(target=lambda: [notifier.watchdog() for _ in range(20)]) for _ in range(4)]
    for t in threads:
        t.start()
    received = [notify_receiver.receive(timeout=2.0) for _ in range(80)]
    for t in threads:
        t.join()
    assert received == ["WATCHDOG=1"] * 80


def test_a_receiver_that_never_reads_cannot_block_the_sender_for_long(notify_receiver):
    notifier = SystemdNotifier(env={"NOTIFY_SOCKET": notify_receiver.address})
    assert notifier.status("first") is True
    slowest = 0.0
    for _ in range(200):                   # far more than any receive queue holds
        started = time.monotonic()
        sent = notifier.status("x" * 4000)
        slowest = max(slowest, time.monotonic() - started)
        if not sent:
            break
    assert sent is False
    assert slowest < 2.0


def _pinger_env(receiver, usec=100000):
    return {"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": str(usec)}


def test_pinger_pings_at_half_the_watchdog_period_while_healthy(notify_receiver):
    notifier = SystemdNotifier(env=_pinger_env(notify_receiver, usec=100000))
    pinger = WatchdogPinger(notifier, is_healthy=lambda: True, status_text=lambda: "idle")
    assert pinger.period == pytest.approx(0.05)
    pinger.start()
    try:
        time.sleep(0.4)
    finally:
        pinger.stop()
    msgs = notify_receiver.drain()
    assert msgs[0] == "STATUS=idle"
    pings = msgs.count("WATCHDOG=1")
    assert 3 <= pings <= 10
    assert pinger.pings == pings


def test_pinger_stops_pinging_when_unhealthy_and_resumes_when_healthy(notify_receiver):
    healthy = threading.Event()
    healthy.set()
    notifier = SystemdNotifier(env=_pinger_env(notify_receiver, usec=60000))
    pinger = WatchdogPinger(notifier, is_healthy=healthy.is_set, status_text=lambda: "x").start()
    try:
        assert notify_receiver.wait_for(lambda m: m == "WATCHDOG=1", timeout=2.0)
        healthy.clear()
        time.sleep(0.1)          # let an in-progress tick finish
        notify_receiver.drain()
        time.sleep(0.4)
        assert "WATCHDOG=1" not in notify_receiver.drain()
        assert pinger.skipped >= 3
        healthy.set()
        assert notify_receiver.wait_for(lambda m: m == "WATCHDOG=1", timeout=2.0)
    finally:
        pinger.stop()


def test_pinger_treats_a_raising_health_check_as_unhealthy(notify_receiver):
    def broken():
        raise RuntimeError("health check crashed")

    notifier = SystemdNotifier(env=_pinger_env(notify_receiver))
    pinger = WatchdogPinger(notifier, is_healthy=broken, status_text=lambda: "s")
    pinger.tick()
    pinger.tick()
    assert notify_receiver.drain() == ["STATUS=s"]
    assert pinger.pings == 0 and pinger.skipped == 2


def test_pinger_sends_status_only_when_the_text_changes(notify_receiver):
    texts = iter(["starting", "starting", "running: 1 processed", "running: 1 processed", "running: 2 processed"])
    notifier = SystemdNotifier(env={"NOTIFY_SOCKET": notify_receiver.address})
    pinger = WatchdogPinger(notifier, is_healthy=lambda: True, status_text=lambda: next(texts))
    for _ in range(5):
        pinger.tick()
    assert notify_receiver.drain() == [
        "STATUS=starting", "STATUS=running: 1 processed", "STATUS=running: 2 processed"]


def test_pinger_without_systemd_watchdog_only_refreshes_status(notify_receiver):
    notifier = SystemdNotifier(env={"NOTIFY_SOCKET": notify_receiver.address})
    pinger = WatchdogPinger(notifier, is_healthy=lambda: True, status_text=lambda: "up", status_period_s=0.02)
    assert pinger.watchdog_enabled is False
    pinger.start()
    time.sleep(0.15)
    pinger.stop()
    assert notify_receiver.drain() == ["STATUS=up"]


def test_pinger_does_not_start_a_thread_without_notify_socket():
    pinger = WatchdogPinger(SystemdNotifier(env={}), lambda: True, lambda: "x", interval=0.01).start()
    assert pinger.running is False
    pinger.stop()


def test_pinger_stop_ends_the_thread_promptly(notify_receiver):
    notifier = SystemdNotifier(env=_pinger_env(notify_receiver, usec=20000000))
    pinger = WatchdogPinger(notifier, lambda: True, lambda: "x").start()
    assert pinger.running
    started = time.monotonic()
    pinger.stop()
    assert not pinger.running
    assert time.monotonic() - started < 1.0
