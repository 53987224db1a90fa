"""The default configuration (data): ``vessel-seg.yaml``, every key documented; install.sh's template."""
from __future__ import annotations

from pathlib import Path

DEFAULT_CONFIG_FILE = Path(__file__).resolve().parent / "vessel-seg.yaml"
