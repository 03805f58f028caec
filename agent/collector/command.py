"""``blankspot collect``, ``export``, ``map`` and ``report``: the central side's commands."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the collector's subcommands to the ``blankspot`` parser."""
