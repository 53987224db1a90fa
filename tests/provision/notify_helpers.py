"""Helpers shared by the provisioning tests: a real sd_notify receiver socket."""
from __future__ import annotations

import socket
import time
from typing import Callable, List, Optional


class NotifyReceiver:
    """An AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, address: str, sock: socket.socket) -> None:
        self.address = address          # value for NOTIFY_SOCKET
        self.sock = sock
        self.messages = []  # type: List[str]

    def receive(self, timeout: float = 1.0) -> Optional[str]:
        """Next datagram as text, or None when nothing arrives within timeout."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return None
        text = data.decode("utf-8")
        self.messages.append(text)
        return text

    def drain(self) -> List[str]:
        """All datagrams already queued, without waiting."""
        out = []
        while True:
            msg = self.receive(timeout=0.01)
            if msg is None:
                return out
            out.append(msg)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> Optional[str]:
        """First datagram (received from now on) matching predicate, or None after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            msg = self.receive(timeout=min(left, 0.5))
            if msg is not None and predicate(msg):
                return msg


def fields(message: str) -> dict:
    """Parse one notify datagram into {KEY: VALUE}."""
    out = {}
    for line in message.split("\n"):
        key, _, value = line.partition("=")
        out[key] = value
    return out
