"""open_modem, the one way a modem is opened, against the simulated modem on a pseudo-terminal.

- A named model is used as it is; without one the model is recognised from the modem's answers.
- The profile's init commands are sent before the modem is handed over.
- ``recover`` decides whether a silence is climbed out of (the agent) or reported at once.
- ``command_timeout`` caps the profile's timeout, the detected profile's too.
- Every failure leaves the port closed; a wrong model name fails before the port is opened.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from agent.sim.modem import SimulatedModem
from agent.sim.scenario import Radio, mahakam_scenario
from agent.unit.devices.modem.device import ModemUnavailable, open_modem
from agent.unit.devices.modem.errors import PortGone, ProfileError
from agent.unit.devices.modem.profiles import load_profile

SERVED = Radio(mahakam_scenario().towers[0], rsrp_dbm=-95.0, rsrq_db=-10.0, sinr_db=8.0, rssi_dbm=-67.0)


def simulated(profile: str, tmp_path: Path) -> SimulatedModem:
    return SimulatedModem.for_profile(profile, radio=lambda: SERVED, workdir=tmp_path, time_scale=0.01)


def descriptors_on(device: str | None) -> int:
    """How many of this process's file descriptors are open on ``device`` (the simulator holds one)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == device
        except OSError:
            pass
    return count


def is_subsequence(wanted: tuple[str, ...], seen: list[str]) -> bool:
    remaining = iter(seen)
    return all(command in remaining for command in wanted)


def test_a_named_model_is_used_as_it_is_and_its_init_commands_are_sent(tmp_path: Path) -> None:
    profile = load_profile("quectel-ec25")
    with simulated("quectel-ec25", tmp_path) as sim:
        modem = open_modem(sim.port, "quectel-ec25")
        try:
            assert modem.profile == profile
            assert "AT+CGMM" not in sim.received, "a named model is not detected"
            assert is_subsequence(profile.init, sim.received), sim.received
        finally:
            modem.close()


@pytest.mark.parametrize("profile", ["simcom-sim7600", "huawei-me909s"])
def test_without_a_model_the_modem_is_recognised_from_its_answers(profile: str, tmp_path: Path) -> None:
    with simulated(profile, tmp_path) as sim:
        modem = open_modem(sim.port)
        try:
            assert modem.profile is not None and modem.profile.name == profile
            assert is_subsequence(modem.profile.init, sim.received), sim.received
        finally:
            modem.close()


def test_a_wrong_model_name_fails_before_the_port_is_opened(tmp_path: Path) -> None:
    with simulated("quectel-ec25", tmp_path) as sim:
        with pytest.raises(ProfileError, match="known models: .*quectel-ec25"):
            open_modem(sim.port, "quectel-ec52")
        assert sim.received == []
        assert descriptors_on(sim.pty_name) == 1


def test_a_missing_port_is_port_gone(tmp_path: Path) -> None:
    with pytest.raises(PortGone, match="ttyUSB9"):
        open_modem(str(tmp_path / "ttyUSB9"), "quectel-ec25")


def test_a_silent_modem_is_unavailable_and_its_port_closed_again(tmp_path: Path) -> None:
    with simulated("generic-3gpp", tmp_path) as sim:
        sim.mute(True)
        with pytest.raises(ModemUnavailable, match="no answer to AT") as failure:
            open_modem(sim.port, "generic-3gpp")
        # ``failure`` keeps the traceback, and with it open_modem's modem: only closing it lets go of the port.
        assert descriptors_on(sim.pty_name) == 1


def test_without_recovery_a_silence_is_reported_at_once(tmp_path: Path) -> None:
    with simulated("quectel-ec25", tmp_path) as sim:
        modem = open_modem(sim.port, "quectel-ec25", command_timeout=0.5)
        try:
            sim.mute(True)
            with pytest.raises(ModemUnavailable, match="does not answer"):
                modem.query("AT+CSQ")
            assert modem.recoveries == []
        finally:
            modem.close()


def test_with_recovery_a_vanished_port_is_reopened(tmp_path: Path) -> None:
    with simulated("quectel-ec25", tmp_path) as sim:
        modem = open_modem(sim.port, "quectel-ec25", recover=True)
        try:
            sim.vanish()
            threading.Timer(0.8, sim.reappear).start()
            assert modem.query("AT+CSQ").startswith("+CSQ:")
            assert [(r.action, r.ok) for r in modem.recoveries] == [("reopen", True)]
        finally:
            modem.close()


@pytest.mark.parametrize("model", ["quectel-ec25", None], ids=["named model", "detected model"])
@pytest.mark.parametrize("command_timeout,expected", [(None, 5.0), (0.5, 0.5), (600.0, 5.0)],
                         ids=["the profile's", "capped", "never raised"])
def test_command_timeout_caps_the_profiles_timeout(model: str | None, command_timeout: float | None,
                                                   expected: float, tmp_path: Path) -> None:
    assert load_profile("quectel-ec25").timeout == 5.0
    with simulated("quectel-ec25", tmp_path) as sim:
        modem = open_modem(sim.port, model, command_timeout=command_timeout)
        try:
            assert modem.channel.timeout == expected
        finally:
            modem.close()
