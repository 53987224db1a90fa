"""Fixtures for the provisioning tests."""
from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from typing import Iterator

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
for _path in (REPO, HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from notify_helpers import NotifyReceiver  # noqa: E402


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
