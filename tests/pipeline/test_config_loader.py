"""Configuration: documented defaults, validation with file/line/key/reason, safe-reload diffing."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from vessel_seg.config import DEFAULT_CONFIG_FILE
from vessel_seg.models import bundle_dir
from vessel_seg.pipeline.appliance.config import (
    SCHEMA,
    ConfigError,
    default_config,
    diff_config,
    load_config,
    parse_config_text,
    resolve_bundle_dir,
    resolve_path,
    set_key,
)

SHIPPED = DEFAULT_CONFIG_FILE


def _leaf_keys(schema, prefix=""):
    for key, spec in schema.items():
        dotted = prefix + key
        if isinstance(spec, dict):
            yield from _leaf_keys(spec, dotted + ".")
        else:
            yield dotted


def test_shipped_file_equals_the_built_in_defaults():
    assert parse_config_text(SHIPPED.read_text()) == default_config()


def test_relative_paths_in_a_file_are_relative_to_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "etc"
    folder.mkdir()
    cfg_file = folder / "c.yaml"
    cfg_file.write_text("data_dir: data\ningest: {archive_dir: ../arch}\nmodel: {bundle: ~/m}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(cfg_file)
    assert cfg["data_dir"] == str((folder / "data").resolve())
    assert cfg["ingest"]["archive_dir"] == str((tmp_path / "arch").resolve())
    assert cfg["model"]["bundle"] == str(Path("~/m").expanduser())


def test_defaults_and_values_set_without_a_file_resolve_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_path(default_config()["data_dir"]) == tmp_path / "var"


def test_every_key_is_in_the_shipped_file_with_a_comment_above_it():
    lines = SHIPPED.read_text().splitlines()
    for dotted in _leaf_keys(SCHEMA):
        leaf = dotted.split(".")[-1]
        idx = [i for i, line in enumerate(lines) if re.match(r"\s*%s:" % re.escape(leaf), line)]
        assert idx, "%s missing from the shipped config" % dotted
        assert lines[idx[0] - 1].strip().startswith("#"), "%s has no comment" % dotted


def test_defaults_work_without_a_board():
    cfg = default_config()
    assert cfg.device.runtime == "auto"
    assert cfg["device"]["sim"]["compute"] == "real"
    assert cfg.model.threshold is None


def test_an_empty_file_means_defaults(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("# nothing\n")
    assert load_config(p) == default_config()


def test_values_override_defaults_and_ints_widen_to_floats():
    cfg = parse_config_text("ingest:\n  stable_seconds: 2\npipeline:\n  queue_size: 3\n")
    assert cfg.ingest.stable_seconds == 2.0 and isinstance(cfg.ingest.stable_seconds, float)
    assert cfg.pipeline.queue_size == 3
    assert cfg.pipeline.pre_workers == default_config().pipeline.pre_workers


def test_unknown_key_is_reported_with_file_line_and_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("web:\n  enabled: true\n  colour: blue\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    (issue,) = ei.value.issues
    assert issue.source == str(p) and issue.line == 3 and issue.key == "web.colour"
    assert "unknown key" in issue.reason
    assert str(issue).startswith("%s:3: web.colour:" % p)


def test_wrong_types_are_each_reported_on_their_line():
    text = "pipeline:\n  queue_size: eight\n  pre_workers: true\nweb:\n  port: 8080.5\nlogging:\n  level: LOUD\n"
    with pytest.raises(ConfigError) as ei:
        parse_config_text(text, "x.yaml")
    got = {(i.key, i.line) for i in ei.value.issues}
    assert got == {("pipeline.queue_size", 2), ("pipeline.pre_workers", 3), ("web.port", 5), ("logging.level", 7)}


def test_bool_is_not_accepted_as_a_number():
    with pytest.raises(ConfigError, match="queue_size"):
        parse_config_text("pipeline:\n  queue_size: yes\n")


def test_ranges_are_checked():
    with pytest.raises(ConfigError, match="must be <= 1"):
        parse_config_text("model:\n  threshold: 1.5\n")
    with pytest.raises(ConfigError, match="must be >= 1"):
        parse_config_text("pipeline:\n  queue_size: 0\n")
    with pytest.raises(ConfigError, match="must be > 0"):
        parse_config_text("ingest:\n  rescan_seconds: 0\n")


def test_choices_are_enforced():
    with pytest.raises(ConfigError, match="'keep', 'archive'"):
        parse_config_text("ingest:\n  after: delete\n")


def test_section_must_be_a_mapping():
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config_text("web: 8080\n")


def test_yaml_syntax_errors_carry_a_line():
    with pytest.raises(ConfigError) as ei:
        parse_config_text("web:\n  port: [1, 2\n", "s.yaml")
    assert ei.value.issues[0].line is not None and "invalid YAML" in ei.value.issues[0].reason


def test_duplicate_keys_are_rejected():
    with pytest.raises(ConfigError, match="duplicate key"):
        parse_config_text("web:\n  port: 1\n  port: 2\n")


def test_sim_faults_are_validated_item_by_item():
    ok = parse_config_text("device:\n  sim:\n    faults:\n      - {call: acl.mdl.execute, code: 507011}\n")
    assert ok.device.sim.faults == [{"call": "acl.mdl.execute", "code": 507011, "times": 1, "after": 0}]
    with pytest.raises(ConfigError) as ei:
        parse_config_text("device:\n  sim:\n    faults:\n      - {call: x, code: abc, when: 1}\n")
    keys = sorted(i.key for i in ei.value.issues)
    assert keys == ["device.sim.faults[0].code", "device.sim.faults[0].when"]


def test_extensions_must_look_like_extensions_and_are_lowercased():
    assert parse_config_text("ingest:\n  extensions: ['.PNG']\n").ingest.extensions == [".png"]
    with pytest.raises(ConfigError, match="extensions"):
        parse_config_text("ingest:\n  extensions: ['png']\n")


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_set_key_validates_overrides():
    cfg = default_config()
    set_key(cfg, "web.port", 9000)
    assert cfg.web.port == 9000
    with pytest.raises(ConfigError):
        set_key(cfg, "web.port", "x")
    with pytest.raises(ConfigError):
        set_key(cfg, "web.nope", 1)


def test_diff_separates_reloadable_from_restart_keys():
    old = default_config()
    new = default_config()
    new["logging"]["level"] = "DEBUG"
    new["model"]["threshold"] = 0.4
    new["device"]["runtime"] = "sim"
    reloadable, restart = diff_config(old, new)
    assert reloadable == ["logging.level", "model.threshold"]
    assert restart == ["device.runtime"]


def test_bundle_dir_precedence(monkeypatch, tmp_path):
    cfg = default_config()
    monkeypatch.delenv("VESSEL_SEG_MODELS", raising=False)
    assert resolve_bundle_dir(cfg) == bundle_dir("vessel-unet")
    monkeypatch.setenv("VESSEL_SEG_MODELS", str(tmp_path))
    assert resolve_bundle_dir(cfg) == tmp_path / "vessel-unet"
    (tmp_path / "model.yaml").write_text("name: x\n")
    assert resolve_bundle_dir(cfg) == tmp_path
    cfg["model"]["bundle"] = "/opt/m"
    assert resolve_bundle_dir(cfg) == Path("/opt/m")


def test_config_sections_are_attributes_and_items():
    cfg = default_config()
    assert cfg.web.port == cfg["web"]["port"]
    with pytest.raises(AttributeError):
        cfg.nope
