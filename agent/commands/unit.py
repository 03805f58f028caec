"""``blankspot run``, ``status``, ``readings`` and ``doctor``: the commands of a field unit; ``make_service``, the agent they run."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from agent.commands.common import config_arg, load_config_arg, setup_logging
from agent.commands.exit_status import EXIT_USAGE, RuntimeFailure, UsageError
from agent.unit.config import DEFAULT_PATH, Config, load_config

if TYPE_CHECKING:
    from agent.shared.clock import TimeKeeper
    from agent.sim.synthetic import SyntheticSource
    from agent.unit.service import AgentService

log = logging.getLogger(__name__)


def make_service(config: Config, **options: Any) -> "AgentService":
    """The agent with the probes ``source.kind`` names; ``options`` go to :class:`AgentService`."""
    from agent.unit.service import AgentService

    if config.source.kind == "synthetic":
        options.setdefault("probes", synthetic_probes)
    return AgentService(config, **options)


def synthetic_probes(config: Config, device: str, clock: "TimeKeeper") -> "SyntheticSource":
    """A boat on the Mahakam route, one reading every ``source.interval``."""
    from agent.sim.route import mahakam_route
    from agent.sim.scenario import mahakam_scenario
    from agent.sim.synthetic import SyntheticSource

    return SyntheticSource(device, mahakam_route(), mahakam_scenario(), config.source.speed_kmh, clock,
                           interval=config.source.interval)


def add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the agent: take readings, buffer them, push them to the broker",
                       description="Run the agent until SIGTERM. Example: blankspot run --config /etc/blankspot/agent.toml",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    config_arg(p)
    p.add_argument("--check", action="store_true", help="validate the config file and exit")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="override log.level")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from agent.unit.config_files import file_problems

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
    # Imported past --check, which validates the config without the buffer's or the panel's code.
    from agent.unit.buffer import BufferError
    from agent.unit.devices.panel import PanelError

    setup_logging(args.log_level or config.log.level)
    # Not fatal at run time: readings are taken and buffered while, say, a certificate is
    # still missing, and a buffer folder that cannot be written stops the service anyway.
    for problem in problems:
        log.warning("%s", problem)
    try:
        service = make_service(config, config_path=str(args.config or DEFAULT_PATH))
    except (BufferError, PanelError) as exc:
        raise RuntimeFailure(str(exc)) from None
    stop = threading.Event()

    def stop_now(*_: object) -> None:
        stop.set()
        service.wake()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop_now)
    service.run(stop)
    return 0


def add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show the unit at a glance: agent, fix, signal, backlog, data used",
                       description="Show whether the agent runs, its last fix and signal, the clock source, the "
                                   "uplink, the backlog and the data used (docs/operating.md). "
                                   "Example: blankspot status --json")
    config_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from agent.unit.buffer import BufferError
    from agent.unit.service import state_path
    from agent.unit.status import collect_status, status_lines

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


def add_readings(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("readings", help="print the readings a buffer file holds, one JSON line each",
                       description="Print each reading a buffer file holds, oldest first, exactly as the unit sends "
                                   "it (blankspot.reading/2, or /1 if stored before an upgrade; one per line): the "
                                   "unit's own buffer, even while the agent runs, a buffer kept aside as corrupt, or "
                                   "what sqlite3 saved of one (docs/buffer.md). "
                                   "Example: blankspot readings --pending recovered.db > pending.jsonl")
    p.add_argument("file", nargs="?", default=None, help="a buffer file (default: buffer.path of the config)")
    config_arg(p)
    p.add_argument("--pending", action="store_true", help="only the readings the broker never acknowledged")
    p.set_defaults(func=cmd_readings)


def cmd_readings(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agent.unit.buffer import BufferError, read_stored_bodies
    from agent.unit.stored_body import StoredBodyError, unpack_body

    path = Path(args.file) if args.file is not None else load_config_arg(args).buffer.path
    if not path.is_file():
        raise UsageError(f"blankspot readings: no buffer file at {path}")
    unreadable = 0
    try:
        for seq, body in read_stored_bodies(path, pending_only=args.pending):
            try:
                print(unpack_body(body))
            except StoredBodyError as exc:
                unreadable += 1
                print(f"blankspot readings: seq {seq}: {exc}", file=sys.stderr)
    except BufferError as exc:
        raise RuntimeFailure(str(exc)) from None
    if unreadable:
        raise RuntimeFailure(f"{unreadable} readings could not be read (each named above)")
    return 0


def add_doctor(sub: argparse._SubParsersAction) -> None:
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


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent.unit.doctor import DoctorOptions, exit_status, report_dict, result_lines, run_doctor, summary_line

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
