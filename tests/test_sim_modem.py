"""The simulated modem: a pseudo-terminal that pyserial opens like /dev/ttyUSB2 and that
answers as a given model would, including when it misbehaves.

Everything here talks to the simulator through plain pyserial, byte for byte, so the tests
pin down the exact stream a host sees: echo, V.250 framing, +CME ERROR per AT+CMEE, answers
that follow the radio, and the failures a field unit meets (hung modem, line noise, URCs in
the middle of a reply, USB re-enumeration, reset).
"""
from __future__ import annotations

import math
import os
import time

import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st

from agent.unit.devices.modem import levels
from agent.unit.devices.modem.parse_sierra import parse_gstatus, parse_lteinfo
from agent.unit.devices.modem.parse_telit import parse_rfsts
from agent.unit.devices.modem.profiles import DRIVERS
from agent.unit.devices.modem.transcript import parse_transcript
from agent.unit.devices.modem.values import SignalFacts
from agent.sim import modem_answers as answers
from agent.sim.scenario import Radio, Tower, mahakam_scenario
from agent.sim.modem import SimulatedModem
from tests.support.raw_modem import quiet_for

FINALS = (b"\r\nOK\r\n", b"\r\nERROR\r\n")

TRANSCRIPT = parse_transcript(
    """\
# Quectel EC25-E, firmware EC25EFAR06A06M4G (abridged)
> ATI
Quectel
EC25
Revision: EC25EFAR06A06M4G

OK
> AT+CGMI
Quectel

OK
> AT+CGMM
EC25

OK
> AT+QGPS=1
OK
> AT+C5GREG?
ERROR
> AT+CIMI
510101234567890

OK
"""
)

# The Samarinda mast of the Mahakam scenario, with round levels so answers are easy to check.
SAMARINDA: Tower = mahakam_scenario().towers[0]
SERVED = Radio(SAMARINDA, rsrp_dbm=-98.0, rsrq_db=-10.5, sinr_db=17.0, rssi_dbm=-70.0)
BLANK = Radio(None)


class Dial:
    """The radio conditions the modem measures; a test turns the dial."""

    def __init__(self, radio: Radio) -> None:
        self.radio = radio

    def __call__(self) -> Radio:
        return self.radio


def read_reply(port: serial.Serial, within: float = 2.0) -> bytes:
    """Bytes up to and including the final result (OK, ERROR, +CME ERROR), bounded in time."""
    data = b""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        data += port.read(max(1, port.in_waiting))
        if data.endswith(FINALS) or (data.endswith(b"\r\n") and b"\r\n+CME ERROR: " in data):
            return data
    raise AssertionError(f"no final result within {within}s; got {data!r}")


def talk(port: serial.Serial, command: str) -> bytes:
    port.write(command.encode("ascii") + b"\r")
    return read_reply(port)


def wait_for(predicate, within: float) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within:
            raise AssertionError(f"condition not met within {within}s")
        time.sleep(0.01)
    return time.monotonic() - start


@pytest.fixture
def dial() -> Dial:
    return Dial(SERVED)


@pytest.fixture
def modem(tmp_path, dial: Dial):
    m = SimulatedModem(TRANSCRIPT, "quectel", dial, workdir=tmp_path, time_scale=0.1, reset_s=0.3, boot_delay=0.1)
    yield m
    m.close()


@pytest.fixture
def port(modem: SimulatedModem):
    with serial.Serial(modem.port, 115200, timeout=0.05) as p:
        yield p


# -- the line ---------------------------------------------------------------------------------

def test_port_is_a_stable_path_that_pyserial_opens(modem: SimulatedModem, port: serial.Serial) -> None:
    """``port`` is a symlink in the work folder to the pseudo-terminal, opened like /dev/ttyUSB2."""
    assert os.path.islink(modem.port) and os.path.dirname(modem.port) == str(modem.workdir)
    assert os.path.realpath(modem.port) == modem.pty_name
    assert talk(port, "AT") == b"AT\r\r\nOK\r\n"


def test_echo_is_on_by_default_and_ate0_turns_it_off(port: serial.Serial) -> None:
    """Like a modem out of the box, commands are echoed (with their CR) until ATE0."""
    assert talk(port, "AT+CGMI") == b"AT+CGMI\r\r\nQuectel\r\n\r\nOK\r\n"
    assert talk(port, "ATE0") == b"ATE0\r\r\nOK\r\n"  # the command that turns echo off is still echoed
    assert talk(port, "AT+CGMI") == b"\r\nQuectel\r\n\r\nOK\r\n"
    assert talk(port, "ATE1") == b"\r\nOK\r\n"
    assert talk(port, "AT") == b"AT\r\r\nOK\r\n"


def test_answers_use_v250_verbose_framing(port: serial.Serial) -> None:
    """Information text as CR LF <line> CR LF (lines joined by CR LF), then CR LF OK CR LF;
    unknown commands get ERROR; lower case works as on real modems."""
    talk(port, "ATE0")
    assert talk(port, "ATI") == b"\r\nQuectel\r\nEC25\r\nRevision: EC25EFAR06A06M4G\r\n\r\nOK\r\n"
    assert talk(port, "AT+QGPS=1") == b"\r\nOK\r\n"
    assert talk(port, "AT+NOSUCH") == b"\r\nERROR\r\n"
    assert talk(port, "at+cgmm") == b"\r\nEC25\r\n\r\nOK\r\n"


# -- answers that follow the radio ------------------------------------------------------------

def test_signal_answers_follow_the_radio(modem: SimulatedModem, port: serial.Serial, dial: Dial) -> None:
    """Served by a tower, AT+CSQ and AT+QENG report it; in a blank spot they say no service,
    and registration says the modem is searching (stat 2), as real modems do there."""
    talk(port, "ATE0")
    talk(port, "AT+CEREG=2")
    served = {c: talk(port, c) for c in ("AT+CSQ", 'AT+QENG="servingcell"', "AT+CEREG?", "AT+COPS?")}
    dial.radio = BLANK
    blank = {c: talk(port, c) for c in served}
    for c, answer in served.items():
        print(f"{c:24} served: {answer!r}\n{'':24} blank:  {blank[c]!r}")
    assert served["AT+CSQ"] == b"\r\n+CSQ: 21,99\r\n\r\nOK\r\n"
    assert b'"LTE","FDD",510,10,1A2B301,101,1850,3,5,5,2B01,-98,-11,-70,17,' in served['AT+QENG="servingcell"']
    assert served["AT+CEREG?"] == b'\r\n+CEREG: 2,1,"2B01","1A2B301",7\r\n\r\nOK\r\n'
    assert served["AT+COPS?"] == b'\r\n+COPS: 0,0,"TELKOMSEL",7\r\n\r\nOK\r\n'
    assert blank["AT+CSQ"] == b"\r\n+CSQ: 99,99\r\n\r\nOK\r\n"
    assert blank['AT+QENG="servingcell"'] == b'\r\n+QENG: "servingcell","SEARCH"\r\n\r\nOK\r\n'
    assert blank["AT+CEREG?"] == b"\r\n+CEREG: 2,2\r\n\r\nOK\r\n"
    assert blank["AT+COPS?"] == b"\r\n+COPS: 0\r\n\r\nOK\r\n"


def test_radio_along_the_river_changes_what_the_modem_says(modem: SimulatedModem, port: serial.Serial,
                                                             dial: Dial) -> None:
    """Driving the coverage scenario from Samarinda to the blank reach past Sebulu: +CSQ falls
    with distance and ends at 99,99."""
    scenario = mahakam_scenario()
    talk(port, "ATE0")
    seen = []
    for lat, lon in [(-0.5030, 117.1460), (-0.45, 117.15), (-0.42, 117.20), (-0.30, 116.95)]:
        dial.radio = scenario.radio_at(lat, lon)
        line = talk(port, "AT+CSQ").split(b"\r\n")[1].decode()
        seen.append(line)
    print("CSQ along the river:", seen)
    indices = [int(s.split(": ")[1].split(",")[0]) for s in seen]
    assert indices[0] > indices[1] > indices[2]
    assert seen[-1] == "+CSQ: 99,99"


def test_registration_modes_and_unsupported_commands(port: serial.Serial) -> None:
    """AT+CREG=2 and siblings add <lac>/<tac>, cell id and AcT; a command the transcript
    answers with ERROR (no 5G on an EC25) stays ERROR whatever the radio."""
    talk(port, "ATE0")
    assert talk(port, "AT+CREG?") == b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"
    assert talk(port, "AT+CREG=2") == b"\r\nOK\r\n"
    assert talk(port, "AT+CREG?") == b'\r\n+CREG: 2,1,"2B01","1A2B301",7\r\n\r\nOK\r\n'
    assert talk(port, "AT+CGREG=1") == b"\r\nOK\r\n"
    assert talk(port, "AT+CGREG?") == b"\r\n+CGREG: 1,1\r\n\r\nOK\r\n"
    assert talk(port, "AT+COPS=3,2") == b"\r\nOK\r\n"
    assert talk(port, "AT+COPS?") == b'\r\n+COPS: 0,2,"51010",7\r\n\r\nOK\r\n'
    assert talk(port, "AT+C5GREG?") == b"\r\nERROR\r\n"


def test_character_set_shapes_operator_names(port: serial.Serial) -> None:
    """AT+CSCS chooses how strings are printed: a modem set to UCS2 prints names and the
    numeric operator in hex, as u-blox LARA modules do; GSM maps them to the default alphabet."""
    talk(port, "ATE0")
    assert talk(port, "AT+CSCS?") == b'\r\n+CSCS: "IRA"\r\n\r\nOK\r\n'
    assert talk(port, "AT+CSCS=?") == b'\r\n+CSCS: ("IRA","GSM","UCS2")\r\n\r\nOK\r\n'
    assert talk(port, 'AT+CSCS="UCS2"') == b"\r\nOK\r\n"
    assert talk(port, "AT+CSCS?") == b'\r\n+CSCS: "UCS2"\r\n\r\nOK\r\n'
    assert talk(port, "AT+COPS?") == b'\r\n+COPS: 0,0,"00540045004C004B004F004D00530045004C",7\r\n\r\nOK\r\n'
    assert b'"00350031003000310030",7)' in talk(port, "AT+COPS=?")
    assert talk(port, 'AT+CSCS="KOI8"').startswith(b"\r\nERROR")
    assert answers.in_charset("T@$", "GSM") == "T\x00\x02"


def test_slow_commands_take_their_time_one_command_at_a_time(modem: SimulatedModem, port: serial.Serial) -> None:
    """AT+COPS=? takes seconds on a real modem (here scaled down); a command sent meanwhile
    is answered after it, never interleaved."""
    talk(port, "ATE0")
    modem.set_delay("AT+COPS=?", 4.0)  # 0.4 s with time_scale 0.1
    start = time.monotonic()
    port.write(b"AT+COPS=?\rAT\r")
    scan = read_reply(port, within=3.0)
    scan_s = time.monotonic() - start
    after = read_reply(port)
    print(f"AT+COPS=? answered after {scan_s:.2f}s: {scan!r}; then {after!r}")
    assert scan == b'\r\n+COPS: (2,"TELKOMSEL","TELKOMSEL","51010",7),,(0,1,2,3,4),(0,1,2)\r\n\r\nOK\r\n'
    assert after == b"\r\nOK\r\n"
    assert 0.4 <= scan_s < 2.0


# -- SIM states -------------------------------------------------------------------------------

def test_sim_pin_gives_cme_error_per_cmee_mode(modem: SimulatedModem, port: serial.Serial) -> None:
    """With a PIN-locked SIM, network commands fail with SIM PIN required: plain ERROR under
    AT+CMEE=0, code 11 under =1, text under =2; the right PIN unlocks it."""
    modem.sim = "pin"
    talk(port, "ATE0")
    assert talk(port, "AT+CPIN?") == b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
    assert talk(port, "AT+COPS?") == b"\r\nERROR\r\n"
    talk(port, "AT+CMEE=1")
    assert talk(port, "AT+CSQ") == b"\r\n+CME ERROR: 11\r\n"
    assert talk(port, "AT+CIMI") == b"\r\n+CME ERROR: 11\r\n"
    talk(port, "AT+CMEE=2")
    assert talk(port, "AT+CMEE?") == b"\r\n+CMEE: 2\r\n\r\nOK\r\n"
    assert talk(port, 'AT+QENG="servingcell"') == b"\r\n+CME ERROR: SIM PIN required\r\n"
    assert talk(port, "AT+CGMI") == b"\r\nQuectel\r\n\r\nOK\r\n"  # identity needs no SIM
    assert talk(port, 'AT+CPIN="0000"') == b"\r\n+CME ERROR: incorrect password\r\n"
    assert talk(port, 'AT+CPIN="1234"') == b"\r\nOK\r\n"
    assert talk(port, "AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    assert talk(port, "AT+CSQ") == b"\r\n+CSQ: 21,99\r\n\r\nOK\r\n"


def test_sim_absent(modem: SimulatedModem, port: serial.Serial) -> None:
    """No SIM: AT+CPIN? itself fails with SIM not inserted (10), and so do network commands."""
    modem.sim = "absent"
    talk(port, "ATE0")
    talk(port, "AT+CMEE=2")
    assert talk(port, "AT+CPIN?") == b"\r\n+CME ERROR: SIM not inserted\r\n"
    assert talk(port, "AT+CEREG?") == b"\r\n+CME ERROR: SIM not inserted\r\n"
    talk(port, "AT+CMEE=1")
    assert talk(port, "AT+COPS?") == b"\r\n+CME ERROR: 10\r\n"


# -- misbehaviour -----------------------------------------------------------------------------

def test_muted_modem_reads_but_never_answers(modem: SimulatedModem, port: serial.Serial) -> None:
    """A hung modem takes the bytes and says nothing, not even the echo; unmuted it answers."""
    modem.mute(True)
    port.write(b"AT\rAT+CSQ\r")
    silence = quiet_for(port, 0.4)
    print(f"muted: {len(silence)} bytes in 0.4 s")
    assert silence == b""
    assert port.out_waiting == 0  # the modem did read them
    modem.mute(False)
    assert talk(port, "AT") == b"AT\r\r\nOK\r\n"
    assert modem.received == ["AT"]


def test_garbage_on_the_line(modem: SimulatedModem, port: serial.Serial) -> None:
    """Injected bytes reach the host as they are; line noise from the host (not starting
    with AT) is echoed but not answered, and the next command is answered normally."""
    junk = b"\x00\xff\xfe+CSQ: 1\x1b[0m\r"
    modem.send_garbage(junk)
    arrived = quiet_for(port, 0.2)
    port.write(b"\x7fhello\r")
    noise = quiet_for(port, 0.2)
    print(f"garbage: {len(junk)} bytes injected, {len(arrived)} arrived; noise answered with {noise!r}")
    assert arrived == junk
    assert noise == b"\x7fhello\r"  # the echo, and nothing else
    assert talk(port, "AT") == b"AT\r\r\nOK\r\n"
    assert modem.received == ["AT"]


def test_urc_inside_the_next_reply(modem: SimulatedModem, port: serial.Serial) -> None:
    """A URC lands between the information lines and OK, and again right after OK, in the
    same burst: the case an AT channel must sort out."""
    talk(port, "ATE0")
    modem.urc_inside_next_reply('+CEREG: 1,"2B01","1A2B301",7')
    port.write(b"AT+CSQ\r")
    data = quiet_for(port, 0.3)  # the whole burst: reply and the URC after it
    print(repr(data))
    assert data == (b"\r\n+CSQ: 21,99\r\n"
                    b'\r\n+CEREG: 1,"2B01","1A2B301",7\r\n'
                    b"\r\nOK\r\n"
                    b'\r\n+CEREG: 1,"2B01","1A2B301",7\r\n')
    modem.urc_inside_next_reply('+QIND: "csq",20,99')
    port.write(b"AT\r")
    data = quiet_for(port, 0.3)  # the whole burst: reply and the URC after it
    assert data == b'\r\n+QIND: "csq",20,99\r\n\r\nOK\r\n\r\n+QIND: "csq",20,99\r\n'
    assert talk(port, "AT") == b"\r\nOK\r\n"  # only the next reply


def test_vanish_and_reappear_at_the_same_path(modem: SimulatedModem) -> None:
    """USB re-enumeration: the open port fails, the path is gone, then it is back at the
    same path (a new pseudo-terminal) and answers again."""
    path = modem.port
    first = serial.Serial(path, 115200, timeout=0.05)
    assert talk(first, "AT") == b"AT\r\r\nOK\r\n"
    modem.vanish()
    assert not os.path.exists(path)
    # A SerialException, or the bare OSError (EIO) pyserial's in_waiting gives when the write
    # still went into the dying pseudo-terminal: the agent's channels take both as a gone port.
    with pytest.raises(OSError):
        first.write(b"AT\r")
        quiet_for(first, 0.2)
    first.close()
    with pytest.raises(serial.SerialException):
        serial.Serial(path, 115200)
    modem.reappear()
    assert os.path.realpath(path) == modem.pty_name
    with serial.Serial(path, 115200, timeout=0.05) as again:
        assert talk(again, "AT") == b"AT\r\r\nOK\r\n"


def test_reset_command_takes_the_port_away_then_boots(modem: SimulatedModem) -> None:
    """AT+CFUN=1,1 answers OK, the port disappears for a while, and comes back printing
    RDY (Quectel); settings changed before the reset are back at their defaults."""
    with serial.Serial(modem.port, 115200, timeout=0.05) as p:
        talk(p, "ATE0")
        assert talk(p, "AT+CFUN=1,1") == b"\r\nOK\r\n"
    gone_after = wait_for(lambda: not os.path.exists(modem.port), 2.0)
    away = wait_for(lambda: os.path.exists(modem.port), 2.0)
    print(f"port gone {gone_after:.2f}s after OK, away for {away:.2f}s")
    assert away >= 0.2
    with serial.Serial(modem.port, 115200, timeout=0.05) as p:
        boot = b""
        deadline = time.monotonic() + 2.0
        while b"+QIND: SMS DONE\r\n" not in boot and time.monotonic() < deadline:
            boot += p.read(64)
        print(repr(boot))
        assert boot.startswith(b"\r\nRDY\r\n")
        assert talk(p, "AT") == b"AT\r\r\nOK\r\n"  # echo is on again
    assert modem.resets == 1


def test_for_profile_uses_the_model_files(tmp_path) -> None:
    """A simulated EC25 from firmware_configs/: its transcript and its reset command."""
    from agent.unit.devices.modem.profiles import load_profile

    profile = load_profile("quectel-ec25")
    with SimulatedModem.for_profile("quectel-ec25", lambda: SERVED, workdir=tmp_path, time_scale=0.1,
                                    reset_s=0.2, boot_delay=0.05) as m:
        with serial.Serial(m.port, 115200, timeout=0.05) as p:
            for command in profile.init:
                assert talk(p, command).endswith(b"\r\nOK\r\n"), command
            assert b"EC25" in talk(p, "AT+CGMM")
            assert talk(p, "AT+CSQ") == b"\r\n+CSQ: 21,99\r\n\r\nOK\r\n"
            for command in profile.reset_commands:
                assert talk(p, command) == b"\r\nOK\r\n"
        wait_for(lambda: m.resets == 1, 2.0)


# -- the answer formatters --------------------------------------------------------------------

# Shapes from: 3GPP TS 27.007; Quectel EC25 / RM500Q AT manuals and captured logs
# ('+QENG: "servingcell","NOCONN","LTE","FDD",214,01,7676A09,188,6300,20,3,3,603,-104,-9,-78,11,23',
#  '+QNWINFO: "FDD LTE","28601","LTE BAND 3",1795', '+QCSQ: "LTE",-69,-102,150,-12',
#  '+QSPN: "I TIM","TIM","",0,"22201"'); SIMCom SIM7600 manual example
# ('+CPSI: LTE,Online,404-45,0x21F9,322642,453,EUTRAN-BAND40,39275,4,4,-168,-1126,-773,7');
# Huawei ME909s manual and ModemManager's test tables ('^SYSINFOEX:2,4,5,1,,3,"WCDMA",41,"HSPA+"',
# '^HCSQ: "LTE",30,29,91,22'); Telit's LE910 guides and a captured LE910 line
# ('#RFSTS:"286 01",6400,-100,-66,-18,2242,FF,0,128,10,1,859315,"286016339811626","TR TURKCELL",3,20,720,3240,-5').
SERVED_ANSWERS = [
    ("generic", "AT+CSQ", "+CSQ: 21,99"),
    ("generic", "AT+CESQ", "+CESQ: 99,99,255,255,19,43"),
    ("generic", "AT+COPS?", '+COPS: 0,0,"TELKOMSEL",7'),
    ("generic", "AT+CEREG?", "+CEREG: 0,1"),
    ("generic", "AT+C5GREG?", "+C5GREG: 0,0"),  # on LTE, not registered on 5G
    ("quectel", 'AT+QENG="servingcell"',
     '+QENG: "servingcell","NOCONN","LTE","FDD",510,10,1A2B301,101,1850,3,5,5,2B01,-98,-11,-70,17,12,-,40'),
    ("quectel", "AT+QNWINFO", '+QNWINFO: "FDD LTE","51010","LTE BAND 3",1850'),
    ("quectel", "AT+QCSQ", '+QCSQ: "LTE",-70,-98,185,-11'),  # sinr (17+20)*5
    ("quectel", "AT+QSPN", '+QSPN: "TELKOMSEL","TELKOMSEL","",0,"51010"'),
    ("simcom", "AT+CPSI?", "+CPSI: LTE,Online,510-10,0x2B01,27439873,101,EUTRAN-BAND3,1850,5,5,-105,-980,-700,17"),
    ("huawei", "AT^HCSQ?", '^HCSQ: "LTE",51,43,186,19'),
    ("huawei", "AT^SYSINFOEX", '^SYSINFOEX: 2,3,0,1,,6,"LTE",101,"LTE"'),
    ("telit", "AT#RFSTS",
     '#RFSTS: "510 10",1850,-98,-70,-11,2B01,FF,0,1280,10,1,1A2B301,"510102345678907","TELKOMSEL",3,3,720,3240,17'),
]

BLANK_ANSWERS = [
    ("generic", "AT+CSQ", "+CSQ: 99,99"),
    ("generic", "AT+CESQ", "+CESQ: 99,99,255,255,255,255"),
    ("generic", "AT+COPS?", "+COPS: 0"),
    ("generic", "AT+CREG?", "+CREG: 0,2"),
    ("generic", "AT+COPS=?", "+COPS: ,,(0,1,2,3,4),(0,1,2)"),
    ("quectel", 'AT+QENG="servingcell"', '+QENG: "servingcell","SEARCH"'),
    ("quectel", "AT+QNWINFO", "+QNWINFO: No Service"),
    ("quectel", "AT+QCSQ", '+QCSQ: "NOSERVICE"'),
    ("simcom", "AT+CPSI?", "+CPSI: NO SERVICE,Online"),
    ("huawei", "AT^HCSQ?", '^HCSQ: "NOSERVICE"'),
    ("huawei", "AT^SYSINFOEX", '^SYSINFOEX: 0,0,0,1,,0,"NO SERVICE",0,"NO SERVICE"'),
    ("telit", "AT#RFSTS", '#RFSTS: ,-1,-47,-47,,,,,,,,,"510102345678907","",0,,,,'),  # channel -1, <SD> 0
]


@pytest.mark.parametrize("driver,command,line", SERVED_ANSWERS)
def test_answers_when_served(driver: str, command: str, line: str) -> None:
    assert answers.dynamic_answer(driver, command, SERVED) == [line, "OK"]


@pytest.mark.parametrize("driver,command,line", BLANK_ANSWERS)
def test_answers_in_a_blank_spot(driver: str, command: str, line: str) -> None:
    assert answers.dynamic_answer(driver, command, BLANK) == [line, "OK"]


def test_rfsts_reads_back_as_the_cell_and_levels_it_was_made_from() -> None:
    """parse_rfsts reads what the simulated Telit prints as the serving cell and the levels measured."""
    radio = Radio(SAMARINDA, rsrp_dbm=-98.0, rsrq_db=-11.0, sinr_db=17.0, rssi_dbm=-70.0)
    facts = parse_rfsts("\n".join(answers.dynamic_answer("telit", "AT#RFSTS", radio)))
    assert facts == SignalFacts(
        operator="TELKOMSEL", mcc="510", mnc="10", rat="LTE", band=SAMARINDA.band, earfcn=SAMARINDA.earfcn,
        cell_id=SAMARINDA.cell_id, tac=SAMARINDA.tac, rsrp_dbm=-98.0, rssi_dbm=-70.0, rsrq_db=-11.0)


@pytest.mark.parametrize("radio", [BLANK, Radio(Tower("g", 0, 0, 1, rat="GSM"), rssi_dbm=-80.0)], ids=["blank", "gsm"])
def test_rfsts_without_an_lte_cell_reads_back_as_no_service(radio: Radio) -> None:
    """Only LTE cells are modelled: a blank spot, and a tower of another RAT, read as no service."""
    facts = parse_rfsts("\n".join(answers.dynamic_answer("telit", "AT#RFSTS", radio)))
    assert facts == SignalFacts(rat="NONE", no_service=True)


def test_sierra_screens_read_back_as_the_cell_and_levels_they_were_made_from() -> None:
    """The simulated EM7455 prints !GSTATUS? and !LTEINFO? in the captured layouts (tabs, blanks
    after values, fixed-width columns), and parse_gstatus/parse_lteinfo read them back."""
    radio = Radio(SAMARINDA, rsrp_dbm=-98.0, rsrq_db=-10.5, sinr_db=17.0, rssi_dbm=-70.0)
    screen = answers.dynamic_answer("sierra", "AT!GSTATUS?", radio)
    table = answers.dynamic_answer("sierra", "AT!LTEINFO?", radio)
    assert screen is not None and table is not None and screen[-1] == table[-1] == "OK"
    assert screen[:3] == ["!GSTATUS: ", "Current Time:  22016\t\tTemperature: 40",
                          "Reset Counter: 1\t\tMode:        ONLINE         "]
    assert "LTE band:      B3     \t\tLTE bw:      20 MHz  " in screen
    assert table[2] == "             1850 510  10 11009 01A2B301  3 5 5  17 101 -10.5  -98.0  -70.0 --"
    cell = dict(band=SAMARINDA.band, earfcn=SAMARINDA.earfcn, cell_id=SAMARINDA.cell_id, tac=SAMARINDA.tac,
                rsrp_dbm=-98.0, rsrq_db=-10.5, sinr_db=17.0, rssi_dbm=-70.0)
    assert parse_gstatus("\n".join(screen[:-1])) == SignalFacts(rat="LTE", **cell)
    assert parse_lteinfo("\n".join(table[:-1])) == SignalFacts(rat="LTE", mcc="510", mnc="10", pci=SAMARINDA.pci, **cell)


@pytest.mark.parametrize("radio", [BLANK, Radio(Tower("g", 0, 0, 1, rat="GSM"), rssi_dbm=-80.0)], ids=["blank", "gsm"])
def test_sierra_screens_without_an_lte_cell_claim_nothing(radio: Radio) -> None:
    """No capture shows these screens without a cell: the simulated ones name no cell and no
    technology, so the reading is made from +CEREG/+CREG, as on a real unit that prints a screen
    the parser does not know."""
    for command, parser in (("AT!GSTATUS?", parse_gstatus), ("AT!LTEINFO?", parse_lteinfo)):
        lines = answers.dynamic_answer("sierra", command, radio)
        assert lines is not None and parser("\n".join(lines[:-1])) == SignalFacts()


def test_nsa_and_sa_forms() -> None:
    """RM500Q: NSA prints three +QENG lines; SA registers on +C5GREG only (AcT 11)."""
    nsa = Radio(Tower("n", 0, 0, 1, rat="NR5G-NSA", pci=7, cell_id=0xABC, tac=0x10), -90.0, -11.0, 12.0, -60.0)
    qeng = answers.dynamic_answer("quectel", 'AT+QENG="servingcell"', nsa)
    assert qeng is not None and [q.split(",")[0] for q in qeng] == [
        '+QENG: "servingcell"', '+QENG: "LTE"', '+QENG: "NR5G-NSA"', "OK"]
    sa = Radio(Tower("s", 0, 0, 1, rat="NR5G-SA", cell_id=0x123456789, tac=0x10), -90.0, -11.0, 12.0, -60.0)
    modes = answers.AnswerModes(c5greg=2, cereg=2)
    assert answers.dynamic_answer("quectel", "AT+C5GREG?", sa, modes) == ['+C5GREG: 2,1,"000010","123456789",11', "OK"]
    assert answers.dynamic_answer("quectel", "AT+CEREG?", sa, modes) == ["+CEREG: 2,0", "OK"]


def test_vendor_commands_are_listed_for_exactly_the_drivers_a_profile_may_name() -> None:
    assert set(answers._VENDOR) == set(DRIVERS)


def test_only_dynamic_commands_have_dynamic_answers() -> None:
    assert answers.dynamic_answer("quectel", "ATI", SERVED) is None
    assert answers.dynamic_answer("generic", 'AT+QENG="servingcell"', SERVED) is None  # vendor command
    assert answers.dynamic_answer("huawei", "AT+CPSI?", SERVED) is None
    assert answers.dynamic_answer("quectel", "AT#RFSTS", SERVED) is None
    assert answers.dynamic_answer("simcom", "at+cpsi?", SERVED) is not None  # case-insensitive


def _decodes_to_lower_edge(decode, index: int, value: float, step: float) -> bool:
    edge = decode(index)
    return edge is not None and edge <= value + 1e-9 and value < edge + step + 1e-9


@given(st.floats(-200, 0, allow_nan=False))
def test_indices_invert_the_level_tables(value: float) -> None:
    """Each index the modem prints decodes (agent.unit.devices.modem.levels) to the lower edge of
    the range holding the level, and levels beyond the table clamp to its ends."""
    cases = [
        (answers.csq_index, levels.csq_rssi_dbm, -113.0, -51.0, 2.0),
        (answers.cesq_rxlev_index, levels.cesq_rxlev_dbm, -111.0, -48.0, 1.0),
        (answers.cesq_rscp_index, levels.cesq_rscp_dbm, -121.0, -25.0, 1.0),
        (answers.cesq_ecno_index, levels.cesq_ecno_db, -24.5, 0.0, 0.5),  # 49 is 0 dB or more
        (answers.cesq_rsrq_index, levels.cesq_rsrq_db, -20.0, -3.0, 0.5),
        (answers.cesq_rsrp_index, levels.cesq_rsrp_dbm, -141.0, -44.0, 1.0),
    ]
    for encode, decode, low, high, step in cases:
        index = encode(value)
        if low + step <= value < high:
            assert _decodes_to_lower_edge(decode, index, value, step), (encode.__name__, value, index)
        elif value >= high:
            assert decode(index) == high
        elif value < low:
            assert decode(index) == low


def test_indices_of_unknown_levels_are_the_not_known_codes() -> None:
    assert answers.csq_index(None) == 99 and answers.cesq_rxlev_index(None) == 99
    assert answers.cesq_rsrp_index(None) == 255 and answers.hcsq_sinr_index(None) == 255


@pytest.mark.parametrize("sinr,index", [(-25.0, 0), (-20.0, 1), (-19.8, 2), (17.0, 186), (29.9, 250), (30.0, 251)])
def test_hcsq_sinr_index_follows_the_huawei_table(sinr: float, index: int) -> None:
    """ME909s: 0 is below -20 dB, 1 is [-20, -19.8), ..., 251 is 30 dB or more."""
    assert answers.hcsq_sinr_index(sinr) == index
    assert math.isclose(-20.2 + 0.2 * max(index, 1), sinr, abs_tol=0.2) or index in (0, 251)
