"""The shipped model bundles (data, one folder each: ``model.yaml``, ``model.onnx``, ...); see MODEL_CARD.md."""
from __future__ import annotations

from pathlib import Path

#: The folder holding the shipped bundles, in a checkout and in an installed wheel alike.
MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_BUNDLE = "vessel-unet"


def bundle_dir(name: str = DEFAULT_BUNDLE) -> Path:
    """The folder of a shipped bundle (it may not exist: ``load_bundle`` says so)."""
    return MODELS_DIR / name
