"""``blankspot modem`` and ``gps``: ask the unit's modem or GPS receiver once."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from agent.commands.common import setup_logging
from agent.commands.exit_status import EXIT_RUNTIME, RuntimeFailure, UsageError
from agent.shared.reading import part_dict


def add_modem(sub: argparse._SubParsersAction) -> None:
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


def cmd_modem(args: argparse.Namespace) -> int:
    from agent.unit.devices.modem.device import Modem, open_modem
    from agent.unit.devices.modem.errors import ModemError, PortGone, ProfileError

    if args.baud <= 0:
        raise UsageError(f"blankspot modem: --baud must be a positive number, got {args.baud}")
    setup_logging("debug" if args.raw else "error")
    raw = (lambda direction, text: print(f"{direction} {text}", file=sys.stderr)) if args.raw else None
    modem: Modem | None = None
    try:
        modem = open_modem(args.port, args.model, args.baud, raw_log=raw)
        if args.scan:
            return _print_scan(modem, args.json)
        signal = modem.signal()
    except ModemError as exc:
        # With --model, a ProfileError is that profile's: a usage error.  Without it, a broken
        # profile met while detecting the model is reported like any other failure of the modem.
        if isinstance(exc, ProfileError) and args.model:
            raise UsageError(f"blankspot modem: {exc}") from None
        if isinstance(exc, PortGone):
            raise RuntimeFailure(str(exc)) from None
        raise RuntimeFailure(f"modem on {args.port} does not answer: {exc}") from None
    finally:
        if modem is not None:
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


def _print_scan(modem, as_json: bool) -> int:
    rows = [
        {"operator": c.operator, "short": c.short_name, "mcc": c.mcc, "mnc": c.mnc, "rat": c.rat, "status": c.status}
        for c in modem.scan()
    ]
    if as_json:
        print(json.dumps(rows))
    else:
        for row in rows:
            plmn = f"{row['mcc']}-{row['mnc']}" if row["mcc"] is not None else "-"
            print(f"{row['status']:<10} {plmn:<8} {row['rat'] or '-':<9} {row['operator']}")
        if not rows:
            print("no operator visible here")
    return 0


def add_gps(sub: argparse._SubParsersAction) -> None:
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


def fix_dict(fix) -> dict[str, Any]:
    """The ``position`` part of a reading plus ``time`` (null until the date is known)."""
    from agent.shared.reading import format_time

    return {
        "time": None if fix.time is None else format_time(fix.time),
        "lat": fix.lat, "lon": fix.lon, "alt_m": fix.alt_m, "hdop": fix.hdop, "sats": fix.sats,
        "speed_kmh": fix.speed_kmh, "course_deg": fix.course_deg, "fix": fix.fix,
    }


def cmd_gps(args: argparse.Namespace) -> int:
    from agent.unit.devices.gps.reader import GpsError, GpsReader

    for name in ("baud", "count", "seconds"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UsageError(f"blankspot gps: --{name} must be a positive number, got {value:g}")
    count = args.count if args.count is not None or args.seconds is not None else 1
    raw = (lambda line: print(line, file=sys.stderr)) if args.raw else None
    source = args.port
    try:
        if args.gpsd is not None:
            from agent.unit.devices.gps.gpsd import GpsdReader, parse_address

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
