"""A clean copy of a checkout: what setup.cfg builds the package from, and what deploy/install.sh
installs beside it, for tests that run setuptools or the installer on it (and leave their
build/ and *.egg-info there, not in the checkout)."""
from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
FILES = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE")
FOLDERS = ("agent", "firmware_configs", "docs", "deploy", "systemd")  # the code, its data files, the units


def copy_source(dest: Path) -> Path:
    """The package's sources at ``dest`` (made), without compiled leftovers; returns ``dest``."""
    dest.mkdir(parents=True)
    for name in FILES:
        shutil.copy(ROOT / name, dest / name)
    for name in FOLDERS:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest
