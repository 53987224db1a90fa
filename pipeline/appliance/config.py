"""Configuration: schema, defaults, a validating YAML loader and safe-reload diffing.

The loader composes the YAML document first (``yaml.compose``) so every problem can be reported with the
file, the line, the dotted key and the reason, e.g.::

    /etc/vessel-seg/config.yaml:12: pipeline.queue_size: expected an integer, got 'eight'

Unknown keys, wrong types and out-of-range values are all errors; missing keys take their defaults.
``Config`` is a dict whose sections are also reachable as attributes (``config.web.port``).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml

from vessel_seg.models import DEFAULT_BUNDLE as DEFAULT_BUNDLE_NAME
from vessel_seg.models import bundle_dir

MODELS_ENV = "VESSEL_SEG_MODELS"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigIssue(object):
    """One problem found in a configuration file."""

    def __init__(self, source: str, line: Optional[int], key: str, reason: str) -> None:
        self.source = source
        self.line = line
        self.key = key
        self.reason = reason

    def __str__(self) -> str:
        where = self.source if self.line is None else "%s:%d" % (self.source, self.line)
        return "%s: %s: %s" % (where, self.key or "(document)", self.reason)

    def __repr__(self) -> str:
        return "ConfigIssue(%r)" % str(self)


class ConfigError(ValueError):
    """The configuration is invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class Config(dict):
    """A configuration mapping whose keys are also attributes; nested sections are ``Config`` too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for key, value in list(self.items()):
            if isinstance(value, dict) and not isinstance(value, Config):
                dict.__setitem__(self, key, Config(value))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __deepcopy__(self, memo: Dict[int, Any]) -> "Config":
        return Config(copy.deepcopy(dict(self), memo))

    def as_dict(self) -> Dict[str, Any]:
        """A plain nested-dict copy (for JSON and YAML output)."""
        return _plain(self)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------- schema
class Field(object):
    """A leaf of the schema: accepted kinds, default and an optional extra check.

    kinds: any of "str", "int", "float", "bool", "null", "list_str", "faults". ``path``: the value names a
    file or folder; in a configuration file a relative one is relative to that file's folder.
    """

    def __init__(self, kinds: Sequence[str], default: Any, choices: Optional[Sequence[Any]] = None,
                 minimum: Optional[float] = None, maximum: Optional[float] = None,
                 exclusive_minimum: bool = False, path: bool = False) -> None:
        self.kinds = tuple(kinds)
        self.path = path
        self.default = default
        self.choices = tuple(choices) if choices is not None else None
        self.minimum = minimum
        self.maximum = maximum
        self.exclusive_minimum = exclusive_minimum

    def describe(self) -> str:
        names = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
                 "null": "null", "list_str": "a list of strings", "faults": "a list of fault mappings"}
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        return " or ".join(names[k] for k in self.kinds)


FAULT_KEYS = {"call": "str", "code": "int", "times": "int", "after": "int"}

SCHEMA: Dict[str, Any] = {
    "data_dir": Field(["str"], "var", path=True),
    "ingest": {
        "stable_seconds": Field(["float"], 1.0, minimum=0.0),
        "rescan_seconds": Field(["float"], 30.0, minimum=0.0, exclusive_minimum=True),
        "after": Field(["str"], "keep", choices=["keep", "archive"]),
        "archive_dir": Field(["str", "null"], None, path=True),
        "max_bytes": Field(["int"], 64 * 1024 * 1024, minimum=1),
        "max_pixels": Field(["int"], 40000000, minimum=1),
        "extensions": Field(["list_str"], [".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".ppm", ".webp"]),
        "identity_pattern": Field(["str", "null"], None),
        "identity_sidecar": Field(["bool"], False),
    },
    "dicom": {
        "receiver": {
            "enabled": Field(["bool"], False),
            "ae_title": Field(["str"], "VESSELSEG"),
            "port": Field(["int"], 11112, minimum=1, maximum=65535),
            "allowed_ae_titles": Field(["list_str"], []),
        },
        "export": {
            "enabled": Field(["bool"], False),
            "protocol": Field(["str"], "dimse", choices=["dimse", "stow"]),
            "host": Field(["str"], "127.0.0.1"),
            "port": Field(["int"], 104, minimum=1, maximum=65535),
            "called_ae_title": Field(["str"], "PACS"),
            "calling_ae_title": Field(["str"], "VESSELSEG"),
            "url": Field(["str", "null"], None),
            "objects": Field(["list_str"], ["seg", "secondary_capture"]),
        },
    },
    "pipeline": {
        "queue_size": Field(["int"], 8, minimum=1),
        "pre_workers": Field(["int"], 2, minimum=1, maximum=16),
        "post_workers": Field(["int"], 2, minimum=1, maximum=16),
        "shutdown_timeout_s": Field(["float"], 20.0, minimum=0.0),
        "overlay_alpha": Field(["float"], 0.6, minimum=0.0, maximum=1.0),
        "thumb_size": Field(["int"], 256, minimum=16, maximum=1024),
        "retry_interval_s": Field(["float"], 5.0, minimum=0.0, exclusive_minimum=True),
        "full_size_images": Field(["str"], "on_request", choices=["on_request", "eager"]),
        "opencv_threads": Field(["int"], 1, minimum=0, maximum=64),
        "morphometry": Field(["bool"], True),
    },
    "device": {
        "runtime": Field(["str"], "auto", choices=["auto", "acl", "sim"]),
        "device_id": Field(["int"], 0, minimum=0),
        "retries": Field(["int"], 3, minimum=0),
        "hang_timeout_s": Field(["float"], 30.0, minimum=0.0, exclusive_minimum=True),
        "sim": {
            "precision": Field(["str"], "fp32", choices=["fp32", "fp16"]),
            "device_time_ms": Field(["float", "null"], None, minimum=0.0),
            "compute": Field(["str"], "real", choices=["real", "surrogate"]),
            "faults": Field(["faults"], []),
            "hang_execute": Field(["bool"], False),
            "hang_after": Field(["int", "null"], None, minimum=0),
        },
    },
    "model": {
        "bundle": Field(["str", "null"], None, path=True),
        "threshold": Field(["float", "null"], None, minimum=0.0, maximum=1.0),
        "high_resolution": Field(["bool"], True),
    },
    "web": {
        "enabled": Field(["bool"], True),
        "host": Field(["str"], "127.0.0.1"),
        "port": Field(["int"], 8080, minimum=0, maximum=65535),
        "token": Field(["str", "null"], None),
        "max_upload_bytes": Field(["int"], 50 * 1024 * 1024, minimum=1),
    },
    "logging": {
        "level": Field(["str"], "INFO", choices=list(LOG_LEVELS)),
    },
    "retention": {
        "max_age_days": Field(["float", "null"], None, minimum=0.0, exclusive_minimum=True),
        "min_free_percent": Field(["float"], 10.0, minimum=0.0, maximum=100.0),
    },
}

#: What ``dicom.export.objects`` may list.
EXPORT_OBJECTS = ("seg", "secondary_capture")

#: Keys a SIGHUP may change in a running daemon; everything else needs a restart.
RELOADABLE_KEYS = (
    "logging.level",
    "model.threshold",
    "pipeline.overlay_alpha",
    "pipeline.morphometry",
    "pipeline.thumb_size",
    "pipeline.retry_interval_s",
    "ingest.rescan_seconds",
    "ingest.stable_seconds",
    "ingest.max_bytes",
    "ingest.max_pixels",
    "ingest.after",
)


def _defaults(schema: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, spec in schema.items():
        out[key] = _defaults(spec) if isinstance(spec, dict) else copy.deepcopy(spec.default)
    return out


def default_config() -> Config:
    """The built-in defaults (what an empty file means): work on a dev machine without a board."""
    return Config(_defaults(SCHEMA))


# --------------------------------------------------------------------------------------------- checking
def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _accepts(field: Field, value: Any) -> Tuple[bool, Any]:
    """Whether ``value`` has one of the field's kinds; returns the (possibly widened) value."""
    kind = _kind_of(value)
    for want in field.kinds:
        if want == kind:
            return True, value
        if want == "float" and kind == "int":
            return True, float(value)
        if want == "list_str" and kind == "list" and all(isinstance(v, str) for v in value):
            return True, list(value)
        if want == "faults" and kind == "list":
            return True, value
    return False, value


def _check_faults(value: List[Any], key: str, line_of: Callable[[str], Optional[int]],
                  source: str) -> Tuple[List[Dict[str, Any]], List[ConfigIssue]]:
    issues: List[ConfigIssue] = []
    out: List[Dict[str, Any]] = []
    for i, item in enumerate(value):
        ikey = "%s[%d]" % (key, i)
        if not isinstance(item, dict):
            issues.append(ConfigIssue(source, line_of(ikey), ikey, "expected a mapping with call and code"))
            continue
        fault: Dict[str, Any] = {"times": 1, "after": 0}
        for fk, fv in item.items():
            sub = "%s.%s" % (ikey, fk)
            if fk not in FAULT_KEYS:
                issues.append(ConfigIssue(source, line_of(sub), sub,
                                          "unknown key (allowed: %s)" % ", ".join(sorted(FAULT_KEYS))))
                continue
            want = FAULT_KEYS[fk]
            if _kind_of(fv) != want:
                issues.append(ConfigIssue(source, line_of(sub), sub,
                                          "expected %s, got %r" % ("a string" if want == "str" else "an integer", fv)))
                continue
            if want == "int" and fv < 0:
                issues.append(ConfigIssue(source, line_of(sub), sub, "must be >= 0, got %r" % fv))
                continue
            fault[fk] = fv
        for required in ("call", "code"):
            if required not in item:
                issues.append(ConfigIssue(source, line_of(ikey), ikey, "missing required key %r" % required))
        out.append(fault)
    return out, issues


def _check_value(field: Field, value: Any, key: str, line_of: Callable[[str], Optional[int]],
                 source: str) -> Tuple[Any, List[ConfigIssue]]:
    ok, value = _accepts(field, value)
    line = line_of(key)
    if not ok:
        return None, [ConfigIssue(source, line, key, "expected %s, got %r" % (field.describe(), value))]
    if "faults" in field.kinds and isinstance(value, list):
        return _check_faults(value, key, line_of, source)
    if value is None:
        return value, []
    if field.choices is not None and value not in field.choices:
        return None, [ConfigIssue(source, line, key, "expected %s, got %r" % (field.describe(), value))]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if field.minimum is not None:
            if field.exclusive_minimum and not value > field.minimum:
                return None, [ConfigIssue(source, line, key, "must be > %s, got %r" % (field.minimum, value))]
            if value < field.minimum:
                return None, [ConfigIssue(source, line, key, "must be >= %s, got %r" % (field.minimum, value))]
        if field.maximum is not None and value > field.maximum:
            return None, [ConfigIssue(source, line, key, "must be <= %s, got %r" % (field.maximum, value))]
    if "list_str" in field.kinds and key.endswith("extensions"):
        bad = [v for v in value if not v.startswith(".") or len(v) < 2]
        if bad:
            return None, [ConfigIssue(source, line, key, "extensions must look like '.png', got %r" % bad)]
        value = [v.lower() for v in value]
    if "list_str" in field.kinds and key == "dicom.export.objects":
        bad = [v for v in value if v not in EXPORT_OBJECTS]
        if bad or not value:
            return None, [ConfigIssue(source, line, key, "expected a non-empty list of %s, got %r"
                                      % (", ".join(EXPORT_OBJECTS), value))]
        value = [v for v in EXPORT_OBJECTS if v in value]
    if key.endswith("_ae_title") and isinstance(value, str) and (len(value) > 16 or "\\" in value):
        return None, [ConfigIssue(source, line, key, "an AE title has at most 16 characters and no backslash")]
    if "str" in field.kinds and isinstance(value, str) and value == "" and field.choices is None:
        return None, [ConfigIssue(source, line, key, "must not be empty")]
    problem = _special_check(key, value)
    if problem:
        return None, [ConfigIssue(source, line, key, problem)]
    return value, []


def _ae_title_problem(title: str) -> Optional[str]:
    if not 1 <= len(title.strip()) <= 16 or len(title) > 16:
        return "an AE title has 1 to 16 characters, got %r" % (title,)
    if "\\" in title or any(not (32 <= ord(c) < 127) for c in title):
        return "an AE title is printable ASCII without a backslash, got %r" % (title,)
    return None


def _special_check(key: str, value: Any) -> Optional[str]:
    """Checks of single keys beyond their kind and range: file-name patterns, AE titles."""
    if key == "ingest.identity_pattern" and isinstance(value, str):
        from vessel_seg.pipeline.engine.identity import PatternError, compile_pattern

        try:
            compile_pattern(value)
        except PatternError as exc:
            return str(exc)
    if key == "dicom.receiver.ae_title" and isinstance(value, str):
        return _ae_title_problem(value)
    if key == "dicom.receiver.allowed_ae_titles" and isinstance(value, list):
        for title in value:
            problem = _ae_title_problem(title)
            if problem:
                return problem
    return None


def _merge(schema: Dict[str, Any], base: Dict[str, Any], data: Any, prefix: str,
           line_of: Callable[[str], Optional[int]], source: str) -> List[ConfigIssue]:
    """Validate ``data`` against ``schema`` and write accepted values into ``base``."""
    issues: List[ConfigIssue] = []
    if not isinstance(data, dict):
        key = prefix or "(document)"
        return [ConfigIssue(source, line_of(prefix), key, "expected a mapping, got %r" % (data,))]
    for key, value in data.items():
        dotted = "%s.%s" % (prefix, key) if prefix else str(key)
        if not isinstance(key, str) or key not in schema:
            allowed = ", ".join(sorted(schema))
            issues.append(ConfigIssue(source, line_of(dotted), dotted, "unknown key (allowed here: %s)" % allowed))
            continue
        spec = schema[key]
        if isinstance(spec, dict):
            if value is None:  # an empty section ("web:" with nothing under it) keeps the defaults
                continue
            issues.extend(_merge(spec, base[key], value, dotted, line_of, source))
        else:
            checked, problems = _check_value(spec, value, dotted, line_of, source)
            if problems:
                issues.extend(problems)
            else:
                base[key] = checked
    return issues


def _line_map(node: Any, prefix: str, out: Dict[str, int], dups: List[Tuple[str, int]]) -> None:
    """Record the 1-based line of every dotted key (and list item) under ``node``."""
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            dotted = "%s.%s" % (prefix, key) if prefix else key
            if dotted in seen:
                dups.append((dotted, key_node.start_mark.line + 1))
            seen.add(dotted)
            out[dotted] = key_node.start_mark.line + 1
            _line_map(value_node, dotted, out, dups)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            dotted = "%s[%d]" % (prefix, i)
            out[dotted] = item.start_mark.line + 1
            _line_map(item, dotted, out, dups)


def _anchor_paths(schema: Dict[str, Any], config: Dict[str, Any], data: Any, base_dir: Path) -> None:
    """Make the relative path values the document itself sets absolute, against ``base_dir``."""
    if not isinstance(data, dict):
        return
    for key, spec in schema.items():
        if key not in data:
            continue
        if isinstance(spec, dict):
            _anchor_paths(spec, config[key], data[key], base_dir)
        elif spec.path and isinstance(config[key], str):
            p = Path(os.path.expanduser(config[key]))
            config[key] = str(p if p.is_absolute() else (base_dir / p).resolve())


def parse_config_text(text: str, source: str = "<string>", base_dir: Optional[Path] = None) -> Config:
    """Validate YAML text against the schema; raise ``ConfigError`` listing every problem.

    With ``base_dir`` (a file's folder), relative paths in the text are anchored there; without it they
    stay relative, like the defaults, and resolve against the working directory when used.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = "invalid YAML: %s" % (getattr(exc, "problem", None) or exc)
        raise ConfigError([ConfigIssue(source, line, "", reason)])
    lines: Dict[str, int] = {}
    dups: List[Tuple[str, int]] = []
    if node is not None:
        _line_map(node, "", lines, dups)
    issues = [ConfigIssue(source, line, key, "duplicate key") for key, line in dups]
    config = default_config()
    if data is not None:
        issues.extend(_merge(SCHEMA, config, data, "", lines.get, source))
    export = config["dicom"]["export"]
    if not issues and export["enabled"] and export["protocol"] == "stow" and not export["url"]:
        issues.append(ConfigIssue(source, lines.get("dicom.export.protocol"), "dicom.export.url",
                                  "must be set (the DICOMweb root, e.g. http://pacs:8042/dicom-web) for protocol stow"))
    if issues:
        raise ConfigError(issues)
    if base_dir is not None:
        _anchor_paths(SCHEMA, config, data, base_dir)
    return Config(config)


def load_config(path: Optional[os.PathLike] = None) -> Config:
    """Load and validate a configuration file; ``None`` gives the defaults.

    Relative paths in the file are relative to its folder. Raises ``ConfigError`` (file, line, key, reason
    for each problem), also for an unreadable file.
    """
    if path is None:
        return default_config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(p), None, "", "cannot read the file: %s" % exc)])
    return parse_config_text(text, str(p), base_dir=p.resolve().parent)


# --------------------------------------------------------------------------------------------- helpers
def resolve_path(value: str) -> Path:
    """Resolve a configured path: ``~`` expanded; a relative one (a default, or a value set without a file)
    against the working directory. Paths read from a file are already absolute (:func:`load_config`)."""
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (Path.cwd() / p)


def resolve_bundle_dir(config: Dict[str, Any]) -> Path:
    """The model bundle to load: ``model.bundle`` if set, else ``$VESSEL_SEG_MODELS``, else the shipped
    vessel-unet (``vessel_seg.models``: models/ in a checkout, inside the package when installed).

    ``$VESSEL_SEG_MODELS`` may name a bundle directly (it holds model.yaml) or a models directory holding
    ``vessel-unet/``.
    """
    configured = config["model"]["bundle"]
    if configured:
        return resolve_path(configured)
    env = os.environ.get(MODELS_ENV)
    if env:
        p = resolve_path(env)
        return p if (p / "model.yaml").exists() else p / DEFAULT_BUNDLE_NAME
    return bundle_dir(DEFAULT_BUNDLE_NAME)


def set_key(config: Dict[str, Any], dotted: str, value: Any) -> None:
    """Write a dotted key after validating the value against the schema (raises ``ConfigError``)."""
    parts = dotted.split(".")
    spec: Any = SCHEMA
    for part in parts:
        if not isinstance(spec, dict) or part not in spec:
            raise ConfigError([ConfigIssue("<override>", None, dotted, "unknown key")])
        spec = spec[part]
    if isinstance(spec, dict):
        raise ConfigError([ConfigIssue("<override>", None, dotted, "is a section, not a value")])
    checked, problems = _check_value(spec, value, dotted, lambda _k: None, "<override>")
    if problems:
        raise ConfigError(problems)
    target: Any = config
    for part in parts[:-1]:
        target = target[part]
    target[parts[-1]] = checked


def is_loopback_host(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    text = str(host).strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def exposure_problem(config: Dict[str, Any]) -> Optional[str]:
    """Why this configuration must not start: the page (patient data) on the network without a token."""
    web = config["web"]
    if web["enabled"] and not web["token"] and not is_loopback_host(web["host"]):
        return ("web.host is %s, beyond loopback, and web.token is not set: the status page shows patient data, "
                "so listening on the network needs an access token. Set web.token (install.sh generates one; "
                "read it with: sudo grep token: /etc/vessel-seg/config.yaml) or set web.host to 127.0.0.1"
                % web["host"])
    return None


def _flatten(value: Any, prefix: str, out: Dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, "%s.%s" % (prefix, k) if prefix else k, out)
    else:
        out[prefix] = value


def diff_config(old: Dict[str, Any], new: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """Changed dotted keys split into (reloadable, needs_restart)."""
    a: Dict[str, Any] = {}
    b: Dict[str, Any] = {}
    _flatten(old, "", a)
    _flatten(new, "", b)
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    reloadable = [k for k in changed if k in RELOADABLE_KEYS]
    restart = [k for k in changed if k not in RELOADABLE_KEYS]
    return reloadable, restart
