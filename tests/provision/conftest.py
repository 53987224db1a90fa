"""Fixtures for the provisioning tests."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
from typing import Iterator

import pytest
from notify_helpers import NotifyReceiver


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A short temporary directory (AF_UNIX paths are limited to ~107 bytes)."""
    path = tempfile.mkdtemp(prefix="vsn")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def notify_receiver(short_tmp: str) -> Iterator[NotifyReceiver]:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""
    path = os.path.join(short_tmp, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield NotifyReceiver(path, sock)
    finally:
        sock.close()
