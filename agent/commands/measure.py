"""``blankspot measure``: one latency or throughput measurement, printed as a reading's part.

The reading is the product: a measurement that found nothing (100 % loss, or an ``error``
such as an unknown host or a missing interface) is printed like any other and the command
exits 0; the ``error`` is also shown on stderr.  Bad arguments exit 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys

from agent.commands.exit_status import RuntimeFailure, UsageError
from agent.unit.measure.latency import ICMP_SOCKETS, measure_latency
from agent.unit.measure.target import Target, TargetError, parse_target, server_url
from agent.unit.measure.throughput import BACKENDS, DEFAULT_CAP_BYTES, ThroughputPlan, run_throughput
from agent.shared.reading import Event, Latency, Throughput, part_dict

log = logging.getLogger(__name__)

MAX_COUNT = 10_000


def add_measure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "measure", help="measure latency or throughput once and print it",
        description="Take one latency or throughput measurement and print the latency or "
                    "throughput part of a reading. Example: blankspot measure latency --target 10.0.0.1 --json")
    kinds = p.add_subparsers(dest="what", metavar="WHAT", parser_class=type(p))
    kinds.required = True

    lat = kinds.add_parser(
        "latency", help="round-trip time: ICMP echo, or the TCP handshake where ICMP is blocked",
        description="Send COUNT probes to the target and print sent, received, loss and the round-trip "
                    "figures. --backend auto tries ICMP and, if nothing answers or ICMP is not permitted, "
                    "times TCP handshakes to the target's port instead. Without --target, the broker of "
                    "the config file is measured. A measurement that got nothing back is still printed, "
                    "with exit status 0. "
                    "Example: blankspot measure latency --target broker.example.org:8883 --interface wwan0 --json")
    _common_arguments(lat)
    lat.add_argument("--backend", choices=("auto", "icmp", "tcp"), default="auto",
                     help="how to measure (default auto: ICMP, TCP if ICMP gets no answer)")
    lat.add_argument("--count", type=int, default=10, help="probes to send (default 10)")
    lat.add_argument("--interval", type=float, default=0.2, help="seconds between probes (default 0.2)")
    lat.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each answer (default 2)")
    lat.add_argument("--source", metavar="ADDR", help="send from this local address")
    lat.add_argument("--icmp-socket", choices=ICMP_SOCKETS, default="auto",
                     help="ICMP socket: dgram (needs net.ipv4.ping_group_range), raw (needs CAP_NET_RAW), "
                          "auto (dgram if permitted, else raw)")
    lat.set_defaults(func=cmd_latency)

    thr = kinds.add_parser(
        "throughput", help="download and upload rate",
        description="Measure download and upload rate once and print the throughput part of a reading. "
                    "--target is the speed server (blankspot speed-server): http://HOST:PORT/ or HOST[:PORT], "
                    "port 8080 if not given; without it, the broker host of the config file. A test that "
                    "could break the config's data budget is skipped and a budget_skip event is printed "
                    "instead. Example: blankspot measure throughput --target 10.0.0.1:8080 --interface wwan0 --json")
    _common_arguments(thr)
    add_throughput_arguments(thr)
    thr.set_defaults(func=cmd_throughput)


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", metavar="HOST[:PORT]", help="what to measure (default: the broker in the config)")
    parser.add_argument("--interface", metavar="IF", help="measure over this network interface, e.g. wwan0")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--config", "-c", metavar="PATH", default=None,
                        help="config file, for the default target (default /etc/blankspot/agent.toml)")
    parser.add_argument("--verbose", "-v", action="store_true", help="log what the measurement does on stderr")


def _target(args: argparse.Namespace) -> Target:
    if args.target is not None:
        try:
            return parse_target(args.target)
        except TargetError as exc:
            raise UsageError(f"blankspot measure: --target: {exc}") from None
    from agent.unit.config import DEFAULT_PATH, load_config

    # Only the broker's address is needed: a unit not named yet can measure too.
    config = load_config(args.config or DEFAULT_PATH, require_device_id=False)
    return Target(config.uplink.host, config.uplink.port)


def _print_part(part: Latency | Throughput, as_json: bool) -> None:
    body = part_dict(part)
    if as_json:
        print(json.dumps(body))
    else:
        for key, value in body.items():
            if value is not None:
                print(f"{key:<11} {value}")
    if part.error:
        print(f"blankspot measure: {part.error}", file=sys.stderr)


def _logging(args: argparse.Namespace) -> None:
    from agent.commands.common import setup_logging

    setup_logging("debug" if args.verbose else "warning")


# -- latency ---------------------------------------------------------------------------------

def cmd_latency(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= MAX_COUNT:
        raise UsageError(f"blankspot measure latency: --count must be 1 to {MAX_COUNT}, got {args.count}")
    if not 0.01 <= args.interval <= 3600:
        raise UsageError(f"blankspot measure latency: --interval must be 0.01 to 3600 seconds, got {args.interval:g}")
    if not 0 < args.timeout <= 60:
        raise UsageError(f"blankspot measure latency: --timeout must be more than 0 and at most 60 seconds, got {args.timeout:g}")
    target = _target(args)
    _logging(args)
    reading = measure_latency(target, args.backend, count=args.count, interval=args.interval,
                              timeout=args.timeout, interface=args.interface, source=args.source,
                              icmp_socket=args.icmp_socket)
    _print_part(reading, args.json)
    return 0


# -- throughput ------------------------------------------------------------------------------

def add_throughput_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``blankspot measure throughput`` beyond --target, --interface, --json, --config."""
    parser.add_argument("--backend", choices=BACKENDS, default="http",
                        help="http: the operator's speed server (default); speedtest: speedtest-cli, "
                             "against --target as a Speedtest Mini server, or Ookla's servers without it")
    parser.add_argument("--cap", metavar="SIZE",
                        help='http: most bytes the test may use, e.g. "4MB" (default budget.throughput_cap, 10MB)')
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="speedtest with --target: seconds per direction (default 10, as speedtest.net)")
    parser.add_argument("--ignore-budget", action="store_true",
                        help="run even if the test could break the data budget (its bytes are still counted)")


def run_throughput_command(args: argparse.Namespace) -> Throughput | Event:
    """``blankspot measure throughput``: the throughput part, or the ``budget_skip`` event part.

    With a config file (``--config``, or ``/etc/blankspot/agent.toml`` if it exists) the test
    keeps to ``[budget]``, counts ``budget.interface`` and records its bytes in the ledger.
    """
    from agent.unit.config import DEFAULT_PATH, load_config
    from agent.unit.measure.usage import budget_from_config, open_ledger
    from agent.shared.quantities import parse_size

    where = "blankspot measure throughput"
    # The budget and the broker's address are needed, not the unit's name.
    path = args.config or (DEFAULT_PATH if DEFAULT_PATH.exists() else None)
    config = None if path is None else load_config(path, require_device_id=False)
    try:
        cap = parse_size(args.cap) if args.cap else (config.budget.throughput_cap if config else DEFAULT_CAP_BYTES)
    except ValueError as exc:
        raise UsageError(f"{where}: --cap: {exc}") from None
    if cap < 100_000:
        raise UsageError(f"{where}: --cap must be at least 100KB, got {args.cap}")
    if not 1 <= args.seconds <= 60:
        raise UsageError(f"{where}: --seconds must be 1 to 60, got {args.seconds:g}")
    target = args.target
    if target is None and args.backend == "http":
        if config is None:
            raise UsageError(f"{where}: give --target URL (the speed server, blankspot speed-server), "
                             f"or a config file whose uplink.host runs it")
        target = config.uplink.host
    try:
        url = server_url(target) if target else None
    except ValueError as exc:
        raise UsageError(f"{where}: --target: {exc}") from None
    plan = ThroughputPlan(
        backend=args.backend, target=url, cap_bytes=cap, interface=args.interface,
        count_interface=args.interface or (config.budget.interface if config else None) or None,
        speedtest_seconds=args.seconds,
    )
    ledger = None
    if config is not None:
        try:
            ledger = open_ledger(config)
        except (OSError, sqlite3.Error) as exc:
            if not args.ignore_budget:
                raise RuntimeFailure(f"cannot open the usage ledger {config.budget.ledger}: {exc} "
                                     f"(run as the agent's user, or give --ignore-budget)") from None
            log.warning("cannot open the usage ledger %s: %s; this test is not counted", config.budget.ledger, exc)
    try:
        budget = None if config is None or args.ignore_budget else budget_from_config(config)
        return run_throughput(plan, ledger, budget)
    finally:
        if ledger is not None:
            ledger.close()


def cmd_throughput(args: argparse.Namespace) -> int:
    _logging(args)
    part = run_throughput_command(args)
    if isinstance(part, Event):  # skipped: the data budget did not allow it
        print(json.dumps(part_dict(part)) if args.json else part.message)
        print(f"blankspot measure: {part.message}", file=sys.stderr)
        return 0
    _print_part(part, args.json)
    return 0

