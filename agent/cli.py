"""The ``blankspot`` command.

Errors a user can fix (bad arguments, bad config) print one line on stderr and exit 2;
runtime failures exit 1.  No tracebacks for either.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from typing import Any, Callable, Sequence

from agent import __version__
from agent.buffer import BufferError
from agent.collector import command as collector_command
from agent.commands.common import config_arg, load_config_arg, setup_logging
from agent.commands.exit_status import EXIT_RUNTIME, EXIT_USAGE, RuntimeFailure, UsageError
from agent.config import DEFAULT_PATH, ConfigError, load_config
from agent.measure import command as measure_command
from agent.reading import part_dict

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def cmd_run(args: argparse.Namespace) -> int:
    from agent.config_files import file_problems

    path = args.config or DEFAULT_PATH
    config = load_config_arg(args)
    problems = file_problems(config, path)
    if args.check:
        if problems:
            for problem in problems:
                print(f"blankspot: config error: {problem}", file=sys.stderr)
            return EXIT_USAGE
        print(f"{path}: ok (device {config.device_id})")
        return 0
    setup_logging(args.log_level or config.log.level)
    # Not fatal at run time: readings are taken and buffered while, say, a certificate is
    # still missing, and a buffer folder that cannot be written stops the service anyway.
    for problem in problems:
        log.warning("%s", problem)
    from agent.service import AgentService

    try:
        service = AgentService(config, config_path=str(args.config or DEFAULT_PATH))
    except BufferError as exc:
        raise RuntimeFailure(str(exc)) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service.run(stop)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from agent.service import state_path
    from agent.status_report import collect_status, status_lines

    config = load_config_arg(args)
    try:
        status = collect_status(config, state_path(config))
    except BufferError as exc:
        raise RuntimeFailure(str(exc)) from None
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print("\n".join(status_lines(status)))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent.doctor import DoctorOptions, exit_status, report_dict, result_lines, run_doctor, summary_line

    for name in ("gps_wait", "modem_timeout", "broker_timeout"):
        if getattr(args, name) <= 0:
            raise UsageError(f"blankspot doctor: --{name.replace('_', '-')} must be a positive number of seconds")
    # A unit without device.id is what doctor helps set up: its check says what to write.
    config = load_config(args.config or DEFAULT_PATH, require_device_id=False)
    setup_logging("debug" if args.verbose else "critical")
    options = DoctorOptions(gps_wait=args.gps_wait, modem_timeout=args.modem_timeout,
                            broker_timeout=args.broker_timeout, skip_broker=args.skip_broker)
    show = None if args.json else (lambda result: print("\n".join(result_lines(result)), flush=True))
    results = run_doctor(config, str(args.config or DEFAULT_PATH), options, on_result=show)
    if args.json:
        print(json.dumps(report_dict(config.device_id or None, results), indent=2))
    else:
        print(summary_line(results))
    return exit_status(results)


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import DemoError, run_demo

    setup_logging("error" if not args.verbose else "info")
    try:
        return run_demo(trip_seconds=args.seconds, workdir=args.workdir, broker_kind=args.broker, out=print)
    except DemoError as exc:
        raise RuntimeFailure(str(exc)) from None


def cmd_modem(args: argparse.Namespace) -> int:
    from agent.devices.modem.device import Modem, ModemUnavailable
    from agent.devices.modem.errors import ModemError, PortGone, ProfileError
    from agent.devices.modem.profiles import load_profile

    if args.baud <= 0:
        raise UsageError(f"blankspot modem: --baud must be a positive number, got {args.baud}")
    setup_logging("debug" if args.raw else "error")
    try:
        profile = load_profile(args.model) if args.model else None
    except ProfileError as exc:
        raise UsageError(f"blankspot modem: {exc}") from None
    raw = (lambda direction, text: print(f"{direction} {text}", file=sys.stderr)) if args.raw else None
    modem = Modem(args.port, profile, args.baud, raw_log=raw, recover=False)
    try:
        modem.connect()
        if args.scan:
            return _print_scan(modem, args.json)
        signal = modem.signal()
    except PortGone as exc:
        raise RuntimeFailure(str(exc)) from None
    except (ModemUnavailable, ModemError) as exc:
        raise RuntimeFailure(f"modem on {args.port} does not answer: {exc}") from None
    finally:
        modem.close()
    body = part_dict(signal)
    if args.json:
        print(json.dumps(body))
    else:
        print(f"model         {modem.profile.name if modem.profile else '?'}")
        for key, value in body.items():
            if value is not None:
                print(f"{key:<13} {value}")
    if signal.error:
        print(f"blankspot modem: {signal.error}", file=sys.stderr)
        return EXIT_RUNTIME
    return 0


def fix_dict(fix) -> dict[str, Any]:
    """The ``position`` part of a reading plus ``time`` (null until the date is known)."""
    from agent.reading import format_time

    return {
        "time": None if fix.time is None else format_time(fix.time),
        "lat": fix.lat, "lon": fix.lon, "alt_m": fix.alt_m, "hdop": fix.hdop, "sats": fix.sats,
        "speed_kmh": fix.speed_kmh, "course_deg": fix.course_deg, "fix": fix.fix,
    }


def cmd_gps(args: argparse.Namespace) -> int:
    from agent.devices.gps.reader import GpsError, GpsReader

    for name in ("baud", "count", "seconds"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UsageError(f"blankspot gps: --{name} must be a positive number, got {value:g}")
    count = args.count if args.count is not None or args.seconds is not None else 1
    raw = (lambda line: print(line, file=sys.stderr)) if args.raw else None
    source = args.port
    try:
        if args.gpsd is not None:
            from agent.devices.gps.gpsd import GpsdReader, parse_address

            try:
                host, port = parse_address(args.gpsd)
            except ValueError as exc:
                raise UsageError(f"blankspot gps: --gpsd: {exc}") from None
            source = f"gpsd at {host}:{port}"
            reader: GpsReader | GpsdReader = GpsdReader(host, port, raw=raw)
        else:
            reader = GpsReader(args.port, args.baud, raw=raw)
    except GpsError as exc:
        raise RuntimeFailure(str(exc)) from None
    printed = 0
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    try:
        while count is None or printed < count:
            # Without --seconds, a minute without a single epoch ends the command: a receiver
            # that says nothing is a wrong port or baud rate, not a reason to hang.
            wait = 60.0 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                break
            fix = reader.read_fix(min(wait, 60.0))
            if fix is None:
                if deadline is None:
                    break
                continue
            body = fix_dict(fix)
            if args.json:
                print(json.dumps(body), flush=True)
            else:
                where = "no fix" if fix.lat is None else f"{fix.lat:.6f} {fix.lon:.6f}"
                print(f"{body['time'] or '-':<24} {fix.fix:<4} {where}  sats {fix.sats if fix.sats is not None else '-'}"
                      f"  hdop {fix.hdop if fix.hdop is not None else '-'}", flush=True)
            printed += 1
    except GpsError as exc:
        raise RuntimeFailure(str(exc)) from None
    finally:
        reader.close()
    if printed == 0:
        if args.gpsd is not None:
            raise RuntimeFailure(f"no position reports from {source} (no receiver attached to gpsd? "
                                 "gpspipe -w shows what it sends)")
        hint = " (garbage only: wrong --baud?)" if reader.likely_wrong_baud else " (wrong port, or the receiver is off?)"
        raise RuntimeFailure(f"no NMEA epochs from {source}{hint}")
    return 0


def _print_scan(modem, as_json: bool) -> int:
    from agent.devices.modem.operators import operator_name

    choices = modem.scan()
    rows = [
        {
            "operator": c.long_name or (operator_name(c.mcc, c.mnc) if c.mcc is not None and c.mnc is not None else None),
            "short": c.short_name, "mcc": c.mcc, "mnc": c.mnc, "rat": c.rat, "status": c.status,
        }
        for c in choices
    ]
    if as_json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print(f"{row['status']:<10} {row['mcc']}-{row['mnc']:<4} {row['rat'] or '-':<9} {row['operator']}")
        if not rows:
            print("no operator visible here")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="blankspot", description="Field network-measurement agent and blank-spot map collector.")
    parser.add_argument("--version", action="version", version=f"blankspot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("run", help="run the agent: take readings, buffer them, push them to the broker",
                       description="Run the agent until SIGTERM. Example: blankspot run --config /etc/blankspot/agent.toml",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    config_arg(p)
    p.add_argument("--check", action="store_true", help="validate the config file and exit")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="override log.level")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="show the unit at a glance: agent, fix, signal, backlog, data used",
                       description="Show whether the agent runs, its last fix and signal, the clock source, the "
                                   "uplink, the backlog and the data used (docs/operating.md). "
                                   "Example: blankspot status --json")
    config_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("doctor", help="check the unit: ports, modem, SIM, GPS, clock, broker, disk, buffer",
                       description="Check each part of the unit and say what to do about each failure; exits 1 "
                                   "when any check fails. Example: sudo blankspot doctor --gps-wait 60")
    config_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--skip-broker", action="store_true", help="do not connect to the broker")
    p.add_argument("--gps-wait", type=float, default=15.0, metavar="SECONDS",
                   help="how long to wait for a GPS fix (default 15)")
    p.add_argument("--modem-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="longest wait for one modem command (default 5)")
    p.add_argument("--broker-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="longest wait for the broker (default 10)")
    p.add_argument("--verbose", "-v", action="store_true", help="log what the checks do on stderr")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("modem", help="query the modem once: signal, registration, operator",
                       description="Ask the modem for its signal once and print the signal part of a reading. "
                                   "Example: blankspot modem --port /dev/ttyUSB2 --json")
    p.add_argument("--port", required=True, help="AT port: a device such as /dev/ttyUSB2, or a pyserial URL")
    p.add_argument("--baud", type=int, default=115200, help="baud rate (default 115200)")
    p.add_argument("--model", help="model profile from firmware_configs/ (default: detect by USB id or AT+CGMM)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--scan", action="store_true", help="list the operators visible here (AT+COPS=?, takes minutes)")
    p.add_argument("--raw", action="store_true", help="show the AT conversation on stderr")
    p.set_defaults(func=cmd_modem)

    p = sub.add_parser("gps", help="read positions from a GPS receiver",
                       description="Print one position per epoch from an NMEA receiver, or from gpsd. "
                                   "Example: blankspot gps --port /dev/ttyACM0 --count 5 --json")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="NMEA port: a device such as /dev/ttyACM0, or a pyserial URL")
    where.add_argument("--gpsd", nargs="?", const="127.0.0.1:2947", metavar="HOST[:PORT]",
                       help="read from a running gpsd instead (default 127.0.0.1:2947)")
    p.add_argument("--baud", type=int, default=9600, help="baud rate (default 9600)")
    p.add_argument("--count", type=int, help="stop after this many epochs (default 1 unless --seconds)")
    p.add_argument("--seconds", type=float, help="stop after this long")
    p.add_argument("--json", action="store_true", help="print one JSON object per epoch")
    p.add_argument("--raw", action="store_true", help="echo the NMEA sentences on stderr")
    p.set_defaults(func=cmd_gps)

    p = sub.add_parser("demo", help="simulated boat trip through a blank spot, end to end",
                       description="Simulated trip on the Mahakam: a local broker, the agent, a blank spot, "
                                   "the backlog and its drain. Example: blankspot demo --seconds 60")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the time-compressed trip (default 60)")
    p.add_argument("--workdir", default=None, help="keep the demo's files here (default: a temporary folder)")
    p.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto", help="which local broker to start")
    p.add_argument("--verbose", "-v", action="store_true", help="show the agent's log")
    p.set_defaults(func=cmd_demo)

    measure_command.register(sub)
    collector_command.register(sub)
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
