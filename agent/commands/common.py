"""What the ``blankspot`` subcommands share: the log format and the ``--config`` argument."""
from __future__ import annotations

import argparse
import logging
import sys

from agent.unit.config import DEFAULT_PATH, Config, load_config


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("paho").setLevel(logging.WARNING)


def config_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--config``/``-c`` to a subcommand's parser."""
    parser.add_argument("--config", "-c", metavar="PATH", default=None,
                        help=f"config file (default {DEFAULT_PATH})")


def load_config_arg(args: argparse.Namespace) -> Config:
    """The config file ``--config`` names, or the default one."""
    return load_config(args.config or DEFAULT_PATH)
