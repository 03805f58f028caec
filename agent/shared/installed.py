"""Where the files shipped beside the code are on this machine: the documents and the example
agent config, so that advice printed on a unit names a file that is there.

pip puts setup.cfg's data files under the installation's prefix (the virtualenv
``/opt/blankspot/venv``, or ``/usr/local``): ``share/doc/blankspot/*.md`` and
``share/blankspot/agent.example.toml``; ``deploy/install.sh`` also keeps the example in
``/etc/blankspot``.  A checkout has them in ``docs/`` and ``deploy/``.
"""
from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import agent

_CHECKOUT = Path(agent.__file__).resolve().parent.parent
INSTALLED_EXAMPLE = Path("/etc/blankspot/agent.example.toml")


def _prefixes() -> list[Path]:
    return list(dict.fromkeys(Path(p) for p in (sys.prefix, sysconfig.get_paths().get("data", sys.prefix))))


def _first_present(candidates: list[Path]) -> Path:
    """The first candidate that exists; else the first, where an install would have put it."""
    return next((path for path in candidates if path.is_file()), candidates[0])


def doc(name: str) -> Path:
    """The document ``name`` (``buffer.md``) as installed here, or in the checkout this runs from."""
    return _first_present([prefix / "share/doc/blankspot" / name for prefix in _prefixes()]
                          + [_CHECKOUT / "docs" / name])


def example_config() -> Path:
    """The commented example of ``agent.toml``, every key at its default."""
    return _first_present([INSTALLED_EXAMPLE]
                          + [prefix / "share/blankspot/agent.example.toml" for prefix in _prefixes()]
                          + [_CHECKOUT / "deploy/agent.example.toml"])
