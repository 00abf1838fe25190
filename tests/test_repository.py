"""The repository explains itself: conventions a Python user expects, nothing outside it.

The design is `docs/design.md`; no file may send a reader to a document that a clone
does not have. Each command answers `--version` from the package metadata.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from indexer import __version__

ROOT = Path(__file__).resolve().parent.parent
# Built from parts so that this file does not match itself.
OUTSIDE = re.compile("DESIGN" + r" §|\.\./" + "shared")
SKIPPED_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache",
                ".pytest_cache", ".hypothesis", "var"}


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if listed.returncode == 0 and listed.stdout:
        paths = [ROOT / name for name in listed.stdout.decode().split("\0") if name]
    else:  # not a git checkout (an unpacked sdist): every file
        paths = [p for p in ROOT.rglob("*") if not SKIPPED_DIRS & set(p.parts)]
    return [p for p in paths if p.is_file() and p.suffix not in {".png", ".pdf", ".ico"}]


def test_nothing_points_outside_the_repository() -> None:
    offenders = []
    for path in _tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert not offenders, f"references to a document outside the repository: {offenders}"


def test_the_design_document_is_in_the_repository() -> None:
    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    for section in range(1, 8):
        assert re.search(rf"^#+ §?{section}\b", design, re.M) or f"§{section}" in design


@pytest.mark.parametrize("module", ["indexer.cli", "service.cli", "client.bulk"])
def test_every_command_answers_its_version(module: str) -> None:
    done = subprocess.run([sys.executable, "-m", module, "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(version("exposure-lookup"))
    assert __version__ == version("exposure-lookup")


def test_license_and_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert project["requires-python"].startswith(">=3.11")
    assert any(c.startswith("Programming Language :: Python :: 3.11")
               for c in project["classifiers"])
