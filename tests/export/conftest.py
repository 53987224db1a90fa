"""Fixtures of the export tests: a real PACS (Debian's Orthanc on free ports, stopped at the end).

Tests are skipped, with the reason, when Orthanc is not installed (``.ci/run`` installs it with apt-get as root).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pipeline"))  # pipefakes (tiny bundle)
sys.path.insert(0, str(Path(__file__).resolve().parent))                       # pacs_helpers

from pacs_helpers import Orthanc, orthanc_missing  # noqa: E402


def _need_orthanc() -> None:
    why = orthanc_missing()
    if why:
        pytest.skip(why)


@pytest.fixture
def orthanc_factory(tmp_path):
    """``make(start=True, **config overrides)`` -> a started (or not yet started) Orthanc; all stopped at the end."""
    _need_orthanc()
    servers = []

    def make(start: bool = True, **overrides: Any) -> Orthanc:
        server = Orthanc(tmp_path / ("orthanc%d" % len(servers)), **overrides)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def orthanc(orthanc_factory):
    return orthanc_factory()


