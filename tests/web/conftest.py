"""Fixtures for the web tests: a FakeDaemon over a temp data dir and a Flask test client."""
from __future__ import annotations

import os
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
for _p in (_ROOT, _HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from vessel_seg.web import create_app  # noqa: E402
from web_fakes import FakeDaemon  # noqa: E402


@pytest.fixture
def daemon(tmp_path):
    return FakeDaemon(tmp_path / "data")


@pytest.fixture
def app(daemon):
    return create_app(daemon, {})


@pytest.fixture
def client(app):
    return app.test_client()
