"""install.sh, exercised with --root (a staging tree): never touches the real /etc, /var or /opt.

Every run but one uses --no-pip (no virtualenv build) and the Python running the tests; the one with pip
builds the real virtualenv from pip's cache (what ./dev.sh test filled) and checks the installed command runs.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from typing import Dict, List, Optional, Tuple

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INSTALL = os.path.join(REPO, "install.sh")
BUNDLE = "vessel-unet"


def run_install(*args: str, src: str = REPO, env: Optional[Dict[str, str]] = None,
                python: Optional[str] = sys.executable, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = ["bash", os.path.join(src, "install.sh")] + list(args)
    if python is not None and "--python" not in args:
        cmd += ["--python", python]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          env=env or dict(os.environ), timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, "install.sh failed (%d)\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr)
    return proc


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def snapshot(root: str) -> Dict[str, Tuple[int, float, str]]:
    """path -> (mode, mtime, sha256 of content) for everything under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = ""
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_mtime, digest)
    return out


def read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def actions(root: str) -> List[str]:
    return [ln for ln in read(os.path.join(root, "etc/vessel-seg/install-actions.sh")).splitlines()
            if ln and not ln.startswith("#")]


def fake_cann(base: str, version: str = "5.0.4.alpha005", where: str = "usr/local/Ascend/ascend-toolkit") -> str:
    """A CANN-like set_env.sh (+ version.info) at base/where; returns the directory."""
    d = os.path.join(base, where)
    os.makedirs(os.path.join(d, "latest"))
    toolkit = "/" + where + "/latest"
    with open(os.path.join(d, "set_env.sh"), "w") as fh:
        fh.write(textwrap.dedent("""\
            export ASCEND_TOOLKIT_HOME={t}
            export LD_LIBRARY_PATH=${{ASCEND_TOOLKIT_HOME}}/lib64:${{LD_LIBRARY_PATH}}
            export LD_LIBRARY_PATH=${{ASCEND_TOOLKIT_HOME}}/runtime/lib64:${{LD_LIBRARY_PATH}}
            export PYTHONPATH=${{ASCEND_TOOLKIT_HOME}}/python/site-packages:${{PYTHONPATH}}
            export PATH=${{ASCEND_TOOLKIT_HOME}}/bin:$PATH
            export ASCEND_OPP_PATH=${{ASCEND_TOOLKIT_HOME}}/opp
            export NOT_FOR_THE_SERVICE=1
            """).format(t=toolkit))
    with open(os.path.join(d, "latest", "version.info"), "w") as fh:
        fh.write("Version=%s\n" % version)
    return d


def fake_python(tmp_path, minor: int, venv: bool = True) -> str:
    """Python that answers install.sh's version probe as 3.<minor> (and the venv probe as told)."""
    p = tmp_path / ("python3.%d" % minor)
    p.write_text(textwrap.dedent("""\
        #!/bin/sh
        case "$2" in
          *version_info*) echo {minor}; exit 0 ;;
          *ensurepip*) exit {venv} ;;
        esac
        exec {real} "$@"
        """).format(minor=minor, venv=0 if venv else 1, real=sys.executable))
    p.chmod(0o755)
    return str(p)


def copy_source(dest: str) -> str:
    """A minimal vessel-seg source tree (what install.sh reads) that a test may modify."""
    os.makedirs(dest)
    for name in ("install.sh", "pyproject.toml"):
        shutil.copy2(os.path.join(REPO, name), os.path.join(dest, name))
    for name in ("systemd", "config", os.path.join("models", BUNDLE)):
        shutil.copytree(os.path.join(REPO, name), os.path.join(dest, name))
    return dest


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory) -> str:
    """One --sim --no-pip staging install, shared by the read-only checks below."""
    root = str(tmp_path_factory.mktemp("stage") / "root")
    ok(run_install("--root", root, "--sim", "--no-pip"))
    return root


# ----------------------------------------------------------------------------------------- the staged tree
def test_staged_install_creates_the_data_directories_with_service_modes(sim_root):
    data = os.path.join(sim_root, "var/lib/vessel-seg")
    assert mode(data) == 0o750
    assert mode(os.path.join(data, "capture")) == 0o2770      # camera account in group vessel-seg may write
    for sub in ("results", "quarantine", "state"):
        assert mode(os.path.join(data, sub)) == 0o750
    assert mode(os.path.join(sim_root, "etc/vessel-seg")) == 0o750
    assert mode(os.path.join(sim_root, "opt/vessel-seg")) == 0o755


def test_staged_config_points_at_the_installed_paths_and_validates(sim_root):
    from vessel_seg.pipeline.appliance.config import load_config

    path = os.path.join(sim_root, "etc/vessel-seg/config.yaml")
    assert mode(path) == 0o600                                     # it holds the page's access token
    cfg = load_config(path)
    assert cfg["data_dir"] == "/var/lib/vessel-seg"
    assert cfg["model"]["bundle"] == "/opt/vessel-seg/models/vessel-unet"
    assert cfg["device"]["runtime"] == "sim"
    text = read(path)
    assert "# Where the appliance keeps its data" in text         # the template's comments are kept
    dist = read(os.path.join(sim_root, "etc/vessel-seg/config.yaml.dist"))
    assert [ln for ln in text.splitlines() if not ln.startswith("  token:")] == \
        [ln for ln in dist.splitlines() if not ln.startswith("  token:")]


def test_a_fresh_config_gets_its_own_access_token_that_the_world_readable_dist_lacks(sim_root):
    from vessel_seg.pipeline.appliance.config import load_config

    token = load_config(os.path.join(sim_root, "etc/vessel-seg/config.yaml"))["web"]["token"]
    assert token and len(token) >= 32
    dist = os.path.join(sim_root, "etc/vessel-seg/config.yaml.dist")
    assert load_config(dist)["web"]["token"] is None and token not in read(dist)


def test_staged_unit_is_the_repository_unit(sim_root):
    unit = os.path.join(sim_root, "etc/systemd/system/vessel-seg.service")
    assert read(unit) == read(os.path.join(REPO, "systemd/vessel-seg.service"))
    assert mode(unit) == 0o644
    assert not os.path.exists(unit + ".d/10-cann-home.conf")


def test_staged_model_bundle_is_a_faithful_copy(sim_root):
    from vessel_seg.device.bundle import load_bundle

    dest = os.path.join(sim_root, "opt/vessel-seg/models", BUNDLE)
    bundle = load_bundle(dest)                                     # checks every sha256 in model.yaml
    assert sorted(os.listdir(dest)) == sorted(os.listdir(os.path.join(REPO, "models", BUNDLE)))
    assert bundle.name == BUNDLE
    leftovers = [n for n in os.listdir(os.path.dirname(dest)) if n.startswith(".")]
    assert leftovers == []


def test_staged_install_records_the_root_only_steps_instead_of_doing_them(sim_root):
    lines = actions(sim_root)
    assert any("useradd --system" in ln and "vessel-seg" in ln for ln in lines)
    assert "chown vessel-seg:vessel-seg /var/lib/vessel-seg/capture" in lines
    assert "chown vessel-seg:vessel-seg /etc/vessel-seg/config.yaml" in lines
    assert lines[-3:] == ["systemctl daemon-reload", "systemctl enable vessel-seg.service",
                          "systemctl restart vessel-seg.service"]
    assert not any(ln.startswith("usermod") for ln in lines)       # --sim: no NPU group to join
    text = read(os.path.join(sim_root, "etc/vessel-seg/install-actions.sh"))
    assert "# skipped (--no-pip):" in text
    assert mode(os.path.join(sim_root, "etc/vessel-seg/install-actions.sh")) == 0o700
    env = read(os.path.join(sim_root, "etc/vessel-seg/cann.env"))
    assert "--sim" in env and "LD_LIBRARY_PATH" not in env


def test_actions_file_is_valid_shell(sim_root):
    assert subprocess.run(["sh", "-n", os.path.join(sim_root, "etc/vessel-seg/install-actions.sh")]).returncode == 0


# ----------------------------------------------------------------------------------------- upgrades
def test_second_run_keeps_an_edited_config_and_refreshes_the_rest(tmp_path):
    root = str(tmp_path / "root")
    ok(run_install("--root", root, "--sim", "--no-pip"))
    conf = os.path.join(root, "etc/vessel-seg/config.yaml")
    with open(conf, "a") as fh:
        fh.write("# edited by the clinic\n")
    edited = read(conf)
    result = os.path.join(root, "var/lib/vessel-seg/results/abc/result.json")
    os.makedirs(os.path.dirname(result))
    with open(result, "w") as fh:
        fh.write("{}")
    os.chmod(os.path.join(root, "var/lib/vessel-seg/capture"), 0o700)        # drifted mode gets repaired
    second = ok(run_install("--root", root, "--sim", "--no-pip", "--no-start"))
    assert "keeping existing /etc/vessel-seg/config.yaml" in second.stdout
    assert read(conf) == edited
    assert read(result) == "{}"
    assert mode(os.path.join(root, "var/lib/vessel-seg/capture")) == 0o2770
    assert "systemctl restart vessel-seg.service" not in actions(root)       # --no-start


def test_model_om_converted_on_the_board_survives_an_upgrade_of_the_same_network(tmp_path):
    src = copy_source(str(tmp_path / "src"))
    root = str(tmp_path / "root")
    cann = fake_cann(root)
    assert cann.startswith(root)
    args = ("--root", root, "--no-pip", "--python", fake_python(tmp_path, 7))
    first = ok(run_install(*args, src=src))
    assert "no model.om" in first.stderr                             # acl needs the converted model
    om = os.path.join(root, "opt/vessel-seg/models", BUNDLE, "model.om")
    with open(om, "wb") as fh:
        fh.write(b"converted by ATC")
    ok(run_install(*args, src=src))
    assert read(om) == "converted by ATC"
    # A new network makes the old .om stale: it must not be carried over.
    yaml_path = os.path.join(src, "models", BUNDLE, "model.yaml")
    text = read(yaml_path)
    old_hash = hashlib.sha256(open(os.path.join(src, "models", BUNDLE, "model.onnx"), "rb").read()).hexdigest()
    with open(yaml_path, "w") as fh:
        fh.write(text.replace(old_hash, "0" * 64))
    third = ok(run_install(*args, src=src))
    assert "stale" in third.stderr
    assert not os.path.exists(om)


def test_a_changed_aipp_config_also_makes_the_old_model_om_stale(tmp_path):
    src = copy_source(str(tmp_path / "src"))
    root = str(tmp_path / "root")
    fake_cann(root)
    args = ("--root", root, "--no-pip", "--python", fake_python(tmp_path, 7))
    ok(run_install(*args, src=src))
    om = os.path.join(root, "opt/vessel-seg/models", BUNDLE, "model.om")
    with open(om, "wb") as fh:
        fh.write(b"converted by ATC")
    # Same network, different colour conversion: AIPP is compiled into the .om, so it must be redone.
    yaml_path = os.path.join(src, "models", BUNDLE, "model.yaml")
    old_hash = hashlib.sha256(open(os.path.join(src, "models", BUNDLE, "aipp.cfg"), "rb").read()).hexdigest()
    text = read(yaml_path)
    assert old_hash in text
    with open(yaml_path, "w") as fh:
        fh.write(text.replace(old_hash, "1" * 64))
    again = ok(run_install(*args, src=src))
    assert "stale" in again.stderr
    assert not os.path.exists(om)


# ----------------------------------------------------------------------------------------- CANN / NPU / Python
def test_acl_install_captures_the_cann_environment_for_systemd(tmp_path):
    root = str(tmp_path / "root")
    fake_cann(root)
    proc = ok(run_install("--root", root, "--no-pip", "--no-start", "--python", fake_python(tmp_path, 7)))
    assert "CANN version: 5.0.4.alpha005" in proc.stdout
    env = read(os.path.join(root, "etc/vessel-seg/cann.env"))
    lines = dict(ln.split("=", 1) for ln in env.splitlines() if ln and not ln.startswith("#"))
    home = "/usr/local/Ascend/ascend-toolkit/latest"
    assert lines["ASCEND_TOOLKIT_HOME"] == '"%s"' % home                    # no staging prefix
    assert lines["LD_LIBRARY_PATH"] == '"%s/runtime/lib64:%s/lib64"' % (home, home)   # no empty entries
    assert lines["PYTHONPATH"] == '"%s/python/site-packages"' % home
    assert lines["PATH"].startswith('"%s/bin:' % home)
    assert lines["ASCEND_OPP_PATH"] == '"%s/opp"' % home
    assert "NOT_FOR_THE_SERVICE" not in lines
    assert root not in env
    from vessel_seg.pipeline.appliance.config import load_config
    assert load_config(os.path.join(root, "etc/vessel-seg/config.yaml"))["device"]["runtime"] == "acl"
    assert "usermod -a -G HwHiAiUser vessel-seg" in actions(root)


def test_cann_in_a_home_directory_relaxes_protecthome_with_a_drop_in(tmp_path):
    root = str(tmp_path / "root")
    fake_cann(root, where="home/HwHiAiUser/Ascend/ascend-toolkit")
    ok(run_install("--root", root, "--no-pip", "--no-start", "--python", fake_python(tmp_path, 7),
                   "--cann", os.path.join(root, "home/HwHiAiUser/Ascend/ascend-toolkit")))
    dropin = os.path.join(root, "etc/systemd/system/vessel-seg.service.d/10-cann-home.conf")
    assert "ProtectHome=read-only" in read(dropin).splitlines()


def test_missing_cann_is_a_clear_error(tmp_path):
    root = str(tmp_path / "root")
    proc = run_install("--root", root, "--no-pip")
    assert proc.returncode != 0
    assert "CANN not found" in proc.stderr and "--cann DIR" in proc.stderr and "--sim" in proc.stderr
    assert not os.path.exists(os.path.join(root, "etc"))                   # nothing half-installed


def test_cann_option_pointing_nowhere_is_a_clear_error(tmp_path):
    proc = run_install("--root", str(tmp_path / "root"), "--no-pip", "--cann", str(tmp_path))
    assert proc.returncode != 0 and "no set_env.sh there" in proc.stderr


@pytest.mark.parametrize("cann_version, minor, accepted", [
    ("5.0.4", 7, True), ("5.0.4", 9, True), ("5.0.4", 11, False), ("5.0.4", 6, False),
    ("7.0.0", 10, True), ("8.0.RC2", 11, True)])
def test_python_must_be_one_that_pyacl_of_this_cann_supports(tmp_path, cann_version, minor, accepted):
    root = str(tmp_path / "root")
    fake_cann(root, version=cann_version)
    proc = run_install("--root", root, "--no-pip", "--no-start", "--python", fake_python(tmp_path, minor))
    if accepted:
        ok(proc)
        assert "(3.%d)" % minor in proc.stdout
    else:
        assert proc.returncode != 0
        assert "no Python that pyACL (CANN %s) supports" % cann_version in proc.stderr


def test_python_without_venv_support_is_a_clear_error(tmp_path):
    proc = run_install("--root", str(tmp_path / "root"), "--sim", "--python", fake_python(tmp_path, 8, venv=False))
    assert proc.returncode != 0 and "python3.8-venv" in proc.stderr


def test_missing_python_is_a_clear_error(tmp_path):
    proc = run_install("--root", str(tmp_path / "root"), "--sim", "--no-pip", "--python", "/nonexistent/python3")
    assert proc.returncode != 0 and "--python /nonexistent/python3: not found" in proc.stderr


def broken_shim(bin_dir, name: str) -> str:
    """What pyenv leaves on PATH for a version that is not installed: a command that fails to run."""
    p = bin_dir / name
    p.write_text('#!/bin/sh\necho "pyenv: %s: command not found" >&2\nexit 127\n' % name)
    p.chmod(0o755)
    return str(p)


def test_an_interpreter_candidate_that_does_not_run_is_skipped_with_a_note(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = broken_shim(bin_dir, "python3.13")
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]))
    proc = ok(run_install("--root", str(tmp_path / "root"), "--sim", "--no-pip", python=None, env=env))
    assert "skipping %s: it does not run" % shim in proc.stdout


def test_a_named_python_that_does_not_run_is_a_clear_error(tmp_path):
    shim = broken_shim(tmp_path, "python3.13")
    proc = run_install("--root", str(tmp_path / "root"), "--sim", "--no-pip", "--python", shim)
    assert proc.returncode == 1 and "--python %s: %s does not run" % (shim, shim) in proc.stderr


@pytest.mark.slow
def test_install_with_pip_skips_a_broken_candidate_and_leaves_a_working_command(tmp_path):
    """The whole install (virtualenv, pip, the package from this checkout) with a pyenv shim on PATH that fails.

    The working interpreter is this test's own base Python under the next candidate's name, so pip finds
    every dependency in its cache."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = broken_shim(bin_dir, "python3.13")
    base = os.path.join(sys.base_prefix, "bin", "python%d.%d" % sys.version_info[:2])
    os.symlink(base, str(bin_dir / "python3.12"))
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]), PIP_DISABLE_PIP_VERSION_CHECK="1")
    root = str(tmp_path / "root")
    proc = run_install("--root", root, "--sim", "--no-start", python=None, env=env, timeout=900)
    assert proc.returncode == 0, "install.sh failed (%d)\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr)
    assert "skipping %s: it does not run" % shim in proc.stdout
    command = os.path.join(root, "opt/vessel-seg/venv/bin/vessel-seg")
    version = subprocess.run([command, "--version"], stdout=subprocess.PIPE, universal_newlines=True,
                             cwd=str(tmp_path), timeout=60)
    assert version.returncode == 0 and version.stdout.strip()
    conf = os.path.join(root, "etc/vessel-seg/config.yaml")
    check = subprocess.run([os.path.join(root, "opt/vessel-seg/venv/bin/python"), "-c",
                            "import sys; from vessel_seg.pipeline.appliance.config import load_config; "
                            "print(load_config(sys.argv[1])['device']['runtime'])", conf],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                           cwd=str(tmp_path), timeout=60)
    assert check.returncode == 0 and check.stdout.strip() == "sim", check.stderr


def test_an_unexpected_failure_says_what_failed(tmp_path):
    """A failing command that no explicit check covers still names itself (never a silent exit)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "systemd").write_text("a file where the unit folder's parent should be")
    proc = run_install("--root", str(root), "--sim", "--no-pip")
    assert proc.returncode != 0
    assert "ERROR: install.sh stopped at line" in proc.stderr and "failed (exit" in proc.stderr


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="a real (non --root) run needs systemctl first")
def test_missing_npu_device_nodes_stop_a_real_install(tmp_path):
    cann = fake_cann(str(tmp_path / "cann"), where="ascend-toolkit")
    empty_dev = tmp_path / "dev"
    empty_dev.mkdir()
    # --dry-run: even if a check were missing, nothing on this machine would change.
    proc = run_install("--dry-run", "--no-pip", "--cann", cann, "--dev-dir", str(empty_dev))
    assert proc.returncode != 0
    assert "NPU device nodes missing: %s/davinci0" % empty_dev in proc.stderr


def test_missing_device_nodes_only_warn_when_staging_an_image(tmp_path):
    root = str(tmp_path / "root")
    fake_cann(root)
    empty_dev = tmp_path / "dev"
    empty_dev.mkdir()
    proc = ok(run_install("--root", root, "--no-pip", "--dev-dir", str(empty_dev),
                          "--python", fake_python(tmp_path, 7)))
    assert "NPU device nodes missing here" in proc.stderr


# ----------------------------------------------------------------------------------------- dry run
def test_dry_run_changes_nothing_in_an_existing_installation(tmp_path):
    root = str(tmp_path / "root")
    ok(run_install("--root", root, "--sim", "--no-pip"))
    before = snapshot(root)
    proc = ok(run_install("--root", root, "--sim", "--no-pip", "--dry-run"))
    assert "[dry-run]" in proc.stdout
    assert snapshot(root) == before
    ok(run_install("--root", root, "--uninstall", "--purge", "--dry-run"))
    assert snapshot(root) == before


def test_dry_run_into_an_empty_root_creates_nothing(tmp_path):
    root = str(tmp_path / "root")
    proc = ok(run_install("--root", root, "--sim", "--no-pip", "--dry-run"))
    assert not os.path.exists(root)
    assert "[dry-run] write %s/etc/vessel-seg/config.yaml" % root in proc.stdout


# ----------------------------------------------------------------------------------------- uninstall
def test_uninstall_keeps_config_and_data_and_purge_removes_them(tmp_path):
    root = str(tmp_path / "root")
    ok(run_install("--root", root, "--sim", "--no-pip"))
    result = os.path.join(root, "var/lib/vessel-seg/results/abc/result.json")
    os.makedirs(os.path.dirname(result))
    with open(result, "w") as fh:
        fh.write("{}")
    proc = ok(run_install("--root", root, "--uninstall"))
    assert "kept /etc/vessel-seg" in proc.stdout
    assert not os.path.exists(os.path.join(root, "opt/vessel-seg"))
    assert not os.path.exists(os.path.join(root, "etc/systemd/system/vessel-seg.service"))
    assert os.path.isfile(os.path.join(root, "etc/vessel-seg/config.yaml"))
    assert read(result) == "{}"
    assert "systemctl disable --now vessel-seg.service || true" in actions(root)

    ok(run_install("--root", root, "--uninstall", "--purge"))
    assert not os.path.exists(os.path.join(root, "var/lib/vessel-seg"))
    assert os.listdir(os.path.join(root, "etc/vessel-seg")) == ["install-actions.sh"]
    assert any(ln.endswith("userdel vessel-seg") for ln in actions(root))

    ok(run_install("--root", root, "--sim", "--no-pip"))                   # reinstall after purge works
    assert os.path.isfile(os.path.join(root, "etc/vessel-seg/config.yaml"))


# ----------------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("args, message", [
    (["--purge"], "--purge only makes sense with --uninstall"),
    (["--frobnicate"], "unknown option: --frobnicate"),
    (["--offline", "--sim"], "--offline needs --wheelhouse DIR"),
    (["--wheelhouse", "/nonexistent-wheels", "--sim"], "is not a directory"),
    (["--bundle", "../etc", "--sim", "--no-pip"], "--bundle must be a folder name"),
    (["--bundle", "no-such-model", "--sim", "--no-pip"], "models/no-such-model (model.yaml) missing"),
    (["--health-timeout", "soon", "--sim"], "--health-timeout must be a whole number"),
])
def test_bad_arguments_are_rejected_with_a_clear_message(tmp_path, args, message):
    proc = run_install("--root", str(tmp_path / "root"), *args)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_missing_config_template_in_the_source_tree_is_a_clear_error(tmp_path):
    src = copy_source(str(tmp_path / "src"))
    os.unlink(os.path.join(src, "config", "vessel-seg.yaml"))
    proc = run_install("--root", str(tmp_path / "root"), "--sim", "--no-pip", src=src)
    assert proc.returncode != 0 and "config/vessel-seg.yaml (the config template) missing" in proc.stderr


def test_help_lists_every_option():
    proc = ok(run_install("--help", python=None))
    for option in ("--root", "--dry-run", "--no-start", "--sim", "--uninstall", "--purge", "--python", "--cann",
                   "--offline", "--wheelhouse", "--no-pip"):
        assert option in proc.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_install_sh_is_shellcheck_clean():
    proc = subprocess.run(["shellcheck", INSTALL], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    assert proc.returncode == 0, proc.stdout
