"""The ``blankspot`` command: its parser, the one registry of subcommands, and exit statuses.

Errors a user can fix (bad arguments, bad config) print one line on stderr and exit 2;
runtime failures exit 1.  No tracebacks for either.  Each subcommand's module has an
``add_<name>(sub)`` that adds its parser; :data:`COMMANDS` names them in the order
``blankspot --help`` shows them.  A command line that names its command builds only that
command's parser, so ``blankspot run`` imports nothing another command needs for its
choices and defaults.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from agent import __version__
from agent.commands import centre, demo, devices, feed, gateway, measure, unit
from agent.commands.exit_status import EXIT_READER_GONE, EXIT_RUNTIME, EXIT_USAGE, RuntimeFailure, UsageError
from agent.unit.config import ConfigError

COMMANDS: tuple[tuple[str, Callable[[argparse._SubParsersAction], None]], ...] = (
    ("run", unit.add_run), ("status", unit.add_status), ("readings", unit.add_readings), ("doctor", unit.add_doctor),
    ("modem", devices.add_modem), ("gps", devices.add_gps),
    ("demo", demo.add_demo),
    ("measure", measure.add_measure),
    ("speed-server", centre.add_speed_server), ("collect", centre.add_collect), ("export", centre.add_export),
    ("map", centre.add_map), ("report", centre.add_report), ("units", centre.add_units),
    ("aggregate", centre.add_aggregate), ("serve", centre.add_serve),
    ("sms-gateway", gateway.add_sms_gateway), ("sms-inbox", gateway.add_sms_inbox), ("tail", feed.add_tail),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with ``command`` only that command's parser."""
    parser = _Parser(prog="blankspot", description="Field network-measurement agent and blank-spot map collector.")
    parser.add_argument("--version", action="version", version=f"blankspot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    for name, add in COMMANDS:
        if command is None or name == command:
            add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    named = words[0] if words and words[0] in dict(COMMANDS) else None
    parser = build_parser(named)
    try:
        args = parser.parse_args(words)
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
