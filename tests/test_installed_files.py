"""Advice the commands print names files that are on this machine: in a checkout, its own
docs/ and deploy/ (an install's copies are checked in tests/test_deploy.py, in a booted image)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.shared.installed import doc, example_config
from tests.support.source_tree import copy_source

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "docs").glob("*.md")))
def test_every_document_is_found_where_this_runs_from(name: str) -> None:
    assert doc(name).is_file() and doc(name).read_bytes() == (ROOT / "docs" / name).read_bytes()


def test_the_example_config_is_found_where_this_runs_from() -> None:
    assert example_config().read_bytes() == (ROOT / "deploy/agent.example.toml").read_bytes()


def test_a_document_that_is_nowhere_is_named_where_an_install_puts_it() -> None:
    assert doc("no-such.md").parts[-4:] == ("share", "doc", "blankspot", "no-such.md")


def test_setup_installs_the_documents_and_the_example_where_they_are_looked_for(tmp_path: Path) -> None:
    """setup.cfg's data_files, installed under a prefix as pip does: the places
    :func:`doc` and :func:`example_config` look in below ``sys.prefix``."""
    source = copy_source(tmp_path / "src")
    prefix = tmp_path / "prefix"
    done = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "install_data",
                           "--install-dir", str(prefix)], cwd=source, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    shipped = sorted(p.name for p in (prefix / "share/doc/blankspot").iterdir())
    assert shipped == sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert (prefix / "share/blankspot/agent.example.toml").read_bytes() == \
        (ROOT / "deploy/agent.example.toml").read_bytes()
