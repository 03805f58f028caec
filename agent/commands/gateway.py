"""``blankspot sms-gateway`` and ``sms-inbox``: the units' heartbeat SMS into the collector's
database, from the centre's own modem or from gammu-smsd (docs/sms-heartbeat.md)."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from agent.commands.exit_status import RuntimeFailure, UsageError

log = logging.getLogger(__name__)

DEFAULT_KEYS_DIR = "/etc/blankspot/heartbeat-keys"
_DB_HELP = "collector database: sqlite:///absolute/path.db, a file path, or postgresql://user@host/database"
_LOG_LEVELS = ("debug", "info", "warning", "error")


def _keys_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys-dir", default=DEFAULT_KEYS_DIR, metavar="DIR",
                   help=f"folder of the units' heartbeat keys, one <device>.key each (default {DEFAULT_KEYS_DIR})")


def _keys_of(args: argparse.Namespace, command: str):
    from agent.centre.sms_inbox import KeyFolder

    folder = Path(args.keys_dir)
    if not folder.is_dir():
        raise UsageError(f"blankspot {command}: --keys-dir: no such folder {folder}")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise UsageError(f"blankspot {command}: --keys-dir: {folder} cannot be read by this user")
    return KeyFolder(folder)


def _open_store(url: str, command: str):
    """The store at ``url``.  A bad URL or a SQLite file in a folder that does not exist is a
    usage error (exit 2: systemd does not restart it); a database that does not answer is a
    runtime failure (exit 1: systemd tries again)."""
    from agent.centre.store.base import StoreUrlError, parse_db_url
    from agent.commands.centre import open_store_or_exit

    try:
        parsed = parse_db_url(url)
    except StoreUrlError as exc:
        raise UsageError(f"blankspot {command}: --db: {exc}") from None
    if parsed.backend == "sqlite" and not Path(parsed.target).parent.is_dir():
        raise UsageError(f"blankspot {command}: --db: no such folder {Path(parsed.target).parent}")
    return open_store_or_exit(url, command)


# -- sms-gateway --------------------------------------------------------------------------

def add_sms_gateway(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sms-gateway", help="read the units' heartbeat SMS from the centre's modem into the database",
        description="Keep the centre's modem open (PDU mode, +CMTI), list its messages on each arrival and "
                    "every --list-every, store each verified heartbeat once, count every other message by "
                    "reason, and delete from the SIM only what the database has. Runs until SIGTERM. "
                    "Example: blankspot sms-gateway --port /dev/ttyUSB2 "
                    "--db postgresql://blankspot@127.0.0.1/blankspot --keys-dir /etc/blankspot/heartbeat-keys")
    p.add_argument("--port", required=True, metavar="DEVICE",
                   help="the modem's AT port (/dev/ttyUSB2, a /dev/serial/by-id/ path, or a pyserial URL)")
    p.add_argument("--db", required=True, metavar="URL", help=_DB_HELP)
    _keys_arg(p)
    p.add_argument("--list-every", default="60s", metavar="DURATION",
                   help="list the modem's messages this often even without +CMTI (default 60s)")
    p.add_argument("--baud", type=int, default=115200, help="serial speed (default 115200; USB modems ignore it)")
    p.add_argument("--retry-max", default="60s", metavar="DURATION",
                   help="longest wait before opening a vanished modem or writing to a failed database "
                        "again; the wait doubles from 1s up to this (default 60s)")
    p.add_argument("--log-level", choices=_LOG_LEVELS, default="info", help="what to log (default info)")
    p.set_defaults(func=cmd_sms_gateway)


def cmd_sms_gateway(args: argparse.Namespace) -> int:
    from agent.commands.common import setup_logging, stop_on_signals
    from agent.gateway.sms_gateway import GatewaySettings, SmsGateway
    from agent.shared.quantities import parse_duration
    from agent.shared.watchdog import SystemdNotifier, Watchdog

    try:
        settings = GatewaySettings(port=args.port, baud=args.baud, list_every_s=parse_duration(args.list_every),
                                   backoff_max_s=parse_duration(args.retry_max))
        settings.check()
    except ValueError as exc:
        raise UsageError(f"blankspot sms-gateway: {exc}") from None
    keys = _keys_of(args, "sms-gateway")
    setup_logging(args.log_level)
    store = _open_store(args.db, "sms-gateway")
    stop = stop_on_signals()
    notifier = SystemdNotifier.from_environment()
    try:
        SmsGateway(settings, store, keys, notifier=notifier, watchdog=Watchdog.from_environment(notifier)).run(stop)
    finally:
        store.close()
        notifier.close()
    return 0


# -- sms-inbox: gammu-smsd's RunOnReceive ---------------------------------------------------

def add_sms_inbox(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sms-inbox", help="file the message gammu-smsd received (its RunOnReceive program)",
        description="Read the message gammu-smsd hands to its RunOnReceive program (SMS_MESSAGES, "
                    "SMS_1_NUMBER, SMS_1_TEXT, ...), store a verified heartbeat or count the refusal. "
                    "Exits 0 when every message was recorded, 1 when the database could not be written. "
                    "Example: (a line of gammu-smsdrc's [smsd] section) RunOnReceive = /opt/blankspot/venv/bin/blankspot "
                    "sms-inbox --db postgresql://blankspot@127.0.0.1/blankspot --keys-dir /etc/blankspot/heartbeat-keys")
    p.add_argument("--db", required=True, metavar="URL", help=_DB_HELP)
    _keys_arg(p)
    p.add_argument("ids", nargs="*", metavar="ID",
                   help="the message identifiers gammu-smsd appends (its inbox files or rows), logged")
    p.add_argument("--log-level", choices=_LOG_LEVELS, default="info", help="what to log (default info)")
    p.set_defaults(func=cmd_sms_inbox)


def cmd_sms_inbox(args: argparse.Namespace) -> int:
    from agent.commands.common import setup_logging
    from agent.centre.store.base import StoreError
    from agent.gateway.gammu import GammuEnvironmentError, file_gammu_messages, gammu_messages
    from agent.gateway.sms_gateway import summary
    from agent.centre.sms_inbox import Listing

    try:
        gammu_messages(os.environ)
    except GammuEnvironmentError as exc:
        raise UsageError(f"blankspot sms-inbox: {exc}") from None
    keys = _keys_of(args, "sms-inbox")
    setup_logging(args.log_level)
    store = _open_store(args.db, "sms-inbox")
    try:
        outcomes = file_gammu_messages(os.environ, store, keys)
    except StoreError as exc:
        raise RuntimeFailure(f"sms-inbox: message {' '.join(args.ids) or '(no id)'} not recorded: {exc}") from None
    finally:
        store.close()
    log.info("gammu message %s: %s", " ".join(args.ids) or "(no id)", summary(Listing([], outcomes)))
    return 0
