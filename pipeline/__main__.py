"""``python -m vessel_seg.pipeline`` == ``vessel-seg``."""
from __future__ import annotations

import sys

from vessel_seg.pipeline.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
