"""The layout's rules: imports point one way (camera -> pipeline -> device -> results -> web), the appliance
never needs training (torch), and every module is reached through the one installed name, ``vessel_seg``."""
from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Repository folder -> the package it is installed as.
PACKAGES = {"vessel_seg": "vessel_seg", "device": "vessel_seg.device", "camera": "vessel_seg.camera",
            "pipeline": "vessel_seg.pipeline", "web": "vessel_seg.web", "models": "vessel_seg.models",
            "config": "vessel_seg.config"}
OLD_TOP_LEVEL = ("device", "camera", "pipeline", "web", "models", "config")

#: (importing package prefix, forbidden imported prefixes, why)
RULES = [
    ("vessel_seg.device", ("vessel_seg.pipeline", "vessel_seg.camera", "vessel_seg.web", "vessel_seg.vocabulary",
                           "vessel_seg.models", "vessel_seg.config"),
     "device/ knows nothing of pipelines, cameras or pages"),
    ("vessel_seg.camera", ("vessel_seg.device", "vessel_seg.pipeline", "vessel_seg.web"),
     "the camera only delivers files; the pipeline uses it, not the other way round"),
    ("vessel_seg.web", ("vessel_seg.device",), "the web uses the pipeline's results, never the device"),
    ("vessel_seg.pipeline.appliance", ("vessel_seg.web",), "only the command line starts the page"),
    ("vessel_seg.pipeline.engine", ("vessel_seg.web", "vessel_seg.pipeline.appliance", "vessel_seg.pipeline.cli"),
     "the engine is driven, it drives nothing"),
    ("vessel_seg.pipeline.store", ("vessel_seg.web", "vessel_seg.device", "vessel_seg.pipeline.appliance",
                                   "vessel_seg.pipeline.cli", "vessel_seg.pipeline.engine.scheduler"),
     "the stores only keep what they are given"),
    ("vessel_seg.pipeline.shared", ("vessel_seg.web", "vessel_seg.pipeline.appliance", "vessel_seg.pipeline.cli",
                                    "vessel_seg.pipeline.engine", "vessel_seg.pipeline.store"),
     "what training shares stands on its own"),
    ("vessel_seg", ("training", "torch"), "the appliance never needs training or torch"),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGES[parts[0]]] + parts[1:])


def imports_of(source: str, module: str, is_package: bool) -> Iterator[Tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, at any depth, relative ones resolved."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:            # ``from pkg import submodule``
                yield node.lineno, target + "." + alias.name


def violations(source: str, module: str, is_package: bool = False) -> List[str]:
    out = []
    for line, target in imports_of(source, module, is_package):
        for owner, forbidden, why in RULES:
            if module != owner and not module.startswith(owner + "."):
                continue
            for bad in forbidden:
                if target == bad or target.startswith(bad + "."):
                    out.append("%s:%d imports %s (%s)" % (module, line, target, why))
    return out


def appliance_files() -> List[Path]:
    return sorted(p for folder in PACKAGES for p in (REPO / folder).rglob("*.py"))


def all_python_files() -> List[Path]:
    skip = {".git", ".venv", "build", "dist"}
    out = []
    for dirpath, dirnames, filenames in os.walk(str(REPO)):
        dirnames[:] = [d for d in dirnames if d not in skip and not d.startswith(".venv")]
        out.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(out)


def test_imports_point_one_way():
    problems = []
    for path in appliance_files():
        problems += violations(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")
    assert problems == []


@pytest.mark.parametrize("module,source", [
    ("vessel_seg.device.session", "from vessel_seg.pipeline.engine.stages import Job\n"),
    ("vessel_seg.device.sim.rt", "def f():\n    from ...pipeline import cli\n"),
    ("vessel_seg.camera.ingest", "import vessel_seg.device.resilient\n"),
    ("vessel_seg.web.api", "from vessel_seg import device\n"),
    ("vessel_seg.pipeline.cli.bench", "import torch\n"),
    ("vessel_seg.pipeline.engine.stages", "from training.models import build_model\n"),
])
def test_an_import_pointing_the_wrong_way_is_caught(module, source):
    assert violations(source, module)


def test_nothing_imports_the_folders_by_their_old_top_level_names():
    """Only ``vessel_seg`` is installed: ``import pipeline`` would find another distribution, or nothing."""
    problems = []
    for path in all_python_files():
        for line, target in imports_of(path.read_text(encoding="utf-8"), "x.y", False):
            if target.split(".")[0] in OLD_TOP_LEVEL:
                problems.append("%s:%d: %s" % (path.relative_to(REPO), line, target))
    assert problems == []


def test_every_appliance_package_is_listed_for_the_wheel():
    """pyproject.toml lists the packages by hand (the folders map into vessel_seg): a new sub-package must be
    added there, or the wheel would lack it."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    packages = sorted({module_name(p) for p in appliance_files() if p.name == "__init__.py"})
    missing = [p for p in packages if '"%s"' % p not in text]
    assert missing == []
