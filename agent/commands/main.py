"""The ``blankspot`` command: its parser, the one registry of subcommands, and exit statuses.

Errors a user can fix (bad arguments, bad config) print one line on stderr and exit 2;
runtime failures exit 1.  No tracebacks for either.  Each subcommand's module has an
``add_<name>(sub)`` that adds its parser; :data:`COMMANDS` lists them in the order
``blankspot --help`` shows them.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from agent import __version__
from agent.commands import centre, demo, devices, feed, measure, unit
from agent.commands.exit_status import EXIT_READER_GONE, EXIT_RUNTIME, EXIT_USAGE, RuntimeFailure, UsageError
from agent.unit.config import ConfigError

COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    unit.add_run, unit.add_status, unit.add_doctor,
    devices.add_modem, devices.add_gps,
    demo.add_demo,
    measure.add_measure,
    centre.add_speed_server, centre.add_collect, centre.add_export, centre.add_map, centre.add_report,
    centre.add_units, centre.add_aggregate, centre.add_serve, feed.add_tail,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="blankspot", description="Field network-measurement agent and blank-spot map collector.")
    parser.add_argument("--version", action="version", version=f"blankspot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"blankspot: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeFailure as exc:
        print(f"blankspot: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_READER_GONE


def _discard_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for the reader that left would fail
    again when Python flushes it on the way out."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture): nothing is flushed to a pipe
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
