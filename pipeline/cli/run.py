"""``vessel-seg run``: the daemon in the foreground, with signals, the status page and the demo camera.

SIGTERM/SIGINT: stop taking new images, finish in-flight ones within ``pipeline.shutdown_timeout_s``, exit 0.
SIGHUP: re-read the configuration file; apply what is safe, log what needs a restart; a broken file is
reported and the running configuration kept.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from typing import Any, Optional

from vessel_seg.pipeline.appliance.config import Config, ConfigError, load_config, set_key
from vessel_seg.pipeline.cli.main import err

log = logging.getLogger(__name__)

CONFIG_ENV = "VESSEL_SEG_CONFIG"


def config_for_run(args: argparse.Namespace) -> Config:
    """The configuration file (``--config`` or $VESSEL_SEG_CONFIG or defaults) with command-line overrides."""
    path = getattr(args, "config", None) or os.environ.get(CONFIG_ENV)
    cfg = load_config(path)
    apply_run_overrides(cfg, args)
    return cfg


def apply_run_overrides(cfg: Config, args: argparse.Namespace) -> None:
    """``--data-dir``, ``--runtime``, ``--host``, ``--port``, ``--no-web``, ``--log-level`` (validated)."""
    if getattr(args, "data_dir", None):
        set_key(cfg, "data_dir", os.path.abspath(args.data_dir))
    if getattr(args, "runtime", None):
        set_key(cfg, "device.runtime", args.runtime)
    if getattr(args, "host", None):
        set_key(cfg, "web.host", args.host)
    if getattr(args, "port", None) is not None:
        set_key(cfg, "web.port", args.port)
    if getattr(args, "no_web", False):
        set_key(cfg, "web.enabled", False)
    if getattr(args, "log_level", None):
        set_key(cfg, "logging.level", args.log_level)


def _start_web(daemon: Any, cfg: Config) -> Optional[Any]:
    if not cfg["web"]["enabled"]:
        return None
    import vessel_seg.web as web

    app = web.create_app(daemon, cfg["web"].as_dict())
    server = web.serve(app, cfg["web"]["host"], cfg["web"]["port"])
    port = getattr(server, "effective_port", cfg["web"]["port"])
    log.info("status page: http://%s:%s/", cfg["web"]["host"], port)
    t = threading.Thread(target=_serve_forever, args=(server,), name="vs-web", daemon=True)
    t.start()
    return server


def _serve_forever(server: Any) -> None:
    try:
        server.run()
    except Exception:  # closing the server from another thread can raise in run(); nothing to do
        log.debug("web server stopped", exc_info=True)


def _start_demo(capture_dir: Any, rate: float, stop: threading.Event) -> Optional[threading.Thread]:
    from vessel_seg.camera.simulator import CameraSimulator

    sim = CameraSimulator(capture_dir, rate_per_s=rate, mode="rename")
    t = threading.Thread(target=sim.run, kwargs={"stop_event": stop}, name="vs-demo-camera", daemon=True)
    t.start()
    log.info("demo: camera simulator writes %.2f synthetic image(s)/s into %s", rate, capture_dir)
    return t


def run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM/SIGINT; exit status 0 on a clean stop."""
    from vessel_seg.pipeline.appliance.daemon import Daemon, DaemonError
    from vessel_seg.pipeline.cli.logsetup import set_level

    try:
        cfg = config_for_run(args)
    except ConfigError as exc:
        err("vessel-seg run: invalid configuration:")
        for issue in exc.issues:
            err("  %s" % issue)
        return 2
    set_level(cfg["logging"]["level"])
    config_path = getattr(args, "config", None) or os.environ.get(CONFIG_ENV)
    daemon = Daemon(cfg, config_path=config_path)

    wake = threading.Event()
    flags = {"stop": False, "reload": False, "signal": ""}

    def on_stop(signum: int, _frame: Any) -> None:
        flags["stop"] = True
        flags["signal"] = signal.Signals(signum).name
        wake.set()

    def on_hup(_signum: int, _frame: Any) -> None:
        flags["reload"] = True
        wake.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_hup)

    try:
        daemon.start()
    except DaemonError as exc:
        err("vessel-seg run: %s" % exc)
        daemon.stop(0.0)
        return 1
    server = None
    demo_stop = threading.Event()
    try:
        server = _start_web(daemon, cfg)
    except Exception as exc:
        log.error("status page failed to start: %s", exc)
    if getattr(args, "demo", False):
        _start_demo(daemon.paths.capture, args.demo_rate, demo_stop)

    while not flags["stop"]:
        wake.wait(3600.0)
        wake.clear()
        if flags["reload"] and not flags["stop"]:
            flags["reload"] = False
            _reload(daemon, args, config_path)
    log.info("%s received: shutting down", flags["signal"] or "stop request")
    demo_stop.set()
    if server is not None:
        try:
            server.close()
        except Exception:
            log.debug("closing the web server failed", exc_info=True)
    finished = daemon.stop()
    if not finished:
        # A hung execute cannot be interrupted; its thread must not keep the process alive.
        log.warning("exiting with unfinished work (journaled for the next start)")
        logging.shutdown()
        os._exit(0)
    return 0


def _reload(daemon: Any, args: argparse.Namespace, config_path: Optional[str]) -> None:
    if not config_path:
        log.info("SIGHUP: no configuration file to reload (running on defaults)")
        return
    try:
        new_cfg = load_config(config_path)
        apply_run_overrides(new_cfg, args)
    except ConfigError as exc:
        log.error("SIGHUP: %s is invalid, keeping the running configuration:\n%s", config_path, exc)
        return
    daemon.reload(new_cfg)
