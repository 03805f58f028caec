"""AtChannel and Modem against the simulated modem on a pseudo-terminal (opened by pyserial)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.unit.devices.modem.at import AtChannel
from agent.unit.devices.modem.device import Modem
from agent.unit.devices.modem.errors import AtCommandError, AtTimeout, ModemError, PortGone
from agent.unit.devices.modem.profiles import load_profile
from agent.sim.scenario import Radio, mahakam_scenario
from agent.sim.modem import SimulatedModem

SAMARINDA = mahakam_scenario().towers[0]
SERVED = Radio(SAMARINDA, rsrp_dbm=-95.0, rsrq_db=-10.0, sinr_db=8.0, rssi_dbm=-67.0)


@pytest.fixture
def sim(tmp_path: Path):
    modem = SimulatedModem.for_profile("quectel-ec25", radio=lambda: SERVED, workdir=tmp_path, time_scale=0.01)
    yield modem
    modem.close()


@pytest.fixture
def channel(sim: SimulatedModem):
    with AtChannel(sim.port, timeout=2.0) as ch:
        yield ch


def test_answer_lines_without_echo_or_final(channel: AtChannel) -> None:
    response = channel.command("AT+CSQ")
    assert response.final.ok and response.lines[0].startswith("+CSQ: ")
    assert all(not line.startswith("AT") for line in response.lines)


def test_cme_error_is_raised_with_its_text(sim: SimulatedModem, channel: AtChannel) -> None:
    channel.query("AT+CMEE=2")
    sim.sim = "pin"
    with pytest.raises(AtCommandError) as info:
        channel.query("AT+CIMI")
    assert info.value.kind == "+CME ERROR" and "SIM PIN required" in (info.value.text or "")


def test_unknown_command_is_an_error_not_a_timeout(channel: AtChannel) -> None:
    started = time.monotonic()
    with pytest.raises(AtCommandError):
        channel.query("AT+NOSUCHTHING")
    assert time.monotonic() - started < 1.0


def test_urc_inside_a_reply_is_kept_apart(sim: SimulatedModem, channel: AtChannel) -> None:
    seen: list[str] = []
    channel.on_urc = seen.append
    sim.urc_inside_next_reply('+CEREG: 1,"2B01","1A2B301",7')
    response = channel.command("AT+CSQ")
    assert [line for line in response.lines if line.startswith("+CEREG")] == []
    channel.command("AT")  # the copy right after OK is read with the next exchange at the latest
    assert seen.count('+CEREG: 1,"2B01","1A2B301",7') == 2


def test_silence_times_out_then_the_channel_recovers(sim: SimulatedModem, channel: AtChannel) -> None:
    sim.mute(True)
    started = time.monotonic()
    with pytest.raises(AtTimeout):
        channel.command("AT+CSQ", timeout=0.5)
    assert time.monotonic() - started < 1.5, "the channel never hangs"
    sim.mute(False)
    assert channel.command("AT").final.ok


def test_garbage_before_an_answer_does_not_confuse_the_channel(sim: SimulatedModem, channel: AtChannel) -> None:
    sim.send_garbage(b"\xb5b\x01\x07\x5c\x00\xff\xfe\r\n\x00garbage\r\n")
    time.sleep(0.1)  # let it cross the pseudo-terminal, in the kernel's own time, before the command goes out
    assert channel.command("AT+CSQ").lines[0].startswith("+CSQ:")


def test_vanished_port_is_port_gone_and_comes_back(sim: SimulatedModem, channel: AtChannel) -> None:
    sim.vanish()
    with pytest.raises(PortGone):
        channel.command("AT", timeout=1.0)
    with pytest.raises(PortGone):
        channel.open()
    sim.reappear()
    channel.reopen()
    assert channel.command("AT").final.ok


def test_a_vanished_port_fails_in_every_way_pyserial_has_and_each_is_said_in_a_few_words() -> None:
    """Writing to a port whose device is gone fails from write() as an OSError, or from the
    flush after it as termios.error (not an OSError): both are a gone port."""
    import os
    import pty
    import termios

    import serial

    from agent.unit.devices.serial_port import PORT_ERRORS, port_failure

    master, slave = pty.openpty()
    os.close(master)  # the device goes away under an open port
    try:
        with pytest.raises(termios.error) as drained:
            termios.tcdrain(slave)
    finally:
        os.close(slave)
    failures = [drained.value, OSError(5, "Input/output error"),
                serial.SerialException("device reports readiness to read but returned no data")]
    assert all(isinstance(exc, PORT_ERRORS) for exc in failures)
    assert [port_failure(exc) for exc in failures] == [
        "Input/output error", "Input/output error", "device reports readiness to read but returned no data"]


def test_modem_reopens_a_vanished_port_by_itself(tmp_path: Path, sim: SimulatedModem) -> None:
    modem = Modem(sim.port, load_profile("quectel-ec25"), port_wait=5.0)
    modem.connect()
    sim.vanish()
    threading.Timer(0.8, sim.reappear).start()
    assert modem.query("AT+CSQ").startswith("+CSQ:")
    assert [(r.action, r.ok) for r in modem.recoveries] == [("reopen", True)]
    modem.close()


def test_modem_without_recovery_reports_at_once(sim: SimulatedModem) -> None:
    modem = Modem(sim.port, load_profile("quectel-ec25"), recover=False)
    modem.connect()
    sim.mute(True)
    modem.channel.timeout = 0.5
    with pytest.raises(ModemError, match="does not answer"):
        modem.query("AT+CSQ")
    modem.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(noise=st.binary(max_size=200))
def test_fuzz_arbitrary_bytes_from_the_modem(sim: SimulatedModem, channel: AtChannel, noise: bytes) -> None:
    """Whatever the modem sends, the channel answers with a response or its documented errors."""
    sim.send_garbage(noise)
    try:
        channel.command("AT", timeout=0.5)
    except (AtTimeout, AtCommandError):
        pass
    assert channel.command("AT", timeout=1.0).final.ok


def test_a_stuck_modem_is_reset_through_its_profile(tmp_path: Path) -> None:
    """Answers AT but hangs on a signal command: reopen does not help, the profile's reset does."""
    with SimulatedModem.for_profile("quectel-ec25", radio=lambda: SERVED, workdir=tmp_path, time_scale=0.01,
                                    reset_s=0.5) as sim:
        profile = load_profile("quectel-ec25")
        modem = Modem(sim.port, profile, port_wait=3.0, sleep=lambda s: time.sleep(min(s, 0.3)))
        modem.connect()
        modem.channel.timeout = 0.5
        sim.set_delay("AT+CSQ", 60.0)  # firmware stuck in a state where CSQ never completes

        def unstick() -> None:
            if sim.resets:
                sim.set_delay("AT+CSQ", 0.0)
            else:
                threading.Timer(0.05, unstick).start()

        unstick()
        started = time.monotonic()
        assert modem.query("AT+CSQ").startswith("+CSQ:")
        assert time.monotonic() - started < profile.reset_wait + 10
        assert [(r.action, r.ok) for r in modem.recoveries] == [("reopen", True), ("reset", True)]
        assert sim.resets == 1
        modem.close()


# -- a message typed after AT+CMGS's prompt --------------------------------------------------------

def _sms_pair(tmp_path: Path):
    from agent.sim.sms_network import SmsNetwork

    net = SmsNetwork(delay_s=0.05)
    unit = SimulatedModem.for_profile("quectel-ec25", radio=lambda: SERVED, workdir=tmp_path / "unit",
                                      time_scale=0.01, number="+6281234500001", sms_network=net)
    centre = SimulatedModem.for_profile("quectel-ec25", radio=lambda: SERVED, workdir=tmp_path / "centre",
                                        time_scale=0.01, number="+6281234500002", sms_network=net)
    return net, unit, centre


def test_a_message_is_typed_after_the_prompt_and_its_reference_returned(tmp_path: Path) -> None:
    from agent.shared.sms_pdu import encode_submit
    from agent.unit.devices.modem.parse_sms import parse_cmgs

    net, unit, centre = _sms_pair(tmp_path)
    try:
        with AtChannel(unit.port, timeout=2.0) as ch:
            ch.query("AT+CMGF=0")
            pdu, octets = encode_submit("+6281234500002", "BS1 test")
            response = ch.send_after_prompt(f"AT+CMGS={octets}", pdu, timeout=5.0)
            assert response.final.ok and parse_cmgs(response.text) == 1
            assert ch.query("AT").strip() == "", "the channel is back to commands"
        assert net.wait_idle(5.0)
        assert [m.pdu for m in centre.sms_messages] and unit.sms_sent[0].text == "BS1 test"
    finally:
        unit.close(), centre.close(), net.close()


def test_a_refused_send_ends_in_its_cms_error_not_a_timeout(tmp_path: Path) -> None:
    from agent.unit.devices.modem.sms import send_text

    net, unit, centre = _sms_pair(tmp_path)
    try:
        unit.fail_sms("no_credit")
        with AtChannel(unit.port, timeout=2.0) as ch:
            started = time.monotonic()
            result = send_text(ch, "+6281234500002", "BS1 test", timeout=5.0)
            assert time.monotonic() - started < 2.0
            assert (result.ok, result.code, result.kind) == (False, 21, "no_credit_or_barred")
            unit.fail_sms(None)
            assert send_text(ch, "+6281234500002", "BS1 again", timeout=5.0).ok
    finally:
        unit.close(), centre.close(), net.close()


def test_a_command_refused_before_the_prompt_is_answered_and_nothing_typed(tmp_path: Path) -> None:
    net, unit, centre = _sms_pair(tmp_path)
    try:
        with AtChannel(unit.port, timeout=2.0) as ch:
            ch.query("AT+CMGF=0")
            response = ch.send_after_prompt("AT+CMGS=3", "0011", timeout=2.0)  # 3 octets: no TPDU is that short
            assert not response.final.ok and response.final.kind == "+CMS ERROR" and response.final.code == 304
            assert ch.query("AT").strip() == ""
        assert unit.sms_sent == []
    finally:
        unit.close(), centre.close(), net.close()


def test_no_prompt_cancels_with_esc_and_times_out(tmp_path: Path) -> None:
    net, unit, centre = _sms_pair(tmp_path)
    try:
        with AtChannel(unit.port, timeout=2.0) as ch:
            ch.query("AT+CMGF=0")
            unit.mute(True)
            with pytest.raises(AtTimeout):
                ch.send_after_prompt("AT+CMGS=20", "00" * 21, prompt_timeout=0.5)
            unit.mute(False)
            assert ch.query("AT").strip() == "", "the next command is not taken for a message"
        assert unit.sms_sent == []
    finally:
        unit.close(), centre.close(), net.close()


def test_a_send_that_never_finishes_is_a_timeout_and_the_channel_recovers(tmp_path: Path) -> None:
    from agent.unit.devices.modem.sms import send_text

    net, unit, centre = _sms_pair(tmp_path)
    try:
        unit.fail_sms("no_answer")
        with AtChannel(unit.port, timeout=2.0) as ch:
            result = send_text(ch, "+6281234500002", "BS1 test", timeout=0.5)
            assert (result.ok, result.kind) == (False, "no_answer")
            assert ch.query("AT").strip() == ""
    finally:
        unit.close(), centre.close(), net.close()


def test_the_lock_keeps_other_commands_out_of_a_message(tmp_path: Path) -> None:
    from agent.unit.devices.modem.sms import send_text

    net, unit, centre = _sms_pair(tmp_path)
    try:
        unit.delay_sms(0.5)
        with AtChannel(unit.port, timeout=2.0) as ch:
            answers: list[str] = []
            sender = threading.Thread(target=lambda: answers.append(
                "sent" if send_text(ch, "+6281234500002", "BS1 test", timeout=5.0).ok else "failed"))
            sender.start()
            time.sleep(0.1)
            for _ in range(3):
                ch.query("AT+CSQ")
            sender.join(5)
            # A command typed into the message would have spoilt its PDU (+CMS ERROR: 304).
            assert answers == ["sent"] and [m.text for m in unit.sms_sent] == ["BS1 test"]
        assert unit.received.count("AT+CSQ") == 3
    finally:
        unit.close(), centre.close(), net.close()
