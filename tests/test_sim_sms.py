"""Short messages on the simulated modem, and the network that joins two of them.

The host side is plain pyserial on the pseudo-terminal, byte for byte, as a modem client
talks: a command and CR, the ``> `` prompt, the message and Ctrl-Z.  What the simulator
prints is read by the unit's parsers (agent.unit.devices.modem.parse_sms) and decoded with
agent.shared.sms_pdu, and its lines have the layout of the real captures in
tests/data/sms/answers.jsonl that the simulator's comments name.
"""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import serial

from agent.shared.sms_pdu import SmsPduError, decode_deliver, encode_submit
from agent.sim.modem import SimulatedModem
from agent.sim.sms_network import SmsNetwork
from agent.unit.devices.modem.parse_sms import (
    StorageUse,
    cms_error_kind,
    parse_cmgl_pdu,
    parse_cmgl_text,
    parse_cmgr_pdu,
    parse_cmgs,
    parse_cms_error,
    parse_cmti,
    parse_cpms,
    parse_csca,
)
from agent.unit.devices.modem.transcript import parse_transcript
from tests.support.raw_modem import quiet_for, read_until

TRANSCRIPT = parse_transcript("> AT+CGMI\nQuectel\n\nOK\n")
UNIT = "+6281234500001"
CENTRE = "+6281234500002"
ANSWERS = [json.loads(line) for line in (Path(__file__).parent / "data" / "sms" / "answers.jsonl").open()]
_FINAL = re.compile(rb"\r\n(OK|ERROR|\+CMS ERROR: [^\r\n]*)\r\n$")
# The network's clock, fixed so time stamps can be checked: Samarinda, UTC+8.
NOON = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=8)))


# -- talking to a modem, as a client does --------------------------------------------------------

def talk(port: serial.Serial, command: str) -> bytes:
    """Send ``command``; the bytes up to its final result."""
    port.write(command.encode("ascii") + b"\r")
    return read_until(port, lambda data: _FINAL.search(data) is not None)


def lines_of(answer: bytes) -> list[str]:
    """The information lines of an answer (echo off), without the final result."""
    text = answer.decode("latin-1")
    return [line for line in text.split("\r\n") if line][:-1]


def send(port: serial.Serial, command: str, body: bytes, end: bytes = b"\x1a") -> bytes:
    """AT+CMGS: the command, wait for the prompt, the body and Ctrl-Z; the answer after it."""
    port.write(command.encode("ascii") + b"\r")
    prompt = read_until(port, lambda data: data.endswith(b"> ") or _FINAL.search(data) is not None)
    assert prompt == b"\r\n> ", prompt
    port.write(body + end)
    return read_until(port, lambda data: _FINAL.search(data) is not None, within=3.0)


def send_pdu(port: serial.Serial, number: str, text: str) -> bytes:
    pdu, length = encode_submit(number, text)
    return send(port, f"AT+CMGS={length}", pdu.encode("ascii"))


def shape(line: str) -> str:
    """A line with its values blanked: quoted strings, then numbers and hex."""
    return re.sub(r"[0-9A-F]+", "9", re.sub(r'"[^"]*"', "Q", line.strip()))


def captured(command_prefix: str, source: str) -> str:
    """The first line of the real answer to a command from a source (answers.jsonl)."""
    for row in ANSWERS:
        if row["command"].startswith(command_prefix) and source in (row["source_url"] or row["source_path"] or ""):
            return row["answer"].split("\n")[0]
    raise LookupError(f"no {command_prefix} row from {source}")


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture
def network():
    with SmsNetwork(delay_s=0.02, retry_s=0.1, clock=lambda: NOON) as net:
        yield net


def _modem(tmp_path: Path, name: str, number: str, network: SmsNetwork, **options) -> SimulatedModem:
    return SimulatedModem(TRANSCRIPT, "quectel", workdir=tmp_path / name, time_scale=0.1, number=number,
                          sms_network=network, **options)


def _open(modem: SimulatedModem) -> serial.Serial:
    port = serial.Serial(modem.port, 115200, timeout=0.05)
    assert talk(port, "ATE0").endswith(b"\r\nOK\r\n")
    return port


@pytest.fixture
def unit(tmp_path, network):
    with _modem(tmp_path, "unit", UNIT, network) as modem:
        yield modem


@pytest.fixture
def centre(tmp_path, network):
    with _modem(tmp_path, "centre", CENTRE, network) as modem:
        yield modem


@pytest.fixture
def unit_port(unit):
    with _open(unit) as port:
        yield port


@pytest.fixture
def centre_port(centre):
    with _open(centre) as port:
        yield port


def arrived(port: serial.Serial) -> tuple[str, int]:
    """The +CMTI of the next message stored."""
    urc = read_until(port, lambda data: data.endswith(b"\r\n") and b"+CMTI:" in data, within=3.0)
    return parse_cmti(urc.decode("ascii").strip())


# -- settings and storage, each as a real modem prints it ----------------------------------------

@pytest.mark.parametrize("command, expected, capture", [
    ("AT+CMGF?", "+CMGF: 0", None),  # TS 27.005 3.2.3: PDU mode by default
    ("AT+CSCA?", '+CSCA: "+6281100000",145', ("AT+CSCA?", "gammu/gammu/issues/242")),
    ("AT+CPMS?", '+CPMS: "SM",0,30,"SM",0,30,"SM",0,30', ("AT+CPMS?", "obsy/sms_tool/issues/3")),
    ('AT+CPMS="SM","SM","SM"', "+CPMS: 0,30,0,30,0,30", ('AT+CPMS="SM"', "pkot/gnokii/issues/1")),
    ("AT+CNMI?", "+CNMI: 2,1,0,0,0", None),
])
def test_settings_answer_in_the_layout_of_real_captures(centre_port, command, expected, capture) -> None:
    answer = lines_of(talk(centre_port, command))
    assert answer == [expected]
    if capture is not None:
        assert shape(answer[0]) == shape(captured(*capture))


def test_the_unit_parsers_read_the_settings(centre, centre_port) -> None:
    assert parse_csca(lines_of(talk(centre_port, "AT+CSCA?"))[0]) == "+6281100000"
    assert parse_cpms(lines_of(talk(centre_port, "AT+CPMS?"))[0]) == [StorageUse("SM", 0, 30)] * 3
    assert parse_cpms(lines_of(talk(centre_port, 'AT+CPMS="SM","SM","SM"'))[0]) == [StorageUse(None, 0, 30)] * 3
    centre.smsc = None  # a SIM without a service centre number
    assert parse_csca(lines_of(talk(centre_port, "AT+CSCA?"))[0]) is None
    assert talk(centre_port, 'AT+CSCA="+62816124",145').endswith(b"\r\nOK\r\n")
    assert parse_csca(lines_of(talk(centre_port, "AT+CSCA?"))[0]) == "+62816124"


def test_cmgf_switches_between_pdu_and_text_mode(centre_port) -> None:
    assert lines_of(talk(centre_port, "AT+CMGF=1")) == []
    assert lines_of(talk(centre_port, "AT+CMGF?")) == ["+CMGF: 1"]
    assert lines_of(talk(centre_port, "AT+CMGF=0")) == []
    assert lines_of(talk(centre_port, "AT+CMGF?")) == ["+CMGF: 0"]
    assert talk(centre_port, "AT+CMGF=2").endswith(b"\r\nERROR\r\n")


# -- a message from one modem to the other -------------------------------------------------------

def test_a_pdu_sent_by_one_modem_arrives_at_the_other(unit, unit_port, centre_port, network) -> None:
    """The unit sends in PDU mode; the centre's modem announces it and lists it; the PDU
    decodes to the same text, from the unit's number, stamped with the network's time."""
    assert talk(unit_port, "AT+CMGF=0").endswith(b"OK\r\n")
    answer = lines_of(send_pdu(unit_port, CENTRE, "BS1 boat/7 SZ t=3AY940 b=3BS s=L62U u=5K0H w=quota SACZXA4ECQGI"))
    assert len(answer) == 1 and shape(answer[0]) == shape(captured("AT+CMGS=24", "ozekisms"))
    reference = parse_cmgs(answer[0])
    assert unit.sms_sent[-1].reference == reference

    storage, index = arrived(centre_port)
    assert (storage, index) == ("SM", 1)

    listed = lines_of(talk(centre_port, "AT+CMGL=4"))
    assert shape(listed[0]) == shape(captured("AT+CMGL=4", "gammu/gammu/issues/126"))
    [stored] = parse_cmgl_pdu(listed)
    assert (stored.index, stored.stat) == (1, 0)
    message = decode_deliver(stored.pdu)
    assert message.text == "BS1 boat/7 SZ t=3AY940 b=3BS s=L62U u=5K0H w=quota SACZXA4ECQGI"
    assert message.sender == UNIT and message.coding == "gsm7"
    assert message.sent_at == NOON and message.service_centre == "+6281100000"
    assert stored.length == len(bytes.fromhex(stored.pdu)) - 1 - bytes.fromhex(stored.pdu)[0]
    assert network.stats.delivered == 1


def test_the_prompt_comes_even_when_the_host_types_ahead(unit_port, centre_port) -> None:
    """A client that does not wait for '> ' still gets its message sent."""
    pdu, length = encode_submit(CENTRE, "typed ahead")
    unit_port.write(f"AT+CMGS={length}\r".encode() + pdu.encode() + b"\x1a")
    answer = read_until(unit_port, lambda data: _FINAL.search(data) is not None)
    assert answer.startswith(b"\r\n> ") and b"+CMGS: " in answer
    arrived(centre_port)
    assert decode_deliver(parse_cmgl_pdu(lines_of(talk(centre_port, "AT+CMGL=4")))[0].pdu).text == "typed ahead"


def test_text_mode_send_and_list(unit_port, centre_port) -> None:
    assert talk(unit_port, "AT+CMGF=1").endswith(b"OK\r\n")
    answer = lines_of(send(unit_port, f'AT+CMGS="{CENTRE}"', b"halo pusat"))
    assert parse_cmgs(answer[0]) >= 0
    arrived(centre_port)
    talk(centre_port, "AT+CMGF=1")
    listed = lines_of(talk(centre_port, 'AT+CMGL="ALL"'))
    assert shape(listed[0]) == shape(captured('AT+CMGL="ALL"', "MarcoMartines"))
    [message] = parse_cmgl_text(listed)
    assert (message.index, message.status, message.sender, message.text) == (1, "REC UNREAD", UNIT, "halo pusat")
    assert message.sent_at == "26/05/01,12:00:00+32"
    assert parse_cmgl_text(lines_of(talk(centre_port, 'AT+CMGL="ALL"')))[0].status == "REC READ"


def test_text_mode_takes_a_message_of_several_lines(unit_port, centre_port) -> None:
    talk(unit_port, "AT+CMGF=1")
    unit_port.write(f'AT+CMGS="{CENTRE}"\r'.encode())
    assert read_until(unit_port, lambda data: data.endswith(b"> ")) == b"\r\n> "
    unit_port.write(b"line one\r")
    assert read_until(unit_port, lambda data: data.endswith(b"> ")) == b"\r\n> "  # the prompt again
    unit_port.write(b"line two\x1a")
    assert b"+CMGS: " in read_until(unit_port, lambda data: _FINAL.search(data) is not None)
    arrived(centre_port)
    assert decode_deliver(parse_cmgl_pdu(lines_of(talk(centre_port, "AT+CMGL=4")))[0].pdu).text == "line one\nline two"


def test_a_ucs2_message(unit_port, centre_port) -> None:
    """Text mode with AT+CSCS="UCS2": the number and the text typed as UCS2 hex; the network
    delivers it in UCS2 because the GSM alphabet lacks its characters."""
    text = "Sinyal lemah ☹ 信号"
    talk(unit_port, "AT+CMGF=1")
    talk(unit_port, 'AT+CSCS="UCS2"')
    number = CENTRE.encode("utf-16-be").hex().upper()
    answer = lines_of(send(unit_port, f'AT+CMGS="{number}"', text.encode("utf-16-be").hex().upper().encode()))
    parse_cmgs(answer[0])
    arrived(centre_port)
    [stored] = parse_cmgl_pdu(lines_of(talk(centre_port, "AT+CMGL=4")))
    message = decode_deliver(stored.pdu)
    assert (message.text, message.coding, message.sender) == (text, "ucs2", UNIT)
    talk(centre_port, "AT+CMGF=1")
    talk(centre_port, 'AT+CSCS="UCS2"')
    [listed] = parse_cmgl_text(lines_of(talk(centre_port, 'AT+CMGL="ALL"')), charset="UCS2")
    assert (listed.text, listed.sender) == (text, UNIT)


def test_an_operator_message_from_an_alphanumeric_sender(centre, centre_port, network) -> None:
    text = "Kuota internet Anda telah habis. Beli paket di *363# sekarang."
    network.send_from_operator("TELKOMSEL", text, to=CENTRE)
    assert arrived(centre_port) == ("SM", 1)
    [stored] = parse_cmgl_pdu(lines_of(talk(centre_port, "AT+CMGL=4")))
    message = decode_deliver(stored.pdu)
    assert (message.sender, message.text) == ("TELKOMSEL", text)
    talk(centre_port, "AT+CMGF=1")
    assert parse_cmgl_text(lines_of(talk(centre_port, 'AT+CMGL="ALL"')))[0].sender == "TELKOMSEL"
    assert centre.sms_messages[0].sender == "TELKOMSEL"


# -- reading, marking read, deleting --------------------------------------------------------------

def _deliver(network: SmsNetwork, port: serial.Serial, *texts: str) -> None:
    for text in texts:
        network.send_from_operator("TELKOMSEL", text, to=CENTRE)
        arrived(port)


def test_cmgr_reads_a_message_and_marks_it_read(centre_port, network) -> None:
    _deliver(network, centre_port, "first")
    first = lines_of(talk(centre_port, "AT+CMGR=1"))
    assert shape(first[0]) == shape(captured("AT+CMGR=1", "tests/at-sms/01.dump"))
    read = parse_cmgr_pdu(first, 1)
    assert read is not None and read.stat == 0 and decode_deliver(read.pdu).text == "first"
    again = parse_cmgr_pdu(lines_of(talk(centre_port, "AT+CMGR=1")), 1)
    assert again is not None and again.stat == 1
    assert parse_cmgl_pdu(lines_of(talk(centre_port, "AT+CMGL=0"))) == []  # none unread is left
    assert len(parse_cmgl_pdu(lines_of(talk(centre_port, "AT+CMGL=1")))) == 1
    assert parse_cmgr_pdu(lines_of(talk(centre_port, "AT+CMGR=2")), 2) is None  # nothing stored there
    code, _ = parse_cms_error(talk(centre_port, "AT+CMGR=31").decode().strip())
    assert code == 321  # past the storage's end


def test_cmgd_deletes_one_message_or_all(centre_port, network) -> None:
    _deliver(network, centre_port, "one", "two", "three")
    assert parse_cpms(lines_of(talk(centre_port, "AT+CPMS?"))[0])[0].used == 3
    assert talk(centre_port, "AT+CMGD=2").endswith(b"\r\nOK\r\n")
    assert parse_cmgr_pdu(lines_of(talk(centre_port, "AT+CMGR=2")), 2) is None
    assert [m.index for m in parse_cmgl_pdu(lines_of(talk(centre_port, "AT+CMGL=4")))] == [1, 3]
    _deliver(network, centre_port, "four")  # the freed place is used again
    assert [m.index for m in parse_cmgl_pdu(lines_of(talk(centre_port, "AT+CMGL=4")))] == [1, 2, 3]
    assert talk(centre_port, "AT+CMGD=1,4").endswith(b"\r\nOK\r\n")
    assert parse_cmgl_pdu(lines_of(talk(centre_port, "AT+CMGL=4"))) == []


def test_cnmi_decides_whether_arrivals_are_announced(centre, centre_port, network) -> None:
    assert talk(centre_port, "AT+CNMI=2,0,0,0,0").endswith(b"\r\nOK\r\n")
    network.send_from_operator("TELKOMSEL", "quiet", to=CENTRE)
    assert network.wait_idle()
    assert b"+CMTI" not in quiet_for(centre_port, 0.2)
    assert [m.text for m in centre.sms_messages] == ["quiet"]  # stored all the same
    talk(centre_port, "AT+CNMI=2,1,0,0,0")
    network.send_from_operator("TELKOMSEL", "loud", to=CENTRE)
    assert arrived(centre_port) == ("SM", 2)


def test_a_full_storage_keeps_the_message_in_the_network_until_there_is_room(tmp_path, network) -> None:
    with _modem(tmp_path, "small", CENTRE, network, sms_capacity=2) as centre, _open(centre) as port:
        _deliver(network, port, "one", "two")
        network.send_from_operator("TELKOMSEL", "three", to=CENTRE)
        time.sleep(0.3)  # several delivery attempts
        assert [m.text for m in centre.sms_messages] == ["one", "two"]
        assert network.stats.storage_full >= 2 and network.in_flight == 1
        assert parse_cpms(lines_of(talk(port, "AT+CPMS?"))[0])[0] == StorageUse("SM", 2, 2)
        talk(port, "AT+CMGD=1")
        assert arrived(port) == ("SM", 1)
        assert [m.text for m in centre.sms_messages] == ["three", "two"]
        assert network.wait_idle()


# -- faults ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault, code, kind", [
    ("no_credit", 21, "no_credit_or_barred"),
    ("no_network", 331, "network"),
    ("smsc_unknown", 330, "smsc"),
])
def test_a_fault_answers_the_send_with_its_cms_error(unit, unit_port, network, fault, code, kind) -> None:
    unit.fail_sms(fault)
    answer = send_pdu(unit_port, CENTRE, "heartbeat")
    assert answer == f"\r\n+CMS ERROR: {code}\r\n".encode()  # the final result, no information line
    assert parse_cms_error(answer.decode())[0] == code and cms_error_kind(code) == kind
    assert network.stats.submitted == 0 and unit.sms_sent == []
    unit.fail_sms(None)
    assert b"+CMGS: " in send_pdu(unit_port, CENTRE, "heartbeat")


def test_no_credit_may_be_another_code_and_verbose(unit, unit_port) -> None:
    unit.fail_sms("no_credit", code=50)
    talk(unit_port, "AT+CMEE=2")
    answer = send_pdu(unit_port, CENTRE, "heartbeat").decode().strip()
    assert answer.endswith("+CMS ERROR: requested facility not subscribed")
    assert cms_error_kind(50) == "no_credit_or_barred"


def test_a_sim_without_service_centre_cannot_send_a_pdu_that_names_none(unit, unit_port) -> None:
    unit.smsc = None
    answer = send_pdu(unit_port, CENTRE, "heartbeat").decode().strip()
    assert parse_cms_error(answer)[0] == 330


def test_a_network_down_for_sms_refuses_sends_and_holds_deliveries(unit_port, centre, centre_port, network) -> None:
    network.down = True
    answer = send_pdu(unit_port, CENTRE, "heartbeat").decode().strip()
    code, _ = parse_cms_error(answer)
    assert code == 38 and cms_error_kind(code) == "network"
    network.send_from_operator("TELKOMSEL", "held", to=CENTRE)
    assert b"+CMTI" not in quiet_for(centre_port, 0.2)
    network.down = False
    assert arrived(centre_port) == ("SM", 1)
    assert network.stats.refused_down == 1


def test_a_send_that_is_never_answered(unit, unit_port) -> None:
    unit.fail_sms("no_answer")
    pdu, length = encode_submit(CENTRE, "heartbeat")
    unit_port.write(f"AT+CMGS={length}\r".encode())
    assert read_until(unit_port, lambda data: data.endswith(b"> ")) == b"\r\n> "
    unit_port.write(pdu.encode() + b"\x1a")
    assert quiet_for(unit_port, 0.5) == b""
    assert talk(unit_port, "AT").endswith(b"\r\nOK\r\n")  # the modem takes the next command


def test_a_delayed_answer(unit, unit_port) -> None:
    unit.delay_sms(5.0)  # 0.5 s at the fixture's time scale
    started = time.monotonic()
    assert b"+CMGS: " in send_pdu(unit_port, CENTRE, "heartbeat")
    assert time.monotonic() - started >= 0.45


def test_esc_cancels_the_message(unit, unit_port, network) -> None:
    pdu, _ = encode_submit(CENTRE, "never mind")
    assert send(unit_port, "AT+CMGS=20", pdu.encode(), end=b"\x1b") == b"\r\nOK\r\n"
    assert unit.sms_sent == [] and network.stats.submitted == 0


def test_a_pdu_of_the_wrong_length_is_refused(unit_port) -> None:
    pdu, length = encode_submit(CENTRE, "heartbeat")
    answer = send(unit_port, f"AT+CMGS={length + 1}", pdu.encode()).decode().strip()
    assert parse_cms_error(answer)[0] == 304


def test_without_a_sim_there_is_no_prompt_and_the_line_is_a_command_line_again(tmp_path, network) -> None:
    with _modem(tmp_path, "nosim", UNIT, network, sim="absent") as modem, _open(modem) as port:
        pdu, length = encode_submit(CENTRE, "heartbeat")
        answer = talk(port, f"AT+CMGS={length}").decode().strip()
        assert parse_cms_error(answer)[0] == 310
        assert talk(port, "AT").endswith(b"\r\nOK\r\n")


# -- the network ------------------------------------------------------------------------------------

def test_unknown_numbers_are_counted_and_dropped(unit_port, network) -> None:
    assert b"+CMGS: " in send_pdu(unit_port, "+6281299999999", "anyone?")  # the network took it
    assert network.wait_idle()
    assert network.stats.unknown_number == 1 and network.stats.delivered == 0


def test_loss_and_duplication(tmp_path) -> None:
    with SmsNetwork(delay_s=0.01, loss=1.0) as lossy, _modem(tmp_path, "a", CENTRE, lossy) as modem:
        lossy.send_from_operator("TELKOMSEL", "gone", to=CENTRE)
        assert lossy.wait_idle() and modem.sms_messages == [] and lossy.stats.lost == 1
    with SmsNetwork(delay_s=0.01, duplicate=1.0) as twice, _modem(tmp_path, "b", CENTRE, twice) as modem:
        twice.send_from_operator("TELKOMSEL", "again", to=CENTRE)
        assert twice.wait_idle()
        assert [m.text for m in modem.sms_messages] == ["again", "again"]
        assert twice.stats.duplicated == 1 and twice.stats.delivered == 2


def test_an_operator_message_too_long_for_one_sms_is_refused_at_once(network) -> None:
    with pytest.raises(SmsPduError):
        network.send_from_operator("TELKOMSEL", "x" * 161, to=CENTRE)
    with pytest.raises(SmsPduError):
        network.send_from_operator("A VERY LONG NAME", "hi", to=CENTRE)


def test_the_network_stops_cleanly_with_messages_in_flight(tmp_path) -> None:
    net = SmsNetwork(delay_s=60.0)
    net.send_from_operator("TELKOMSEL", "later", to=CENTRE)
    started = time.monotonic()
    net.close()
    assert time.monotonic() - started < 1.0 and not net._thread.is_alive()
