"""``blankspot measure``: one latency or throughput measurement, printed as a reading's part."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``measure`` subcommand to the ``blankspot`` parser."""
