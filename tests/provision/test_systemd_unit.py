"""systemd/vessel-seg.service: a Type=notify service that systemd 237 (Ubuntu 18.04 on the 200DK) accepts,
verified by systemd-analyze where available, hardened to an exposure score <= 4.5, and whose
MemoryDenyWriteExecute=yes does not break numpy/OpenCV (checked with the kernel's PR_SET_MDWE)."""
from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, List

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
UNIT = os.path.join(REPO, "systemd", "vessel-seg.service")
MAX_EXPOSURE = 4.5

#: Directives of systemd 237 this unit may use (a newer one would be ignored there with a warning).
SYSTEMD_237 = {
    "Unit": {"Description", "Documentation", "After", "Before", "Wants", "Requires", "StartLimitIntervalSec",
             "StartLimitBurst", "ConditionPathExists"},
    "Service": {"Type", "NotifyAccess", "WatchdogSec", "TimeoutStartSec", "TimeoutStopSec", "Restart",
                "RestartSec", "User", "Group", "SupplementaryGroups", "WorkingDirectory", "UMask",
                "EnvironmentFile", "Environment", "ExecStart", "ExecReload", "ExecStartPre", "NoNewPrivileges",
                "ProtectSystem", "ReadWritePaths", "ReadOnlyPaths", "ProtectHome", "PrivateTmp",
                "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups", "RestrictAddressFamilies",
                "RestrictNamespaces", "RestrictRealtime", "LockPersonality", "MemoryDenyWriteExecute",
                "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber", "CapabilityBoundingSet",
                "AmbientCapabilities", "RemoveIPC", "DeviceAllow", "DevicePolicy", "KillMode", "LimitNOFILE",
                "StateDirectory", "IPAddressDeny", "IPAddressAllow"},
    "Install": {"WantedBy"},
}


def parse_unit(path: str) -> Dict[str, Dict[str, List[str]]]:
    """section -> key -> every value (systemd allows repeated keys)."""
    out = {}  # type: Dict[str, Dict[str, List[str]]]
    section = None
    with open(path) as fh:
        for raw in fh:
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                out.setdefault(section, {})
                continue
            key, _, value = line.partition("=")
            assert section is not None, "directive outside a section: %r" % line
            out[section].setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def unit() -> Dict[str, Dict[str, List[str]]]:
    return parse_unit(UNIT)


def one(unit, section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, "%s= missing from [%s]" % (key, section)
    return values[-1]


def test_unit_is_type_notify_with_a_watchdog_and_only_the_main_process_may_notify(unit):
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert 10 <= int(one(unit, "Service", "WatchdogSec")) <= 60


def test_unit_restarts_on_failure_within_a_start_limit_declared_in_unit_section(unit):
    assert one(unit, "Service", "Restart") == "on-failure"
    assert int(one(unit, "Unit", "StartLimitBurst")) >= 1
    assert int(one(unit, "Unit", "StartLimitIntervalSec")) > 0
    assert "StartLimitBurst" not in unit["Service"] and "StartLimitIntervalSec" not in unit["Service"]


def test_unit_runs_the_installed_daemon_as_the_service_user_with_the_cann_environment(unit):
    assert one(unit, "Service", "User") == "vessel-seg"
    assert one(unit, "Service", "ExecStart") == \
        "/opt/vessel-seg/venv/bin/vessel-seg run --config /etc/vessel-seg/config.yaml"
    assert one(unit, "Service", "EnvironmentFile") == "-/etc/vessel-seg/cann.env"
    assert one(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_stop_timeout_leaves_room_for_the_daemon_drain(unit):
    from vessel_seg.pipeline.appliance.config import default_config

    drain = default_config()["pipeline"]["shutdown_timeout_s"]
    assert int(one(unit, "Service", "TimeoutStopSec")) > drain + 5


def test_unit_hardening_keeps_the_npu_visible(unit):
    svc = unit["Service"]
    assert one(unit, "Service", "ProtectSystem") == "strict"
    assert one(unit, "Service", "ReadWritePaths") == "/var/lib/vessel-seg"
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "ProtectKernelTunables", "ProtectKernelModules",
                "ProtectControlGroups", "RestrictRealtime", "RestrictNamespaces", "LockPersonality",
                "MemoryDenyWriteExecute"):
        assert one(unit, "Service", key) == "yes", key
    assert one(unit, "Service", "RestrictAddressFamilies").split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    assert one(unit, "Service", "CapabilityBoundingSet") == ""
    assert "PrivateDevices" not in svc            # it would hide /dev/davinci*
    assert "DynamicUser" not in svc               # the user must be in the davinci group


def test_unit_uses_only_directives_that_systemd_237_knows(unit):
    unknown = ["[%s] %s" % (section, key) for section, keys in unit.items() for key in keys
               if key not in SYSTEMD_237.get(section, set())]
    assert unknown == []


def test_unit_parses_as_ini_without_duplicates():
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment]
    parser.read(UNIT)
    assert parser.sections() == ["Unit", "Service", "Install"]


# ----------------------------------------------------------------------------------------- systemd-analyze
def staged_unit(tmp_path) -> str:
    """A copy of the unit whose /opt/vessel-seg paths live in tmp, with an executable ExecStart."""
    prefix = tmp_path / "opt" / "vessel-seg"
    exe = prefix / "venv" / "bin" / "vessel-seg"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    with open(UNIT) as fh:
        text = fh.read().replace("/opt/vessel-seg", str(prefix))
    path = tmp_path / "vessel-seg.service"
    path.write_text(text)
    return str(path)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze not installed (apt-get install systemd)")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    path = staged_unit(tmp_path)
    proc = subprocess.run(["systemd-analyze", "verify", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=60)
    ours = [ln for ln in proc.stdout.splitlines() if "vessel-seg" in ln]
    assert proc.returncode == 0, proc.stdout
    assert ours == [], ours


def _supports_offline_security() -> bool:
    if shutil.which("systemd-analyze") is None:
        return False
    proc = subprocess.run(["systemd-analyze", "security", "--help"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    return "--offline" in proc.stdout


@pytest.mark.skipif(not _supports_offline_security(),
                    reason="needs systemd-analyze security --offline (systemd >= 250)")
def test_exposure_score_is_at_most_4_5(tmp_path):
    path = staged_unit(tmp_path)
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", path],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout
    assert float(match.group(1)) <= MAX_EXPOSURE, proc.stdout


# ----------------------------------------------------------------------------------------- MemoryDenyWriteExecute
def _mdwe_supported() -> bool:
    proc = subprocess.run([sys.executable, os.path.join(HERE, "mdwe_run.py"), "json.tool", "--help"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc.returncode != 77


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _mdwe_supported(),
                    reason="kernel without prctl(PR_SET_MDWE) (Linux >= 6.3 needed to emulate "
                           "MemoryDenyWriteExecute=yes)")
def test_product_path_runs_without_writable_executable_memory(tmp_path):
    """numpy, OpenCV, Pillow and the simulator segment an image with W+X mappings forbidden."""
    from vessel_seg.camera.synthetic import encode_image, make_fundus

    rgb, _v, _f = make_fundus(width=300, height=280, seed=11)
    image = tmp_path / "eye.jpg"
    image.write_bytes(encode_image(rgb, ".jpg"))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "mdwe_run.py"), "vessel_seg", "segment",
                           str(image), "--out", str(tmp_path / "out"), "--runtime", "sim"],
                          cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert (tmp_path / "out" / "eye" / "result.json").is_file()


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _mdwe_supported(),
                    reason="kernel without prctl(PR_SET_MDWE)")
def test_status_page_stack_imports_without_writable_executable_memory():
    code = "import flask, waitress, watchdog.observers, yaml, vessel_seg.web; print('ok')"
    proc = subprocess.run([sys.executable, os.path.join(HERE, "mdwe_run.py"), "-c", code],
                          cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout
