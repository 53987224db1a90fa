"""The ``vessel-seg`` command line (console script ``vessel-seg = vessel_seg.pipeline.cli.main:main``).

Sub-commands are dispatched lazily: only the chosen command's module is imported, and only the chosen
command's arguments are built, so ``vessel-seg --help`` stays fast and imports neither OpenCV nor Flask.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from vessel_seg import __version__

VERSION_TEXT = "vessel-seg %s" % __version__

_CLI = "vessel_seg.pipeline.cli."

# name -> (help, "module:add_arguments", "module:run")
COMMANDS: Dict[str, Tuple[str, str, str]] = {
    "run": ("run the appliance daemon (capture folder -> NPU -> results, status page)",
            _CLI + "main:add_run_arguments", _CLI + "run:run"),
    "segment": ("segment image files once, no daemon: writes OUT/<stem>/",
                _CLI + "main:add_segment_arguments", _CLI + "segment:run"),
    "bin2png": ("convert a probability.bin (512x512 float32 LE) to an 8-bit gray PNG",
                _CLI + "main:add_bin2png_arguments", _CLI + "main:run_bin2png"),
    "camera-sim": ("camera simulator: write (synthetic) fundus images into a capture folder",
                   _CLI + "main:add_camera_sim_arguments", _CLI + "main:run_camera_sim"),
    "validate-config": ("check a configuration file: prints ok or every error (file:line: key: reason)",
                        _CLI + "main:add_validate_config_arguments", _CLI + "main:run_validate_config"),
    "bench": ("benchmark execute-only, end-to-end daemon and sequential throughput, RSS and idle CPU",
              _CLI + "bench:add_arguments", _CLI + "bench:run"),
    "stress": ("stress the real daemon: load, kill -9, hostile files, device faults, disk full, hostile HTTP",
               "vessel_seg.pipeline.proving.command:add_arguments", "vessel_seg.pipeline.proving.command:run"),
    "doctor": ("check the installation: config, directories, model bundle, runtime, service",
               _CLI + "doctor:add_arguments", _CLI + "doctor:run"),
    "export-status": ("the PACS outbox: pending, sent and rejected exports (with the PACS's reasons)",
                      _CLI + "export:add_status_arguments", _CLI + "export:run_status"),
    "export-retry": ("send rejected exports again: vessel-seg export-retry ID | --all-rejected",
                     _CLI + "export:add_retry_arguments", _CLI + "export:run_retry"),
    "evaluate": ("score the model on a labelled dataset (e.g. DRIVE) through the product path",
                 _CLI + "evaluate:add_arguments", _CLI + "evaluate:run"),
    "morphometry-check": ("validate the vessel measurements: ours vs the same on manual labels (Pearson r, bias)",
                          _CLI + "morphometry_check:add_arguments", _CLI + "morphometry_check:run"),
    "measurements": ("write the vessel measurements of every result as CSV (patient, eye, date, measures)",
                     _CLI + "measurements:add_arguments", _CLI + "measurements:run"),
}


def _resolve(ref: str) -> Callable:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def available_commands() -> Dict[str, Tuple[str, str, str]]:
    """Every command: name -> (help, "module:add_arguments", "module:run")."""
    return dict(COMMANDS)


def out(text: str = "") -> None:
    """CLI output (stdout); library code logs instead."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    """CLI error output (stderr)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _add_version(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", action="version", version=VERSION_TEXT)


def _chosen_command(argv: Sequence[str], names: Sequence[str]) -> Optional[str]:
    for arg in argv:
        if arg in names:
            return arg
        if not arg.startswith("-"):
            return None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` gets its full argument list."""
    parser = argparse.ArgumentParser(prog="vessel-seg", description="Retinal-vessel segmentation appliance "
                                     "(fundus camera + Atlas 200DK / Ascend 310).")
    _add_version(parser)
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="override the configured log level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    cmds = available_commands()
    chosen = _chosen_command(argv, list(cmds))
    for name, (help_text, add_ref, _run_ref) in cmds.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_version(p)
        if name == chosen:
            _resolve(add_ref)(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    if not args.command:
        parser.print_help()
        return 2
    from vessel_seg.pipeline.cli.logsetup import setup_logging

    setup_logging(args.log_level or getattr(args, "default_log_level", None) or "INFO")
    run = _resolve(available_commands()[args.command][2])
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        err("interrupted")
        return 130


# ---------------------------------------------------------------------------------------------- run
def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``vessel-seg run``."""
    p.add_argument("--config", metavar="FILE", help="configuration file (default: built-in defaults, "
                   "or $VESSEL_SEG_CONFIG)")
    p.add_argument("--data-dir", metavar="DIR", help="put capture/, results/, quarantine/, state/ under DIR")
    p.add_argument("--runtime", choices=["auto", "acl", "sim"], help="device runtime (overrides the config)")
    p.add_argument("--host", help="status page address (overrides web.host)")
    p.add_argument("--port", type=int, help="status page port (overrides web.port; 0 = any free port)")
    p.add_argument("--no-web", action="store_true", help="do not serve the status page")
    p.add_argument("--demo", action="store_true",
                   help="also run the camera simulator, feeding synthetic fundus images into capture/")
    p.add_argument("--demo-rate", type=float, default=0.5, metavar="PER_S",
                   help="images per second in --demo mode (default 0.5)")


# ---------------------------------------------------------------------------------------------- segment
def add_segment_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``vessel-seg segment``."""
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files to segment")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder; results go to DIR/<stem>/")
    p.add_argument("--config", metavar="FILE", help="configuration file (limits, threshold, device)")
    p.add_argument("--runtime", choices=["auto", "acl", "sim"], help="device runtime (overrides the config)")
    p.add_argument("--model", metavar="DIR", help="model bundle folder (overrides model.bundle)")
    p.add_argument("--threshold", type=float, help="binarisation threshold (default: the model's)")
    p.add_argument("--json", action="store_true", help="print one JSON summary per image")


# ---------------------------------------------------------------------------------------------- bin2png
def add_bin2png_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``vessel-seg bin2png``."""
    p.add_argument("bin", metavar="BIN", help="probability.bin (exactly 512x512 float32 little-endian)")
    p.add_argument("--out", required=True, metavar="PNG", help="output PNG")
    p.add_argument("--size", metavar="WxH", help="resize to the original size, e.g. 565x584")


def run_bin2png(args: argparse.Namespace) -> int:
    """``vessel-seg bin2png``: exit 0, or 1 with a clear message for a bad file."""
    from vessel_seg.pipeline.engine.binfile import BinFormatError, bin_to_png, parse_size

    try:
        size = parse_size(args.size) if args.size else None
        w, h = bin_to_png(args.bin, args.out, size)
    except (BinFormatError, ValueError) as exc:
        err("vessel-seg bin2png: %s" % exc)
        return 1
    except OSError as exc:
        err("vessel-seg bin2png: %s" % exc)
        return 1
    out("%s (%dx%d)" % (args.out, w, h))
    return 0


# ---------------------------------------------------------------------------------------------- camera-sim
def add_camera_sim_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``vessel-seg camera-sim`` (defined by camera.simulator)."""
    from vessel_seg.camera.simulator import add_camera_sim_arguments as add

    add(p)


def run_camera_sim(args: argparse.Namespace) -> int:
    """``vessel-seg camera-sim``."""
    from vessel_seg.camera.simulator import run_camera_sim as run

    result = run(args)
    return int(result) if isinstance(result, int) and result in (0, 1, 2) else 0


# ---------------------------------------------------------------------------------------------- validate-config
def add_validate_config_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``vessel-seg validate-config``."""
    p.add_argument("file", metavar="FILE", help="configuration file to check")


def run_validate_config(args: argparse.Namespace) -> int:
    """Print "ok" (exit 0) or every problem, one per line (exit 1)."""
    from vessel_seg.pipeline.appliance.config import ConfigError, load_config

    try:
        load_config(args.file)
    except ConfigError as exc:
        for issue in exc.issues:
            out(str(issue))
        return 1
    out("ok")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
