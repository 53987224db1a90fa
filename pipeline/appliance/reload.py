"""Reload (SIGHUP): apply the safe part of a new configuration to a running daemon, report the rest."""
from __future__ import annotations

import logging
from typing import Any, Dict, List

from vessel_seg.pipeline.appliance.config import Config, diff_config
from vessel_seg.pipeline.engine.stages import StageSettings

log = logging.getLogger(__name__)


def apply_reload(daemon: Any, new_config: Config) -> Dict[str, List[str]]:
    """Copy the reloadable keys that changed into ``daemon.config`` and push them to the running parts;
    returns {"applied": [...], "restart": [...]} (the changed keys that need a restart)."""
    applied, restart = diff_config(daemon.config, new_config)
    for key in applied:
        section, name = key.split(".", 1)
        daemon.config[section][name] = new_config[section][name]
    cfg = daemon.config
    if "logging.level" in applied:
        logging.getLogger().setLevel(cfg["logging"]["level"])
    if daemon.stages is not None:
        daemon.stages.settings = StageSettings.from_config(cfg)
    if daemon.scheduler is not None:
        daemon.scheduler.retry_interval_s = cfg["pipeline"]["retry_interval_s"]
    if daemon.watcher is not None:
        daemon.watcher.rescan_seconds = cfg["ingest"]["rescan_seconds"]
        daemon.watcher.stable_seconds = cfg["ingest"]["stable_seconds"]
    for key in applied:
        log.info("reload: %s applied", key)
    for key in restart:
        log.warning("reload: %s changed but needs a restart (systemctl restart vessel-seg)", key)
    return {"applied": applied, "restart": restart}
