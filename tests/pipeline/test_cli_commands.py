"""The vessel-seg command line: lazy help, --version everywhere, validate-config, bin2png, segment."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from pipefakes import fundus_like, tiny_bundle, write_image

from vessel_seg import __version__
from vessel_seg.config import DEFAULT_CONFIG_FILE
from vessel_seg.pipeline.cli.main import available_commands, main
from vessel_seg.pipeline.engine.binfile import PROB_NBYTES, probability_to_bytes
from vessel_seg.pipeline.store.results import is_complete


def _py(code):
    return subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60)


def test_top_level_help_lists_commands_without_importing_heavy_modules():
    r = _py("import sys\nfrom vessel_seg.pipeline.cli.main import main\ntry:\n    main(['--help'])\n"
            "except SystemExit as e:\n"
            "    code = e.code\nprint('EXIT', code, sorted(m for m in ('cv2', 'flask', 'numpy', 'vessel_seg.device') "
            "if m in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert "EXIT 0 []" in r.stdout
    assert {"run", "segment", "bin2png", "validate-config", "bench"} <= set(available_commands())
    for name in available_commands():
        assert name in r.stdout


@pytest.mark.parametrize("module", ["vessel_seg", "vessel_seg.pipeline"])
def test_python_dash_m_runs_the_cli(module, tmp_path):
    r = subprocess.run([sys.executable, "-m", module, "--version"], cwd=str(tmp_path),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "vessel-seg %s" % __version__


@pytest.mark.parametrize("command", sorted(available_commands()))
def test_every_command_has_version_and_help(command, capsys):
    with pytest.raises(SystemExit) as ei:
        main([command, "--version"])
    assert ei.value.code == 0
    assert capsys.readouterr().out.strip() == "vessel-seg %s" % __version__
    with pytest.raises(SystemExit) as ei:
        main([command, "--help"])
    assert ei.value.code == 0 and "usage: vessel-seg %s" % command in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_validate_config_ok(capsys):
    assert main(["validate-config", str(DEFAULT_CONFIG_FILE)]) == 0
    assert capsys.readouterr().out.strip() == "ok"


def test_validate_config_lists_every_error_and_exits_1(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("web:\n  port: http\nfoo: 1\n")
    assert main(["validate-config", str(p)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["%s:2: web.port: expected an integer, got 'http'" % p,
                     "%s:3: foo: unknown key (allowed here: data_dir, device, dicom, ingest, logging, model, "
                     "pipeline, web)" % p]


def test_bin2png_converts_and_resizes(tmp_path, capsys):
    import cv2

    b = tmp_path / "probability.bin"
    b.write_bytes(probability_to_bytes(np.full((512, 512), 0.5, np.float32)))
    png = tmp_path / "p.png"
    assert main(["bin2png", str(b), "--out", str(png), "--size", "565x584"]) == 0
    gray = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert gray.shape == (584, 565) and int(gray[100, 100]) == 128


def test_bin2png_rejects_a_file_of_the_wrong_size(tmp_path, capsys):
    b = tmp_path / "short.bin"
    b.write_bytes(b"\0" * (PROB_NBYTES - 4))
    assert main(["bin2png", str(b), "--out", str(tmp_path / "x.png")]) == 1
    assert "exactly 1048576 bytes" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_bin2png_rejects_a_bad_size_argument(tmp_path, capsys):
    b = tmp_path / "p.bin"
    b.write_bytes(probability_to_bytes(np.zeros((512, 512), np.float32)))
    assert main(["bin2png", str(b), "--out", str(tmp_path / "x.png"), "--size", "big"]) == 1
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_segment_writes_one_folder_per_stem_and_reports_bad_inputs(tmp_path, capsys):
    bundle = tiny_bundle(tmp_path / "bundle")
    good = write_image(tmp_path / "eye.png", fundus_like(180, 160))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out"
    code = main(["segment", "--runtime", "sim", "--model", str(bundle), "--out", str(out), str(good), str(bad)])
    assert code == 1
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err and is_complete(out / "eye")
    meta = json.loads((out / "eye" / "result.json").read_text())
    assert meta["model"] == {"name": "tiny-test-net", "version": "9.9.9"} and meta["runtime"] == "sim"
    assert bad.exists() and good.exists()          # one-shot never moves inputs


def test_segment_refuses_inputs_sharing_a_stem(tmp_path, capsys):
    a = write_image(tmp_path / "x.png", fundus_like(64, 64))
    b = write_image(tmp_path / "x.jpg", fundus_like(64, 64))
    assert main(["segment", "--out", str(tmp_path / "o"), str(a), str(b)]) == 2
    assert "stem" in capsys.readouterr().err


def test_camera_sim_writes_complete_images_into_the_capture_folder(tmp_path):
    from PIL import Image

    import vessel_seg.camera.simulator  # noqa: F401

    code = main(["camera-sim", "--to", str(tmp_path), "--count", "2", "--rate", "100", "--size", "96x80"])
    assert code == 0
    files = sorted(tmp_path.iterdir())
    assert len(files) == 2
    for f in files:
        with Image.open(str(f)) as img:
            assert img.size == (96, 80)
