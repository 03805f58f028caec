"""``blankspot demo``: a simulated boat trip through a blank spot, end to end."""
from __future__ import annotations

import argparse

from agent.commands.common import setup_logging
from agent.commands.exit_status import RuntimeFailure, UsageError


def add_demo(sub: argparse._SubParsersAction) -> None:
    # agent.sim.demo is not imported here: building the parser must stay light for every command.
    p = sub.add_parser("demo", help="simulated boat trip through a blank spot, end to end",
                       description="Simulated trip on the Mahakam: a local broker, the agent, a blank spot, "
                                   "the backlog and its drain. Example: blankspot demo --seconds 60")
    p.add_argument("--seconds", type=float, default=None,
                   help="length of the time-compressed trip (default 180: enough readings for most cells to be "
                        "classed at the map's default grid; a shorter trip leaves more of them unknown)")
    p.add_argument("--workdir", default=None, help="keep the demo's files here (default: a temporary folder)")
    p.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto", help="which local broker to start")
    p.add_argument("--village", action="store_true",
                   help="also run a probe at a kantor desa whose data quota runs out during the trip: its "
                        "heartbeat SMS reaches the centre's SMS gateway, and the end shows it alive by SMS")
    p.add_argument("--verbose", "-v", action="store_true", help="show the agent's log")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    import math

    from agent.sim.demo import DEFAULT_TRIP_SECONDS, MIN_TRIP_SECONDS, DemoError, run_demo

    if args.seconds is None:
        args.seconds = DEFAULT_TRIP_SECONDS
    if not (math.isfinite(args.seconds) and args.seconds >= MIN_TRIP_SECONDS):
        raise UsageError(f"blankspot demo: --seconds must be at least {MIN_TRIP_SECONDS:g}, not {args.seconds:g}")
    setup_logging("error" if not args.verbose else "info")
    try:
        return run_demo(trip_seconds=args.seconds, workdir=args.workdir, broker_kind=args.broker, out=print,
                        village=args.village)
    except DemoError as exc:
        raise RuntimeFailure(str(exc)) from None
