"""Fixtures for the device tests: runtime switch, tiny model bundles, reference outputs.

Runtime: the simulator by default; ``--runtime=acl`` or ``VESSEL_SEG_TEST_RUNTIME=acl`` points the device-level
scenarios at the real pyACL on a board (sim-only rule tests are then skipped).  On the board the bundle needs a
``model.om``: set ``VESSEL_SEG_TEST_BUNDLE=<bundle dir with model.om>``, or have ``atc`` on PATH so the tiny test
bundles are converted with their convert_om.sh.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Callable

import pytest
from devicekit import SIZE, bundle_meta, tiny_graph

from vessel_seg.device.aipp import default_aipp_cfg_text
from vessel_seg.device.bundle import ModelBundle, load_bundle, write_bundle


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runtime", action="store", default=None, choices=("sim", "acl"),
                     help="device runtime for tests/device (default: sim, or $VESSEL_SEG_TEST_RUNTIME)")


def _runtime(config: pytest.Config) -> str:
    return config.getoption("--runtime", default=None) or os.environ.get("VESSEL_SEG_TEST_RUNTIME", "sim")


@pytest.fixture(scope="session")
def runtime(pytestconfig: pytest.Config) -> str:
    """"sim" or "acl": which runtime the device scenarios run on."""
    return _runtime(pytestconfig)


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if _runtime(config) != "acl":
        return
    skip = pytest.mark.skip(reason="simulator-only rule test (running against the real ACL runtime)")
    for item in items:
        if "sim_only" in item.keywords and "tests/device" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sim_only: enforces a simulator rule; skipped with --runtime=acl")


@pytest.fixture(autouse=True)
def fresh_simulator(runtime: str):
    """Each test starts with a fresh simulated process (no init, default options, no leaks)."""
    if runtime != "sim":
        yield
        return
    from vessel_seg.device.sim import control
    control.reset()
    yield
    control.reset()


@pytest.fixture
def sim():
    """(acl, control) of the simulator."""
    from vessel_seg.device.sim import acl, control
    return acl, control


def _maybe_convert(bundle: ModelBundle) -> ModelBundle:
    if shutil.which("atc") is None:
        pytest.skip("runtime acl: no model.om (set VESSEL_SEG_TEST_BUNDLE or put atc on PATH)")
    subprocess.run(["sh", os.path.join(bundle.path, "convert_om.sh")], check=True, timeout=900)
    return bundle


@pytest.fixture
def make_bundle(tmp_path, runtime: str) -> Callable[..., ModelBundle]:
    """Build a tiny bundle: ``make_bundle(aipp=True, size=64, channels=4, name="b")``."""
    def build(aipp: bool = True, size: int = SIZE, channels: int = 4, name: str = "b", seed: int = 0
              ) -> ModelBundle:
        cfg = default_aipp_cfg_text(size, size) if aipp else None
        bundle = write_bundle(str(tmp_path / name), tiny_graph(size, channels, seed), bundle_meta(), cfg)
        if runtime == "acl":
            bundle = _maybe_convert(bundle)
        return bundle
    return build


@pytest.fixture
def device_bundle(make_bundle, runtime: str) -> ModelBundle:
    """The bundle the device-level scenarios run: a tiny NV12/AIPP bundle (or $VESSEL_SEG_TEST_BUNDLE)."""
    path = os.environ.get("VESSEL_SEG_TEST_BUNDLE")
    if path:
        return load_bundle(path)
    return make_bundle(aipp=True)
