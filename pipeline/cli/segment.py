"""``vessel-seg segment --out DIR IMAGE...``: the same stages as the daemon, once, in the foreground.

Each IMAGE gets DIR/<stem>/ with probability.bin, probability.png, mask.png, overlay.png, input.jpg, thumb.jpg,
fov.png and result.json (every image at once: there is no page to ask for them later). Input files are only
read (never moved). Bad inputs are reported and skipped; the exit
status is 1 if any image failed, 2 for usage/configuration errors.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, List

from vessel_seg.pipeline.appliance.config import ConfigError, load_config, set_key
from vessel_seg.pipeline.cli.main import err, out

log = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    """Segment every image; see the module docstring for exit codes."""
    from vessel_seg.pipeline.appliance.devicefactory import load_model_bundle, make_device, runtime_name_and_precision
    from vessel_seg.pipeline.engine.decode import DecodeError
    from vessel_seg.pipeline.engine.stages import ModelInfo, SequentialRunner, Stages, StageSettings, WorkItem

    try:
        cfg = load_config(args.config)
        if args.runtime:
            set_key(cfg, "device.runtime", args.runtime)
        if args.threshold is not None:
            set_key(cfg, "model.threshold", args.threshold)
    except ConfigError as exc:
        for issue in exc.issues:
            err("vessel-seg segment: %s" % issue)
        return 2
    images = [Path(p) for p in args.images]
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        err("vessel-seg segment: no such file: %s" % ", ".join(missing))
        return 2
    stems: dict = {}
    for p in images:
        stems.setdefault(p.stem, []).append(str(p))
    clashes = [v for v in stems.values() if len(v) > 1]
    if clashes:
        err("vessel-seg segment: inputs share an output folder name (stem): %s"
            % "; ".join(", ".join(c) for c in clashes))
        return 2
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        bundle = load_model_bundle(cfg, Path(args.model) if args.model else None)
    except Exception as exc:
        err("vessel-seg segment: %s" % exc)
        return 1
    device = make_device(bundle, cfg)
    try:
        device.start()
    except Exception as exc:
        err("vessel-seg segment: cannot open the device: %s" % exc)
        return 1
    failures: List[str] = []
    try:
        runtime, precision = runtime_name_and_precision(device, cfg)
        warning = (getattr(device, "runtime_info", None) or {}).get("warning")
        if warning:
            log.warning("%s", warning)
        settings = StageSettings.from_config(cfg)
        settings.full_size_images = "eager"           # no page to ask for them later: every file now
        stages = Stages(ModelInfo.from_bundle(bundle, runtime=runtime, precision=precision), settings, out_dir,
                        name_by="stem")
        runner = SequentialRunner(stages, device)
        for path in images:
            try:
                job = runner.process(WorkItem.for_file(path))
            except DecodeError as exc:
                failures.append(path.name)
                err("%s: %s (%s)" % (path, exc.reason, exc.detail))
                continue
            except OSError as exc:
                failures.append(path.name)
                err("%s: %s" % (path, exc))
                continue
            _report(args, path, job, stages)
    finally:
        device.close()
    if failures:
        err("%d of %d image(s) failed" % (len(failures), len(images)))
        return 1
    return 0


def _report(args: argparse.Namespace, path: Path, job: Any, stages: Any) -> None:
    result_dir = stages.result_dir(job)
    if args.json:
        with open(str(result_dir / "result.json"), "r", encoding="utf-8") as fh:
            out(json.dumps(json.load(fh), sort_keys=True))
        return
    with open(str(result_dir / "result.json"), "r", encoding="utf-8") as fh:
        meta = json.load(fh)
    out("%s -> %s  vessel density %.3f  %.0f ms" % (path, result_dir, meta["vessel_density_fov"],
                                                     meta["timings_ms"]["total"]))
