"""`vessel-seg doctor`: one line per check, FAIL for what would stop the service, exit 1 on any FAIL."""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from vessel_seg.models import bundle_dir
from vessel_seg.pipeline.cli import doctor
from vessel_seg.pipeline.cli.doctor import FAIL, OK, WARN

LINE = re.compile(r"^(OK   |WARN |FAIL )[a-z]{1,11} +\S")


def _me() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _make_bundle(tmp_path) -> str:
    dest = tmp_path / "models" / "vessel-unet"
    shutil.copytree(str(bundle_dir("vessel-unet")), str(dest))
    om = dest / "model.om"
    if om.exists():
        om.unlink()
    return str(dest)


def _write_config(tmp_path, runtime="sim", bundle=None, extra="") -> str:
    data = tmp_path / "data"
    for sub in ("capture", "results", "quarantine", "state"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    path = etc / "config.yaml"
    path.write_text(textwrap.dedent("""\
        data_dir: {data}
        device:
          runtime: {runtime}
        model:
          bundle: {bundle}
        """).format(data=data, runtime=runtime, bundle=bundle or _make_bundle(tmp_path)) + extra)
    return str(path)


def _fake_systemctl(tmp_path, active="active", load="loaded") -> str:
    path = tmp_path / "systemctl"
    path.write_text("#!/bin/sh\ncase \"$1\" in\n  show) echo LoadState=%s ;;\n  is-active) echo %s ;;\nesac\n"
                    % (load, active))
    path.chmod(0o755)
    return str(path)


def _fake_acl(tmp_path, count=1, ret=0, cann_version="5.0.4") -> str:
    """A stand-in pyACL module plus a cann.env pointing at it, next to the config (as install.sh writes)."""
    site = tmp_path / "cann" / "python" / "site-packages"
    site.mkdir(parents=True)
    (site / "acl.py").write_text(textwrap.dedent("""\
        class rt(object):
            @staticmethod
            def get_device_count():
                return {count}, {ret}
        def init(config_path=None):
            return 0
        def finalize():
            return 0
        """).format(count=count, ret=ret))
    home = tmp_path / "cann" / "latest"
    home.mkdir()
    (home / "version.info").write_text("Version=%s\n" % cann_version)
    return 'ASCEND_TOOLKIT_HOME="%s"\nPYTHONPATH="%s"\n' % (home, site)


def _by_name(checks):
    return {c.name: c for c in checks}


def test_a_healthy_sim_installation_passes_every_check(tmp_path):
    config = _write_config(tmp_path)
    checks = doctor.run_checks(config, systemctl=_fake_systemctl(tmp_path), service_user=_me())
    assert [c.name for c in checks] == ["config", "dirs", "disk", "model", "runtime", "devices", "python", "service"]
    assert all(c.status == OK for c in checks), checks
    assert all(LINE.match(c.line()) for c in checks), [c.line() for c in checks]
    assert _by_name(checks)["config"].line() == "OK   config      %s valid" % config


def test_missing_config_file_fails_with_its_path(tmp_path):
    checks = doctor.run_checks(str(tmp_path / "nope.yaml"), systemctl=_fake_systemctl(tmp_path))
    c = _by_name(checks)["config"]
    assert c.status == FAIL and "nope.yaml not found" in c.detail


def test_invalid_config_fails_naming_line_and_key_and_later_checks_still_run(tmp_path):
    config = _write_config(tmp_path, extra="pipeline:\n  queue_size: eight\n")
    checks = _by_name(doctor.run_checks(config, systemctl=_fake_systemctl(tmp_path), service_user=_me()))
    assert checks["config"].status == FAIL
    assert "pipeline.queue_size" in checks["config"].detail
    assert re.search(r"config\.yaml:\d+", checks["config"].detail)
    assert checks["dirs"].status == OK            # data_dir still taken from the broken file
    assert str(tmp_path / "data") in checks["dirs"].detail


def test_tampered_model_file_fails_the_hash_check(tmp_path):
    bundle = _make_bundle(tmp_path)
    with open(os.path.join(bundle, "model.onnx"), "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    config = _write_config(tmp_path, bundle=bundle)
    c = _by_name(doctor.run_checks(config, systemctl=_fake_systemctl(tmp_path)))["model"]
    assert c.status == FAIL and "sha256 mismatch" in c.detail


def test_acl_runtime_without_model_om_fails_and_names_convert_om(tmp_path):
    config = _write_config(tmp_path, runtime="acl")
    c = doctor.check_model(doctor.check_config(config)[0], "acl")
    assert c.status == FAIL and "model.om missing" in c.detail and "convert_om.sh" in c.detail


def test_data_directory_not_writable_by_the_service_user_fails(tmp_path):
    _write_config(tmp_path)                    # makes the data folders
    results = tmp_path / "data" / "results"
    results.chmod(0o755)
    (tmp_path / "data").chmod(0o755)
    who = doctor.Identity(uid=654321, gids=[654321], name="vessel-seg")   # owns nothing here
    checks = doctor.check_directories(str(tmp_path / "data"), who)
    assert checks[0].status == FAIL
    assert "not writable by vessel-seg" in checks[0].detail and str(results) in checks[0].detail


def test_missing_data_directory_is_a_warning_when_the_daemon_can_create_it(tmp_path):
    who = doctor.Identity(os.geteuid(), [os.getegid()], "me")
    c = doctor.check_directories(str(tmp_path / "fresh" / "data"), who)[0]
    assert c.status == WARN and "creates it" in c.detail


def test_group_write_permission_counts_for_group_members(tmp_path):
    d = tmp_path / "capture"
    d.mkdir()
    d.chmod(0o2770)
    st = os.stat(str(d))
    member = doctor.Identity(uid=654321, gids=[st.st_gid], name="camera")
    stranger = doctor.Identity(uid=654321, gids=[654321], name="other")
    assert member.can(str(d), want_write=True)
    assert not stranger.can(str(d), want_write=False)


def test_low_disk_space_is_a_warning(tmp_path):
    c = doctor.check_disk(str(tmp_path), min_free_bytes=1 << 62)
    assert c.status == WARN and "GB free" in c.detail
    assert doctor.check_disk(str(tmp_path), min_free_bytes=1).status == OK


def test_pyacl_is_probed_with_the_cann_env_the_service_gets(tmp_path):
    config = _write_config(tmp_path, runtime="auto")
    with open(os.path.join(os.path.dirname(config), "cann.env"), "w") as fh:
        fh.write("# generated by install.sh\n" + _fake_acl(tmp_path, count=1))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASCEND_TOOLKIT_HOME")}
    checks = _by_name(doctor.run_checks(config, systemctl=_fake_systemctl(tmp_path), env=env))
    assert checks["runtime"].status == OK, checks["runtime"]
    assert "pyACL importable (with cann.env), CANN 5.0.4, 1 device(s)" in checks["runtime"].detail


def test_pyacl_reporting_no_device_fails_on_runtime_acl(tmp_path):
    env = dict(os.environ)
    env.update(doctor.parse_env_lines(_fake_acl(tmp_path, count=0).splitlines()))
    c = doctor.check_runtime("acl", env, "5.0.4", from_cann_env=True)
    assert c.status == FAIL and "no NPU found" in c.detail
    assert doctor.check_runtime("auto", env, "5.0.4", from_cann_env=True).status == WARN


def test_pyacl_missing_fails_on_acl_and_warns_on_auto(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    acl = doctor.check_runtime("acl", env, None, from_cann_env=False)
    auto = doctor.check_runtime("auto", env, None, from_cann_env=False)
    assert acl.status == FAIL and "pyACL not importable" in acl.detail and "cann.env" in acl.detail
    assert auto.status == WARN and "SIMULATOR" in auto.detail
    assert doctor.check_runtime("sim", env, None, from_cann_env=False).status == OK


def test_cann_version_comes_from_version_info_or_install_info(tmp_path):
    home = tmp_path / "ascend-toolkit" / "latest"
    home.mkdir(parents=True)
    assert doctor.find_cann_version({"ASCEND_TOOLKIT_HOME": str(home)}) is None
    (home / "ascend_toolkit_install.info").write_text("package_name=Ascend-cann-toolkit\nversion=5.1.RC2\n")
    assert doctor.find_cann_version({"ASCEND_TOOLKIT_HOME": str(home)}) == "5.1.RC2"
    (home / "version.info").write_text("Version=6.0.1\n")
    assert doctor.find_cann_version({"ASCEND_TOOLKIT_HOME": str(home)}) == "6.0.1"


@pytest.mark.parametrize("version, cann, runtime, expected", [
    ((3, 7, 5), "5.0.4", "acl", OK),
    ((3, 9, 2), None, "acl", OK),
    ((3, 11, 2), "5.0.4", "acl", FAIL),
    ((3, 11, 2), "5.0.4", "auto", WARN),
    ((3, 11, 2), "5.0.4", "sim", OK),
    ((3, 11, 2), "8.0.RC2", "acl", OK),
    ((3, 10, 0), "7.0.0", "acl", OK),
    ((3, 6, 9), "5.0.4", "acl", FAIL),
])
def test_python_version_is_checked_against_what_pyacl_supports(version, cann, runtime, expected):
    assert doctor.check_python(runtime, version, cann).status == expected


def _fake_dev(tmp_path, mode=0o660):
    dev = tmp_path / "dev"
    dev.mkdir()
    for n in doctor.NPU_NODES:
        (dev / n).write_text("")
        (dev / n).chmod(mode)
    return str(dev)


def test_npu_device_nodes_must_exist_and_be_openable_by_the_service_user(tmp_path):
    dev = _fake_dev(tmp_path)
    owner = doctor.Identity(os.geteuid(), [os.getegid()], "owner")
    stranger = doctor.Identity(654321, [654321], "vessel-seg")
    assert doctor.check_devices("acl", dev, owner).status == OK
    c = doctor.check_devices("acl", dev, stranger)
    assert c.status == FAIL and "cannot open" in c.detail and "usermod -aG" in c.detail
    os.unlink(os.path.join(dev, "hisi_hdc"))
    c = doctor.check_devices("acl", dev, owner)
    assert c.status == FAIL and "hisi_hdc" in c.detail
    assert doctor.check_devices("sim", dev, owner).status == OK


@pytest.mark.parametrize("active, load, expected", [
    ("active", "loaded", OK), ("failed", "loaded", FAIL), ("activating", "loaded", WARN),
    ("inactive", "not-found", WARN)])
def test_service_state_comes_from_systemctl(tmp_path, active, load, expected):
    c = doctor.check_service(_fake_systemctl(tmp_path, active=active, load=load))
    assert c.status == expected


def test_service_is_not_applicable_without_systemctl(monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    c = doctor.check_service()
    assert c.status == OK and "not applicable" in c.detail


def test_env_file_values_are_unquoted_like_systemd_does(tmp_path):
    f = tmp_path / "cann.env"
    f.write_text('# comment\nA="x y"\nB=plain\nC=\'single\'\nD="say \\"hi\\" \\\\ ok"\n\nbroken line\n')
    assert doctor.read_env_file(str(f)) == {"A": "x y", "B": "plain", "C": "single", "D": 'say "hi" \\ ok'}
    assert doctor.read_env_file(str(tmp_path / "absent.env")) == {}


def test_cli_doctor_prints_one_line_per_check_and_exits_1_on_failure(tmp_path):
    config = _write_config(tmp_path, runtime="acl")          # no model.om, no pyACL, no NPU here
    proc = subprocess.run([sys.executable, "-m", "vessel_seg", "doctor", "--config", config], cwd=str(tmp_path),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert lines[0] == "OK   config      %s valid" % config
    assert any(ln.startswith("FAIL model") for ln in lines)
    assert all(LINE.match(ln) for ln in lines[:-1]), lines
    assert lines[-1].endswith("check(s) failed")


def test_cli_doctor_exits_0_when_nothing_fails(tmp_path, capsys):
    config = _write_config(tmp_path)
    args = argparse.Namespace(config=config, as_user=_me())
    assert doctor.run(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "all checks passed"
    assert len(out) == 9


def test_cli_doctor_rejects_an_unknown_user_clearly(tmp_path, capsys):
    config = _write_config(tmp_path)
    assert doctor.run(argparse.Namespace(config=config, as_user="no-such-user-xyz")) == 2
    assert "no such user: no-such-user-xyz" in capsys.readouterr().err
