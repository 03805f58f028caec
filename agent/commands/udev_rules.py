"""``python -m agent.commands.udev_rules``: print the udev rules for the modems that have a
profile (see :mod:`agent.unit.devices.modem.udev_rules`).  Kept apart from the ``blankspot``
command: it is run where the rules are made, by install.sh and by whoever adds a profile."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.unit.devices.modem.errors import ProfileError
from agent.unit.devices.modem.profiles import all_profiles
from agent.unit.devices.modem.udev_rules import UdevRulesError, profiles_in, udev_rules


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent.commands.udev_rules",
        description="Print udev rules naming the modem's AT and NMEA ports for every profile. "
                    "Example: python -m agent.commands.udev_rules --profiles firmware_configs > 90-blankspot.rules",
    )
    parser.add_argument("--profiles", type=Path, metavar="DIR",
                        help="read the profiles in DIR only (default: the agent's profile search path)")
    parser.add_argument("--share-modem", action="store_true",
                        help="keep ModemManager off the AT and NMEA ports only, so it can still run the data connection")
    args = parser.parse_args(argv)
    try:
        profiles = profiles_in(args.profiles) if args.profiles else all_profiles()
        text = udev_rules(profiles, "ports" if args.share_modem else "device")
    except (ProfileError, UdevRulesError) as exc:
        sys.stderr.write(f"udev_rules: {exc}\n")
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
