"""``vessel-seg doctor``: check an installation and say what is wrong, one line per check.

::

    OK   config      /etc/vessel-seg/config.yaml valid
    FAIL model       /opt/vessel-seg/models/vessel-unet: model.om missing (run convert_om.sh)
    WARN disk        0.6 GB free in /var/lib/vessel-seg (< 1.0 GB)

Exit status 1 when any check FAILs, else 0. The pyACL probe runs in a child process with the CANN
environment the service gets (``cann.env`` next to the config file, as written by install.sh), so the
answer matches what systemd sees even from a shell that never sourced set_env.sh.
"""
from __future__ import annotations

import argparse
import grp
import json
import logging
import os
import pwd
import shutil
import subprocess
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from vessel_seg.device.bundle import BundleError, load_bundle
from vessel_seg.pipeline.appliance.config import (
    ConfigError,
    default_config,
    load_config,
    resolve_bundle_dir,
    resolve_path,
)

log = logging.getLogger(__name__)

OK, WARN, FAIL = "OK", "WARN", "FAIL"
DEFAULT_CONFIG = "/etc/vessel-seg/config.yaml"
SERVICE = "vessel-seg"
SERVICE_USER = "vessel-seg"
DATA_SUBDIRS = ("capture", "results", "quarantine", "state")
NPU_NODES = ("davinci0", "davinci_manager", "devmm_svm", "hisi_hdc")
MIN_FREE_BYTES = 1 << 30
PROBE_TIMEOUT_S = 60.0
#: (lowest, highest) Python 3 minor version pyACL supports, by CANN major version (classic 200DK: 3.7-3.9).
CLASSIC_PYTHON_RANGE = (7, 9)


class UnknownUser(ValueError):
    """--as-user names a user that does not exist."""


class Check(object):
    """The outcome of one check."""

    def __init__(self, status: str, name: str, detail: str) -> None:
        self.status = status
        self.name = name
        self.detail = detail

    def line(self) -> str:
        return "%-5s%-12s%s" % (self.status, self.name, self.detail)

    def __repr__(self) -> str:
        return "Check(%r)" % self.line()


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``vessel-seg doctor``."""
    p.add_argument("--config", metavar="FILE", default=None,
                   help="configuration file to check (default: $VESSEL_SEG_CONFIG or %s)" % DEFAULT_CONFIG)
    p.add_argument("--as-user", metavar="USER", default=None,
                   help="check file and device permissions for USER (default: %s when run as root, "
                        "else you)" % SERVICE_USER)


def run(args: argparse.Namespace) -> int:
    """Print one line per check; 1 when anything FAILs."""
    path = getattr(args, "config", None) or os.environ.get("VESSEL_SEG_CONFIG") or DEFAULT_CONFIG
    try:
        checks = run_checks(path, service_user=getattr(args, "as_user", None))
    except UnknownUser as exc:
        sys.stderr.write("vessel-seg doctor: %s\n" % exc)
        return 2
    for check in checks:
        sys.stdout.write(check.line() + "\n")
    failed = [c for c in checks if c.status == FAIL]
    sys.stdout.write("%d check(s) failed\n" % len(failed) if failed else "all checks passed\n")
    sys.stdout.flush()
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------- driver
def run_checks(config_path: str, dev_dir: str = "/dev", systemctl: Optional[str] = None,
               min_free_bytes: int = MIN_FREE_BYTES, service_user: Optional[str] = None,
               env: Optional[Mapping[str, str]] = None) -> List[Check]:
    """Every check, in order. ``service_user``: whose permissions count (default: the current user,
    or the vessel-seg user when run as root and that user exists)."""
    environ = dict(os.environ if env is None else env)
    checks = []  # type: List[Check]
    config, config_check = check_config(config_path)
    checks.append(config_check)
    runtime = _get(config, "device.runtime", "auto")
    cann_env = read_env_file(os.path.join(os.path.dirname(os.path.abspath(config_path)), "cann.env"))
    probe_env = dict(environ)
    probe_env.update(cann_env)
    cann_version = find_cann_version(probe_env)
    who = _effective_identity(service_user)
    data_dir = str(resolve_path(_get(config, "data_dir", "var")))
    checks.extend(check_directories(data_dir, who))
    checks.append(check_disk(data_dir, min_free_bytes))
    checks.append(check_model(config, runtime))
    checks.append(check_runtime(runtime, probe_env, cann_version, bool(cann_env)))
    checks.append(check_devices(runtime, dev_dir, who))
    checks.append(check_python(runtime, sys.version_info[:3], cann_version))
    checks.append(check_service(systemctl))
    return checks


# --------------------------------------------------------------------------------------------- config
def check_config(path: str) -> Tuple[Dict[str, Any], Check]:
    """Load and validate the configuration; when it is invalid, later checks use the defaults overlaid with
    the file's data_dir, device.runtime and model.bundle (so they still say something useful)."""
    if not os.path.isfile(path):
        return default_config(), Check(FAIL, "config", "%s not found (install.sh writes it; or --config FILE)"
                                       % path)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        first = str(exc.issues[0]) if exc.issues else str(exc)
        more = " (+%d more; vessel-seg validate-config %s)" % (len(exc.issues) - 1, path) if len(exc.issues) > 1 else ""
        return _fallback_config(_raw_yaml(path), os.path.dirname(os.path.abspath(path))), Check(FAIL, "config",
                                                                                             first + more)
    return cfg, Check(OK, "config", "%s valid" % path)


def _raw_yaml(path: str) -> Optional[Dict[str, Any]]:
    try:
        import yaml

        with open(path, "r") as fh:
            data = yaml.safe_load(fh)
    except Exception:  # noqa: BLE001 - any parse/read problem means "no usable raw config"
        return None
    return data if isinstance(data, dict) else None


def _fallback_config(raw: Optional[Dict[str, Any]], base_dir: str) -> Dict[str, Any]:
    """Defaults overlaid with what the invalid file says (its relative paths anchored at ``base_dir``)."""
    cfg = default_config()  # type: Dict[str, Any]
    for dotted in ("data_dir", "device.runtime", "model.bundle"):
        value = _get(raw or {}, dotted, None)
        if isinstance(value, str) and value:
            if dotted != "device.runtime":
                value = os.path.join(base_dir, os.path.expanduser(value))
            _set(cfg, dotted, value)
    return cfg


def _get(cfg: Mapping[str, Any], dotted: str, default: Any) -> Any:
    node = cfg  # type: Any
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _set(cfg: Dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = cfg
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


# --------------------------------------------------------------------------------------------- permissions
class Identity(object):
    """Whose permissions a check evaluates: uid, gids and a name for messages."""

    def __init__(self, uid: int, gids: Sequence[int], name: str) -> None:
        self.uid = uid
        self.gids = set(gids)
        self.name = name

    def can(self, path: str, want_write: bool) -> bool:
        """Read (+write) and, for directories, search permission by mode bits (root may do anything)."""
        if self.uid == 0:
            return True
        try:
            st = os.stat(path)
        except OSError:
            return False
        if st.st_uid == self.uid:
            shift = 6
        elif st.st_gid in self.gids:
            shift = 3
        else:
            shift = 0
        bits = (st.st_mode >> shift) & 7
        need = 4 | (2 if want_write else 0) | (1 if os.path.isdir(path) else 0)
        return bits & need == need


def _effective_identity(service_user: Optional[str]) -> Identity:
    name = service_user
    if name is None and os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
            name = SERVICE_USER
        except KeyError:
            name = None
    if name is None:
        me = pwd.getpwuid(os.geteuid()).pw_name if _has_pw(os.geteuid()) else str(os.geteuid())
        return Identity(os.geteuid(), os.getgroups() + [os.getegid()], me)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UnknownUser("no such user: %s" % name)
    gids = [entry.pw_gid] + [g.gr_gid for g in grp.getgrall() if name in g.gr_mem]
    return Identity(entry.pw_uid, gids, name)


def _has_pw(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def check_directories(data_dir: str, who: Identity) -> List[Check]:
    """The data directory and its capture/results/quarantine/state: present and writable by ``who``."""
    out = []  # type: List[Check]
    if not os.path.isdir(data_dir):
        parent = _existing_parent(data_dir)
        if who.can(parent, want_write=True):
            return [Check(WARN, "dirs", "%s missing; the daemon creates it (%s can write %s)"
                          % (data_dir, who.name, parent))]
        return [Check(FAIL, "dirs", "%s missing and %s cannot create it (run install.sh)" % (data_dir, who.name))]
    problems, notes = [], []
    for sub in ("",) + DATA_SUBDIRS:
        path = os.path.join(data_dir, sub) if sub else data_dir
        if not os.path.isdir(path):
            if who.can(data_dir, want_write=True):
                notes.append("%s/ missing (will be created)" % sub)
            else:
                problems.append("%s missing" % path)
        elif not who.can(path, want_write=True):
            problems.append("%s not writable by %s" % (path, who.name))
    if problems:
        out.append(Check(FAIL, "dirs", "; ".join(problems) + " (chown -R %s: %s)" % (SERVICE_USER, data_dir)))
    elif notes:
        out.append(Check(WARN, "dirs", "%s: %s" % (data_dir, ", ".join(notes))))
    else:
        out.append(Check(OK, "dirs", "%s and %s/ writable by %s" % (data_dir, "/, ".join(DATA_SUBDIRS), who.name)))
    return out


def _existing_parent(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def check_disk(data_dir: str, min_free_bytes: int = MIN_FREE_BYTES) -> Check:
    """Free space where the results go; WARN below ``min_free_bytes``."""
    where = _existing_parent(data_dir)
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return Check(FAIL, "disk", "cannot stat %s: %s" % (where, exc))
    text = "%.1f GB free in %s" % (free / 1e9, where)
    if free < min_free_bytes:
        return Check(WARN, "disk", "%s (< %.1f GB; the pipeline pauses when the disk fills)"
                     % (text, min_free_bytes / 1e9))
    return Check(OK, "disk", text)


# --------------------------------------------------------------------------------------------- model
def check_model(config: Mapping[str, Any], runtime: str) -> Check:
    """Bundle integrity (device.bundle.load_bundle: files, shapes, sha256 of every file), model.om for acl."""
    path = str(resolve_bundle_dir(config))
    try:
        bundle = load_bundle(path)
    except BundleError as exc:
        return Check(FAIL, "model", str(exc))
    name_version, has_om = "%s %s" % (bundle.name, bundle.version), bundle.has_om
    if not has_om and runtime == "acl":
        return Check(FAIL, "model", "%s: model.om missing: the NPU runs .om models; run convert_om.sh with ATC "
                     "(docs/DEPLOY.md)" % path)
    om = "model.om present" if has_om else "no model.om (simulator uses model.onnx)"
    if not has_om and runtime == "auto":
        return Check(WARN, "model", "%s %s hashes ok, %s; runtime auto needs it on the NPU" % (path, name_version, om))
    return Check(OK, "model", "%s %s, hashes ok, %s" % (path, name_version, om))


# --------------------------------------------------------------------------------------------- runtime
def read_env_file(path: str) -> Dict[str, str]:
    """KEY=VALUE lines of a systemd EnvironmentFile (quotes removed); {} when absent."""
    try:
        with open(path, "r") as fh:
            return parse_env_lines(fh.read().splitlines())
    except OSError:
        return {}


def parse_env_lines(lines: Sequence[str]) -> Dict[str, str]:
    """Parse EnvironmentFile lines: comments and blank lines skipped, one level of quotes removed."""
    out = {}  # type: Dict[str, str]
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def find_cann_version(env: Mapping[str, str]) -> Optional[str]:
    """The CANN version from $ASCEND_TOOLKIT_HOME/version.info or ascend_toolkit_install.info."""
    homes = [env.get(k) for k in ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH", "ASCEND_AICPU_PATH")]
    for home in [h for h in homes if h]:
        for name in ("version.info", "ascend_toolkit_install.info", "ascend_nnrt_install.info"):
            for path in (os.path.join(home, name), os.path.join(os.path.dirname(home.rstrip("/")), name)):
                version = _version_from_file(path)
                if version:
                    return version
    return None


def _version_from_file(path: str) -> Optional[str]:
    try:
        with open(path, "r", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition("=")
                if key.strip().lower() == "version" and value.strip():
                    return value.strip()
    except OSError:
        return None
    return None


def supported_python_range(cann_version: Optional[str]) -> Tuple[int, int]:
    """(lowest, highest) Python 3 minor version pyACL supports for this CANN version."""
    try:
        major = int((cann_version or "").split(".")[0])
    except ValueError:
        return CLASSIC_PYTHON_RANGE
    if major >= 8:
        return (7, 11)
    if major >= 7:
        return (7, 10)
    return CLASSIC_PYTHON_RANGE


_PROBE = r"""
import json, sys
out = {"importable": False}
try:
    from vessel_seg.device.runtime import load_runtime
    acl, _name, _warning = load_runtime("acl")
    out["importable"] = True
except Exception as exc:
    out["error"] = str(exc)
else:
    try:
        try:
            ret = acl.init()
        except TypeError:
            ret = acl.init("")
        out["init"] = ret
        count, ret = acl.rt.get_device_count()
        out["device_count"] = count
        out["count_ret"] = ret
    except Exception as exc:
        out["count_error"] = "%s: %s" % (type(exc).__name__, exc)
    finally:
        try:
            acl.finalize()
        except Exception:
            pass
sys.stdout.write("\n" + json.dumps(out) + "\n")
"""


def probe_acl(env: Mapping[str, str], timeout: float = PROBE_TIMEOUT_S) -> Dict[str, Any]:
    """Import pyACL through device.runtime in a child process with ``env``; count devices."""
    child_env = dict(env)
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], env=child_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, universal_newlines=True)
    except subprocess.TimeoutExpired:
        return {"importable": False, "error": "pyACL probe did not finish in %.0f s (driver hung?)" % timeout}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"importable": False, "error": "pyACL probe exited with %s: %s" % (proc.returncode, tail)}
    return json.loads(lines[-1])


def check_runtime(runtime: str, env: Mapping[str, str], cann_version: Optional[str], from_cann_env: bool) -> Check:
    """Is pyACL importable (in the service's CANN environment), which CANN, how many NPUs."""
    if runtime == "sim":
        return Check(OK, "runtime", "sim configured: the simulated ACL runtime (pyACL not needed)")
    result = probe_acl(env)
    version = "CANN %s" % (cann_version or "version unknown")
    where = " (with cann.env)" if from_cann_env else ""
    if not result.get("importable"):
        text = "pyACL not importable%s: %s" % (where, result.get("error", "unknown error"))
        if not from_cann_env:
            text += " (no cann.env next to the config: install.sh captures set_env.sh into it)"
        if runtime == "acl":
            return Check(FAIL, "runtime", text)
        return Check(WARN, "runtime", text + "; runtime auto falls back to the SIMULATOR")
    count = result.get("device_count")
    if result.get("count_error") or result.get("count_ret") not in (0, None) or not count:
        detail = result.get("count_error") or "ret %s" % result.get("count_ret")
        text = "pyACL importable%s, %s, but no NPU found (get_device_count: %s, count %s)" % (
            where, version, detail, count)
        return Check(FAIL if runtime == "acl" else WARN, "runtime", text)
    return Check(OK, "runtime", "pyACL importable%s, %s, %d device(s)" % (where, version, count))


def check_devices(runtime: str, dev_dir: str, who: Identity) -> Check:
    """The NPU device nodes exist and ``who`` may open them (the davinci group, HwHiAiUser on a 200DK)."""
    missing = [n for n in NPU_NODES if not os.path.exists(os.path.join(dev_dir, n))]
    if runtime == "sim":
        return Check(OK, "devices", "not needed (sim runtime)")
    if missing:
        status = FAIL if runtime == "acl" else WARN
        return Check(status, "devices", "missing %s in %s (driver not loaded? npu-smi info)" % (", ".join(missing),
                                                                                             dev_dir))
    denied = [n for n in NPU_NODES if not who.can(os.path.join(dev_dir, n), want_write=True)]
    if denied:
        try:
            group = grp.getgrgid(os.stat(os.path.join(dev_dir, denied[0])).st_gid).gr_name
        except (KeyError, OSError):
            group = "the owning group"
        return Check(FAIL if runtime == "acl" else WARN, "devices", "%s cannot open %s (usermod -aG %s %s)" % (
            who.name, ", ".join(os.path.join(dev_dir, n) for n in denied), group, who.name))
    return Check(OK, "devices", "%s present, accessible to %s" % (", ".join(NPU_NODES), who.name))


def check_python(runtime: str, version: Sequence[int], cann_version: Optional[str]) -> Check:
    """This Python against what pyACL supports (3.7-3.9 on the classic 200DK CANN)."""
    lo, hi = supported_python_range(cann_version)
    text = "Python %d.%d.%d" % tuple(version[:3])
    supported = version[0] == 3 and lo <= version[1] <= hi
    span = "3.%d-3.%d for CANN %s" % (lo, hi, cann_version or "(classic)")
    if supported:
        return Check(OK, "python", "%s (pyACL supports %s)" % (text, span))
    if runtime == "sim":
        return Check(OK, "python", "%s (sim runtime; pyACL would need %s)" % (text, span))
    return Check(FAIL if runtime == "acl" else WARN, "python", "%s: pyACL supports %s; reinstall with "
                 "install.sh --python python3.%d" % (text, span, lo))


# --------------------------------------------------------------------------------------------- service
def check_service(systemctl: Optional[str] = None, unit: str = SERVICE) -> Check:
    """``systemctl is-active vessel-seg`` where systemd runs; otherwise not applicable."""
    exe = systemctl or shutil.which("systemctl")
    if not exe:
        return Check(OK, "service", "not applicable (no systemctl)")
    if systemctl is None and not os.path.isdir("/run/systemd/system"):
        return Check(OK, "service", "not applicable (systemd is not running here)")
    try:
        load = subprocess.run([exe, "show", "-p", "LoadState", unit], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=10).stdout.strip()
        active = subprocess.run([exe, "is-active", unit], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(WARN, "service", "cannot ask systemd: %s" % exc)
    if load.endswith("=not-found"):
        return Check(WARN, "service", "%s.service not installed (sudo ./install.sh)" % unit)
    if active == "active":
        return Check(OK, "service", "%s active" % unit)
    if active in ("activating", "reloading", "inactive"):
        return Check(WARN, "service", "%s %s (systemctl status %s)" % (unit, active, unit))
    return Check(FAIL, "service", "%s %s (journalctl -u %s -n 50)" % (unit, active or "unknown", unit))


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m pipeline.doctor``: the same as ``vessel-seg doctor``."""
    parser = argparse.ArgumentParser(prog="vessel-seg doctor", description=__doc__.splitlines()[0])
    add_arguments(parser)
    logging.basicConfig(level=logging.WARNING)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
