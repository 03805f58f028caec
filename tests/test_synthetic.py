"""The synthetic source: a boat on the Mahakam whose signal is what a Quectel EC25 there
reports, read by the agent's own parsers."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from agent.shared.clock import Timestamp
from agent.shared.reading import Signal
from agent.sim.route import mahakam_route
from agent.sim.scenario import CoverageScenario, mahakam_scenario
from agent.sim.synthetic import SyntheticSource

START = datetime(2026, 11, 24, 0, 0, 0, tzinfo=timezone.utc)


@dataclass
class SteppedTime:
    """Wall and monotonic time that move only when a test moves them."""

    elapsed: float = 0.0

    def monotonic(self) -> float:
        return self.elapsed

    def now(self) -> Timestamp:
        return Timestamp(START + timedelta(seconds=self.elapsed), "gps")


def boat(scenario: CoverageScenario, time: SteppedTime, *, speed_kmh: float = 400.0) -> SyntheticSource:
    return SyntheticSource("boat-1", mahakam_route(), scenario, speed_kmh, time, time.monotonic)


def half_away_from_zero(value: float) -> int:
    """How the EC25 prints a measured level: whole dB, halves away from zero."""
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def test_a_reading_in_a_blank_spot_is_searching_with_no_technology_and_no_quality() -> None:
    reading = boat(CoverageScenario(towers=()), SteppedTime()).read()
    assert isinstance(reading.part, Signal)
    assert (reading.part.registration, reading.part.rat, reading.part.quality, reading.part.error) == (
        "searching", "NONE", "none", None)
    assert reading.part.operator is None and reading.part.rsrp_dbm is None


def test_in_service_the_operator_cell_and_levels_are_what_the_modem_prints() -> None:
    time = SteppedTime()
    source = boat(mahakam_scenario(), time)
    served = 0
    for _ in range(300):  # the whole route, both ways, in and out of coverage
        radio = source.radio()
        signal = source.read().part
        assert isinstance(signal, Signal) and signal.error is None
        if radio.tower is not None:
            served += 1
            tower = radio.tower
            assert (signal.registration, signal.operator, signal.mcc, signal.mnc, signal.rat) == (
                "home", tower.operator, tower.mcc, tower.mnc, tower.rat)
            assert (signal.cell_id, signal.pci, signal.tac, signal.band, signal.earfcn) == (
                tower.cell_id, tower.pci, tower.tac, tower.band, tower.earfcn)
            assert (signal.rsrp_dbm, signal.rsrq_db, signal.rssi_dbm, signal.sinr_db) == (
                half_away_from_zero(radio.rsrp_dbm), half_away_from_zero(radio.rsrq_db),
                half_away_from_zero(radio.rssi_dbm), half_away_from_zero(radio.sinr_db))
            assert signal.quality in ("excellent", "good", "fair", "poor")
        else:
            assert (signal.registration, signal.rat, signal.quality) == ("searching", "NONE", "none")
        time.elapsed += 5.0
    assert 30 < served < 270, "the trip crossed coverage and the blank stretch"
