"""The dicom.export and retention configuration: names and defaults as documented, every mistake reported."""
from __future__ import annotations

import pytest

from vessel_seg.pipeline.appliance.config import ConfigError, default_config, parse_config_text
from vessel_seg.pipeline.cli.main import main as cli


def test_defaults_are_export_off_dimse_to_pacs_and_keep_ten_percent_free():
    c = default_config()
    assert c["dicom"]["export"] == {"enabled": False, "protocol": "dimse", "host": "127.0.0.1", "port": 104,
                                    "called_ae_title": "PACS", "calling_ae_title": "VESSELSEG", "url": None,
                                    "objects": ["seg", "secondary_capture"]}
    assert c["retention"] == {"max_age_days": None, "min_free_percent": 10.0}


@pytest.mark.parametrize("text, key, words", [
    ("dicom: {export: {enabled: true, protocol: stow}}", "dicom.export.url", "must be set"),
    ("dicom: {export: {protocol: http}}", "dicom.export.protocol", "one of 'dimse', 'stow'"),
    ("dicom: {export: {objects: [seg, report]}}", "dicom.export.objects", "non-empty list"),
    ("dicom: {export: {objects: []}}", "dicom.export.objects", "non-empty list"),
    ("dicom: {export: {called_ae_title: THIS_IS_FAR_TOO_LONG}}", "dicom.export.called_ae_title", "16 characters"),
    ("dicom: {export: {port: 0}}", "dicom.export.port", ">= 1"),
    ("retention: {max_age_days: 0}", "retention.max_age_days", "> 0"),
    ("retention: {min_free_percent: 101}", "retention.min_free_percent", "<= 100"),
])
def test_mistakes_are_reported_with_the_key_and_the_reason(text, key, words):
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, "cfg.yaml")
    (issue,) = info.value.issues
    assert issue.key == key and words in issue.reason


def test_stow_with_a_url_and_an_age_limit_are_accepted():
    c = parse_config_text("dicom: {export: {enabled: true, protocol: stow, url: 'http://pacs:8042/dicom-web'}}\n"
                          "retention: {max_age_days: 30, min_free_percent: 15}\n")
    assert c["dicom"]["export"]["url"] == "http://pacs:8042/dicom-web" and c["retention"]["max_age_days"] == 30.0


def test_export_commands_without_a_journal_say_so_and_exit_1(tmp_path, capsys):
    assert cli(["export-status", "--data-dir", str(tmp_path)]) == 1
    assert "no journal" in capsys.readouterr().err
    assert cli(["export-retry", "--data-dir", str(tmp_path)]) == 2                 # neither ID nor --all-rejected
    assert cli(["export-retry", "NOT-AN-ID", "--data-dir", str(tmp_path)]) == 2


def test_the_stow_target_shown_on_the_page_has_no_credentials():
    from vessel_seg.pipeline.export.transport import StowTransport

    assert StowTransport("https://board:s3cret@pacs.example:8443/dicom-web/").describe() == \
        "STOW-RS to https://pacs.example:8443/dicom-web/studies"
