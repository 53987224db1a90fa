"""Fixtures for the web tests: a FakeDaemon over a temp data dir and a Flask test client."""
from __future__ import annotations

import pytest
from web_fakes import FakeDaemon

from vessel_seg.web import create_app


@pytest.fixture
def daemon(tmp_path):
    return FakeDaemon(tmp_path / "data")


@pytest.fixture
def app(daemon):
    return create_app(daemon, {})


@pytest.fixture
def client(app):
    return app.test_client()
