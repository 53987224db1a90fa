"""vessel-seg: retinal-vessel segmentation on a fundus camera and a Huawei Atlas 200DK (Ascend 310 NPU).

The one installed top-level name. Its sub-packages are the repository's top-level folders (``pyproject.toml``
maps them): ``vessel_seg.camera`` (camera/), ``vessel_seg.pipeline`` (pipeline/), ``vessel_seg.device``
(device/), ``vessel_seg.web`` (web/), and the shipped data ``vessel_seg.models`` (models/) and
``vessel_seg.config`` (config/). ``vessel_seg.vocabulary`` holds the names they all share.

Kept import-light on purpose: ``vessel-seg --help`` must not pull in numpy, OpenCV or Flask.
"""
from __future__ import annotations

__version__ = "0.1.0"
