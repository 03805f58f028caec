"""What the ``blankspot`` subcommands share: the log format, the ``--config`` argument, and
the broker options of the commands that subscribe (``collect``, ``tail``)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.commands.exit_status import UsageError

from agent.unit.config import DEFAULT_PATH, Config, load_config

if TYPE_CHECKING:
    from agent.centre.ingest import BrokerAddress


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("paho").setLevel(logging.WARNING)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM (systemd stopping the service) or SIGINT (Ctrl-C)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def config_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--config``/``-c`` to a subcommand's parser."""
    parser.add_argument("--config", "-c", metavar="PATH", default=None,
                        help=f"config file (default {DEFAULT_PATH})")


def load_config_arg(args: argparse.Namespace) -> Config:
    """The config file ``--config`` names, or the default one."""
    return load_config(args.config or DEFAULT_PATH)


def add_broker_options(p: argparse.ArgumentParser, broker_into: Any = None) -> None:
    """``--broker`` (required, or into ``broker_into``, a group of alternatives), ``--prefix``
    and the broker's login and TLS."""
    from agent.shared.protocol import DEFAULT_PREFIX

    (broker_into or p).add_argument(
        "--broker", required=broker_into is None, metavar="URL",
        help="mqtt://host[:port] (default port 1883) or mqtts://host[:port] (TLS, default port 8883)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"topic prefix of the units (default {DEFAULT_PREFIX})")
    p.add_argument("--username", help="broker login")
    p.add_argument("--password-file", metavar="PATH", help="file holding the broker password (first line)")
    p.add_argument("--tls-ca", metavar="PATH", help="CA certificate to check the broker with (turns TLS on)")
    p.add_argument("--tls-cert", metavar="PATH", help="client certificate, for brokers that require one")
    p.add_argument("--tls-key", metavar="PATH", help="key of --tls-cert")


def broker_of(args: argparse.Namespace, command: str) -> "tuple[BrokerAddress, str | None]":
    """The broker ``--broker`` names and the password ``--password-file`` holds, after checking
    the TLS files exist; ``UsageError`` says what is wrong."""
    from agent.centre.ingest import parse_broker_url

    try:
        broker = parse_broker_url(args.broker)
    except ValueError as exc:
        raise UsageError(f"blankspot {command}: --broker: {exc}") from None
    password = None
    if args.password_file:
        try:
            lines = Path(args.password_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"blankspot {command}: cannot read --password-file: {exc}") from None
        password = lines[0] if lines else ""
    for name in ("tls_ca", "tls_cert", "tls_key"):
        value = getattr(args, name)
        if value is not None and not Path(value).is_file():
            raise UsageError(f"blankspot {command}: --{name.replace('_', '-')}: no such file {value}")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError(f"blankspot {command}: --tls-cert and --tls-key go together")
    return broker, password
