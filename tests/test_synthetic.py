"""The synthetic source: a boat on the Mahakam whose signal is what a Quectel EC25 there
reports, read by the agent's own parsers."""
from __future__ import annotations

import math
import threading
from datetime import datetime, timezone
from pathlib import Path
from time import monotonic

import pytest

from agent.commands.unit import make_service
from agent.shared.reading import Signal
from agent.sim.route import mahakam_route
from agent.sim.scenario import CoverageScenario, mahakam_scenario
from agent.sim.synthetic import SteppedTime, SyntheticSource
from agent.unit.config import load_config
from agent.unit.service import AgentService
from tests.support.unit_config import write_config

START = datetime(2026, 11, 24, 0, 0, 0, tzinfo=timezone.utc)


def boat(scenario: CoverageScenario, time: SteppedTime, *, interval: float = 10.0) -> SyntheticSource:
    return SyntheticSource("boat-1", mahakam_route(), scenario, 400.0, time, interval=interval)


def half_away_from_zero(value: float) -> int:
    """How the EC25 prints a measured level: whole dB, halves away from zero."""
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def test_a_reading_in_a_blank_spot_is_searching_with_no_technology_and_no_quality() -> None:
    reading = boat(CoverageScenario(towers=()), SteppedTime(START)).read()
    assert isinstance(reading.part, Signal)
    assert (reading.part.registration, reading.part.rat, reading.part.quality, reading.part.error) == (
        "searching", "NONE", "none", None)
    assert reading.part.operator is None and reading.part.rsrp_dbm is None


def test_in_service_the_operator_cell_and_levels_are_what_the_modem_prints() -> None:
    time = SteppedTime(START)
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


# -- as the main loop's probes -----------------------------------------------------------------

def test_a_reading_is_due_at_once_then_every_interval() -> None:
    time = SteppedTime(START)
    source = boat(mahakam_scenario(), time, interval=0.02)
    taken = []
    for step in range(10):  # every 5 ms for 45 ms
        time.elapsed = step * 0.005
        taken += [(time.elapsed, reading) for reading in source.tick()]
        assert 0 <= source.next_in() <= 0.02 + 1e-9
    assert [round(at, 3) for at, _ in taken] == [0.0, 0.02, 0.04]
    assert source.last_signal_reading is taken[-1][1]


def test_after_a_long_pause_one_reading_then_the_interval_again() -> None:
    time = SteppedTime(START)
    source = boat(mahakam_scenario(), time, interval=0.02)
    source.tick()
    time.elapsed = 60.0  # the unit was suspended
    assert len(source.tick()) == 1
    assert source.tick() == [] and source.next_in() == pytest.approx(0.02)


def test_the_service_loop_takes_a_reading_every_20_ms(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "agent.toml", 1, tmp_path / "buffer.db",
                                      {"uplink": {"enabled": False}, "source": {"interval": "20ms"}}))
    service = make_service(config)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    started = monotonic()
    thread.start()
    stop.wait(2.0)
    stop.set()
    thread.join(10)
    ran = monotonic() - started
    assert not thread.is_alive()
    print(f"{service.taken} readings in {ran:.2f} s")
    # Not the loop's own 200 ms pace: the source says when it wants the next turn.
    assert 0.75 * 2.0 / 0.02 <= service.taken <= ran / 0.02 + 2


def test_a_synthetic_unit_states_no_mode_no_gps_and_its_last_signal(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "agent.toml", 1, tmp_path / "buffer.db", {"uplink": {"enabled": False}}))
    service = make_service(config)
    service.store(service.probes.tick())
    state = service.state()
    service.buffer.close()
    assert (state["source"], state["mode"], state["gps"], state["fix"]) == ("synthetic", None, "absent", None)
    assert state["signal"]["rat"] in ("LTE", "NONE") and state["signal"]["error"] is None


def test_the_service_alone_refuses_a_synthetic_source_and_names_what_builds_it(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "agent.toml", 1, tmp_path / "buffer.db"))
    with pytest.raises(ValueError, match=r"agent\.commands\.unit\.make_service"):
        AgentService(config)
