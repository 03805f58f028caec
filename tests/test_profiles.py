"""Model profiles in firmware_configs/: what ships, how files are checked, how a modem is recognised.

- The eight shipped profiles load, are named after their files, and every command a profile
  sends (init, GNSS, signal, reset, scan) is answered in its transcript.
- A wrong profile file is refused with one line naming the file, the line and the key.
- Detection: by USB id, with AT+CGMM deciding between models that share an id (EC25 and
  EG25-G), by AT+CGMM alone, and generic-3gpp when nothing matches.
- Folders on $BLANKSPOT_FIRMWARE_CONFIGS come first: a local profile is found and a local
  copy of a shipped one replaces it.
- ``find_ports`` tells the AT and NMEA ports apart by USB interface number; ``port_for``
  picks the configured port, else the first found for its role.
- The README documents every key, and its recording recipe (pyserial spy:// plus the
  converter) really turns a modem session into a transcript.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

import pytest
from serial.tools.list_ports_common import ListPortInfo

from agent.unit.devices.modem.errors import ProfileError
from agent.unit.devices.modem.profiles import (
    ENV_VAR,
    LOCAL_DIR,
    all_profiles,
    detect_by_cgmm,
    detect_by_usb,
    find_ports,
    interface_number,
    load_profile,
    load_profile_file,
    port_for,
    profile_keys,
    search_path,
)
from agent.unit.devices.modem.transcript import Transcript, load_transcript, parse_transcript
from tests.support.source_tree import copy_source

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "firmware_configs"
SHIPPED = ["generic-3gpp", "huawei-me909s", "quectel-ec25", "quectel-eg25g", "quectel-rm500q", "sierra-em7455",
           "simcom-sim7600", "telit-le910c1"]
FINALS = ("OK", "ERROR", "COMMAND NOT SUPPORT")
IDENTITY_COMMANDS = ["AT", "ATE0", "ATE1", "AT+CMEE=2", "ATI", "AT+CGMI", "AT+CGMM", "AT+CGMR", "AT+CIMI",
                     "AT+CPIN?", "AT+CGATT?"]
ICCID_COMMANDS = ["AT+QCCID", "AT+CICCID", "AT^ICCID?", "AT+CCID", "AT#CCID", "AT+ICCID"]


@pytest.fixture(autouse=True)
def shipped_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the shipped profiles unless it sets the override folder itself."""
    monkeypatch.delenv(ENV_VAR, raising=False)


def commands_of(profile) -> list[str]:
    return [*profile.init, *profile.gnss_on, *profile.gnss_off, *profile.signal_commands,
            *profile.reset_commands, profile.scan_command]


# -- what ships ------------------------------------------------------------------------------

def test_the_eight_shipped_profiles_load_and_are_named_after_their_files() -> None:
    """Every .toml in firmware_configs/ is valid, its name is its file stem, and these eight ship."""
    profiles = all_profiles()
    assert [p.name for p in profiles] == SHIPPED
    assert sorted(p.stem for p in CONFIGS.glob("*.toml")) == SHIPPED
    for profile in profiles:
        assert profile.path.stem == profile.name
        assert profile.path.parent == CONFIGS
        usb = ", ".join(f"{u.vid}:{u.pid} AT if{u.at_interface} NMEA if{u.nmea_interface}" for u in profile.usb) or "none"
        print(f"{profile.name}: {profile.vendor} {profile.model}, driver {profile.driver}, usb [{usb}], "
              f"{len(profile.signal_commands)} signal commands, {len(profile.transcript.answers)} transcript answers, "
              f"{len(profile.quirks)} quirk notes")
    generic = load_profile("generic-3gpp")
    assert generic.usb == () and generic.cgmm == () and generic.gnss_on == () and generic.driver == "generic"
    assert set(generic.signal_commands) <= {"AT+CESQ", "AT+CSQ", "AT+C5GREG?", "AT+CEREG?", "AT+CGREG?", "AT+CREG?",
                                            "AT+COPS?"}
    assert "AT+C5GREG?" in generic.signal_commands, "a 5G modem in standalone mode is registered there only"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_command_a_profile_sends_is_answered_in_its_transcript(name: str) -> None:
    """Init, GNSS, signal, reset and scan commands, and the identity commands, all have an answer ending in a final result."""
    profile = load_profile(name)
    wanted = IDENTITY_COMMANDS + commands_of(profile)
    missing = [c for c in wanted if profile.transcript.answer(c) is None]
    assert not missing, f"{profile.transcript_path} does not answer {missing}"
    assert any(profile.transcript.answer(c) for c in ICCID_COMMANDS), "no ICCID command answered"
    for command in profile.transcript.answers:
        answer = profile.transcript.answers[command]
        assert answer and (answer[-1] in FINALS or answer[-1].startswith("+CME ERROR")), f"{command}: {answer}"
    for command in profile.signal_commands:
        lines = profile.transcript.answer(command)
        assert lines is not None and lines[-1] == "OK" and any(line.strip() for line in lines[:-1]), command
    print(f"{name}: {len(wanted)} commands answered, signal: {', '.join(profile.signal_commands)}")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.transcript")), ids=lambda p: p.name)
def test_every_transcript_parses_says_where_it_comes_from_and_names_its_own_model(path: Path) -> None:
    """A transcript has a provenance header, and its AT+CGMM answer detects the profile it belongs to."""
    transcript = load_transcript(path)
    header = path.read_text(encoding="utf-8").split("\n> ", 1)[0]
    assert "representative" in header or "synthetic" in header
    assert re.search(r"Manual|Specification|TS 27\.007", header)
    cgmm = "\n".join(transcript.answer("AT+CGMM")[:-1]).strip()
    assert detect_by_cgmm(cgmm).name == path.stem, cgmm


@pytest.mark.parametrize("name", SHIPPED)
def test_scan_answer_is_an_indonesian_scan_with_mixed_rats_and_a_forbidden_network(name: str) -> None:
    """The AT+COPS=? example lists Telkomsel, Indosat, XL, Smartfren and Tri, several RATs and one forbidden entry."""
    text = "\n".join(load_profile(name).transcript.answer("AT+COPS=?"))
    entries = re.findall(r'\((\d),"[^"]*","[^"]*","(\d{5})",(\d+)\)', text)
    assert {plmn for _, plmn, _ in entries} == {"51010", "51001", "51011", "51028", "51089"}
    assert len({rat for _, _, rat in entries}) >= 2
    assert [plmn for status, plmn, _ in entries if status == "3"] == ["51028"]
    assert [plmn for status, plmn, _ in entries if status == "2"] == ["51010"]
    print(f"{name}: {len(entries)} scan entries")


# -- strict checking of profile files --------------------------------------------------------

def write_profile(folder: Path, name: str, edit=None) -> Path:
    """A copy of quectel-ec25 under ``name`` in ``folder``, changed by ``edit(text)``."""
    text = (CONFIGS / "quectel-ec25.toml").read_text(encoding="utf-8")
    text = text.replace('name = "quectel-ec25"', f'name = "{name}"').replace(
        'transcript = "quectel-ec25.transcript"', f'transcript = "{name}.transcript"')
    if edit is not None:
        text = edit(text)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    shutil.copy(CONFIGS / "quectel-ec25.transcript", folder / f"{name}.transcript")
    return path


def sub(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


BAD = [
    # (case, edit, key named in the message, text expected in it, text of the line it points at)
    ("unknown key", sub('timeout = "5s"', 'timout = "5s"'), "at.timout", "did you mean 'timeout'", "timout ="),
    ("unknown top-level key", sub('driver = "quectel"', 'driver = "quectel"\ndrvier = "x"'), "drvier", "did you mean 'driver'", "drvier ="),
    ("unknown usb key", sub("at_interface = 2", "at_interfce = 2"), "usb[0].at_interfce", "did you mean 'at_interface'", "at_interfce ="),
    ("wrong type", sub("probe_tries = 3", 'probe_tries = "3"'), "at.probe_tries", "expected a whole number", "probe_tries ="),
    ("wrong element type", sub('init = ["ATE0",', 'init = ["ATE0", 5,'), "at.init[1]", "expected a string", "init ="),
    ("strings not a list", sub('on = ["AT+QGPS=1"]', 'on = "AT+QGPS=1"'), "gnss.on", "expected a list of strings", "on ="),
    ("bad duration", sub('wait = "30s"', 'wait = "30 seconds"'), "reset.wait", "expected a duration", "wait ="),
    ("bad driver", sub('driver = "quectel"', 'driver = "quectell"'), "driver", "did you mean 'quectel'", "driver ="),
    ("missing name", lambda t: re.sub(r'^name = .*\n', "", t, flags=re.M), "name", "missing", None),
    ("name not the file stem", sub('name = "bad-one"', 'name = "quectel-ec25"'), "name", "must equal the file name", "name ="),
    ("bad vid", sub('vid = "2c7c"', 'vid = "2c7"'), "usb[0].vid", "4 hex digits", "vid ="),
    ("vid not hex", sub('vid = "2c7c"', 'vid = "2g7c"'), "usb[0].vid", "4 hex digits", "vid ="),
    ("vid a number", sub('vid = "2c7c"', "vid = 11388"), "usb[0].vid", "expected a string", "vid ="),
    ("missing at_interface", sub("at_interface = 2\n", ""), "usb[0].at_interface", "missing", "[[usb]]"),
    ("same interface twice", sub("nmea_interface = 1", "nmea_interface = 2"), "usb[0].nmea_interface", "must differ", "nmea_interface ="),
    ("interface out of range", sub("at_interface = 2", "at_interface = 300"), "usb[0].at_interface", "at most 255", "at_interface ="),
    ("usb as a table", sub("[[usb]]", "[usb]"), "usb", "list of tables", "[usb]"),
    ("no signal commands", lambda t: re.sub(r"\[signal\]\ncommands = \[.*?\]\n", "[signal]\n", t, flags=re.S),
     "signal.commands", "missing", "[signal]"),
    ("not an AT command", sub('"AT+CSQ",', '"CSQ",'), "signal.commands[2]", "one AT command", "commands ="),
    ("signal command without a parser", sub('"AT+CSQ",', '"AT+CSQN",'), "signal.commands[2]",
     "no parser for AT+CSQN; see firmware_configs/README.md", "commands ="),
    ("transcript missing", sub('transcript = "bad-one.transcript"', 'transcript = "nowhere.transcript"'), "transcript", "not found", "transcript ="),
    ("empty cgmm pattern", sub('cgmm = ["EC25"]', 'cgmm = [""]'), "cgmm[0]", "must not be empty", "cgmm ="),
]


@pytest.mark.parametrize("case,edit,key,expected,line_text", BAD, ids=[b[0] for b in BAD])
def test_a_wrong_profile_gives_one_line_naming_file_line_and_key(tmp_path: Path, case, edit, key, expected, line_text) -> None:
    """Unknown keys (with a suggestion), wrong types, missing or impossible values: ProfileError, one line."""
    path = write_profile(tmp_path, "bad-one", edit)
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    message = str(info.value)
    print(f"{case}: {message}")
    assert "\n" not in message
    assert message.startswith(str(path))
    assert f": {key}: " in message
    assert expected in message
    m = re.match(rf"{re.escape(str(path))}:(\d+): ", message)
    if line_text is None:
        assert m is None
    else:  # the key's own line, or the header of its table when the key is missing
        assert m, message
        assert path.read_text().splitlines()[int(m.group(1)) - 1].lstrip().startswith(line_text), message


def test_toml_syntax_errors_and_broken_transcripts_name_their_line(tmp_path: Path) -> None:
    """A TOML syntax error and a malformed transcript both point at file and line."""
    path = write_profile(tmp_path, "bad-syntax", sub('vendor = "Quectel"', 'vendor = "Quectel'))
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    print(info.value)
    line = path.read_text().splitlines().index('vendor = "Quectel') + 1
    assert str(info.value).startswith(f"{path}:{line}: not valid TOML")
    path = write_profile(tmp_path, "bad-transcript")
    (tmp_path / "bad-transcript.transcript").write_text("# header\nOK\n> AT\nOK\n", encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    print(info.value)
    assert str(info.value).startswith(f"{tmp_path / 'bad-transcript.transcript'}:2:")


def test_hash_and_a_blank_start_a_comment_but_a_telit_answer_line_is_kept() -> None:
    """'# ' and a lone '#' are comments; '#RFSTS: ...' is what a Telit module answers."""
    transcript = parse_transcript(
        "# header\n#\n> AT#CCID\n#CCID: 89621000000123456795\n\nOK\n# between blocks\n> AT\nOK\n")
    assert transcript.answer("AT#CCID") == ("#CCID: 89621000000123456795", "", "OK")
    assert transcript.answer("AT") == ("OK",)


def test_unknown_model_name_lists_the_known_ones() -> None:
    """--model with a typo says which models exist and suggests the closest."""
    with pytest.raises(ProfileError) as info:
        load_profile("quectel-ec52")
    message = str(info.value)
    print(message)
    assert "did you mean 'quectel-ec25'" in message
    assert all(name in message for name in SHIPPED)
    with pytest.raises(ProfileError):
        load_profile("../etc/passwd")


# -- detection -------------------------------------------------------------------------------

USB_CASES = [
    # (vid, pid, cgmm, expected profile)
    ("2c7c", "0125", "EC25", "quectel-ec25"),
    ("2c7c", "0125", "EG25", "quectel-eg25g"),
    ("2c7c", "0125", "\r\nEG25\r\n", "quectel-eg25g"),
    ("2c7c", "0125", "Quectel\nEG25\nRevision: EG25GGBR07A08M2G", "quectel-eg25g"),
    ("2c7c", "0125", None, "quectel-ec25"),            # no CGMM: the first by name; same ports
    ("2c7c", "0125", "ZZ99", "quectel-ec25"),          # CGMM names neither
    (0x2C7C, 0x0125, "eg25", "quectel-eg25g"),         # ints from pyserial, lower-case text
    ("0x2C7C", "0x0800", None, "quectel-rm500q"),
    ("1e0e", "9001", "SIMCOM_SIM7600E-H", "simcom-sim7600"),
    ("1e0e", "9011", None, "simcom-sim7600"),          # RNDIS composition
    ("12d1", "15c1", None, "huawei-me909s"),
    ("1bc7", "1201", "LE910C1-EU", "telit-le910c1"),
    ("1bc7", "1204", None, "telit-le910c1"),          # MBIM composition
    ("1199", "9071", "EM7455", "sierra-em7455"),
    ("413c", "81b6", None, "sierra-em7455"),          # Dell DW5811e
    ("1199", "9091", "EM7565", "sierra-em7455"),
    ("1234", "5678", "EC25", None),                     # unknown id: no USB match
]


@pytest.mark.parametrize("vid,pid,cgmm,expected", USB_CASES)
def test_detection_by_usb_id_with_cgmm_deciding_shared_ids(vid, pid, cgmm, expected) -> None:
    """2c7c:0125 is both EC25 and EG25-G: the AT+CGMM answer decides."""
    found = detect_by_usb(vid, pid, cgmm)
    assert (found.name if found else None) == expected


CGMM_CASES = [
    ("EC25", "quectel-ec25"),
    ("EG25", "quectel-eg25g"),
    ("RM500Q-GL", "quectel-rm500q"),
    ("SIMCOM_SIM7600E-H", "simcom-sim7600"),
    ("SIMCOM_SIM7600G-H", "simcom-sim7600"),
    ("ME909s-120", "huawei-me909s"),
    ("ME909S-120", "huawei-me909s"),
    ("LE910C1-EU", "telit-le910c1"),
    ("LE910C1-NF", "telit-le910c1"),
    ("EM7455", "sierra-em7455"),
    ("MC7455", "sierra-em7455"),
    ("EM7565", "sierra-em7455"),
    ("EM9191", "generic-3gpp"),                       # a 5G Sierra: not this family's screens
    ("", "generic-3gpp"),
    ("TS27007-MODEM", "generic-3gpp"),
    ("LE910C4-EU", "telit-le910c1"),                  # the LE910Cx guide's #RFSTS
    ("LE910-EU V2", "telit-le910c1"),
    ("LN940A11", "generic-3gpp"),                     # Telit, but AT^RFSTS?, not #RFSTS
    ("\x00\xff garbage", "generic-3gpp"),
]


@pytest.mark.parametrize("text,expected", CGMM_CASES)
def test_detection_by_cgmm_falls_back_to_generic(text, expected) -> None:
    """Without a USB id the CGMM answer alone decides; nothing known means generic-3gpp."""
    assert detect_by_cgmm(text).name == expected


# -- the search path -------------------------------------------------------------------------

def test_search_path_order() -> None:
    """Override folders, then /etc, then the installed data folder, then the source tree."""
    path = search_path()
    assert path[0] == LOCAL_DIR
    assert path[-1] == CONFIGS
    assert Path(sys.prefix) / "share" / "blankspot" / "firmware_configs" in path
    print("search path:", ", ".join(map(str, path)))


def test_override_folder_adds_a_model_and_replaces_a_shipped_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile in $BLANKSPOT_FIRMWARE_CONFIGS is found, detected, and wins over a shipped one of the same name."""
    local = tmp_path / "local"
    local.mkdir()
    write_profile(local, "local-modem", lambda t: t.replace('pid = "0125"', 'pid = "abcd"')
                  .replace('vid = "2c7c"', 'vid = "1234"').replace('cgmm = ["EC25"]', 'cgmm = ["LOCALMODEM"]'))
    write_profile(local, "quectel-ec25", sub('timeout = "5s"', 'timeout = "9s"'))
    monkeypatch.setenv(ENV_VAR, f"{tmp_path / 'missing'}{os.pathsep}{local}")
    assert search_path()[:3] == [tmp_path / "missing", local, LOCAL_DIR]

    names = [p.name for p in all_profiles()]
    print("with override:", names)
    assert names == sorted(SHIPPED + ["local-modem"])
    assert load_profile("local-modem").usb[0].vid == "1234"
    assert detect_by_usb(0x1234, 0xABCD).name == "local-modem"
    assert detect_by_cgmm("LOCALMODEM-X").name == "local-modem"
    ec25 = load_profile("quectel-ec25")
    assert ec25.timeout == 9.0 and ec25.path.parent == local

    # an edit is seen at the next load, not hidden by a cache
    time.sleep(0.01)  # the file system's clock moves on, so the edit (same size) gets another mtime
    write_profile(local, "quectel-ec25", sub('timeout = "5s"', 'timeout = "7s"'))
    assert load_profile("quectel-ec25").timeout == 7.0

    # a broken local file stops everything, by name, rather than being skipped in silence
    write_profile(local, "broken", sub("probe_tries = 3", "probe_tries = 0"))
    with pytest.raises(ProfileError) as info:
        all_profiles()
    print(info.value)
    assert str(local / "broken.toml") in str(info.value) and "at.probe_tries" in str(info.value)


# -- ports -----------------------------------------------------------------------------------

def usb_port(device: str, vid: int, pid: int, location: str | None) -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.location = vid, pid, location
    return info


@pytest.mark.parametrize("location,expected", [
    ("1-1.2:1.2", 2), ("3-1:1.10", 10), ("1-1.4.3:2.0", 0), ("1-1.2", None), ("", None), (None, None), ("1-1:1.x", None),
])
def test_interface_number_from_pyserial_location(location, expected) -> None:
    assert interface_number(location) == expected


def test_find_ports_tells_at_and_nmea_ports_apart() -> None:
    """From pyserial's port list: which ttyUSB is the AT port and which the NMEA port of each modem."""
    ports = [
        usb_port("/dev/ttyUSB0", 0x2C7C, 0x0125, "1-1.2:1.0"),   # EC25 diag
        usb_port("/dev/ttyUSB1", 0x2C7C, 0x0125, "1-1.2:1.1"),   # EC25 NMEA
        usb_port("/dev/ttyUSB2", 0x2C7C, 0x0125, "1-1.2:1.2"),   # EC25 AT
        usb_port("/dev/ttyUSB3", 0x2C7C, 0x0125, "1-1.2:1.3"),   # EC25 PPP
        usb_port("/dev/ttyUSB4", 0x1E0E, 0x9011, "1-1.3:1.3"),   # SIM7600 RNDIS mode NMEA
        usb_port("/dev/ttyUSB5", 0x1E0E, 0x9011, "1-1.3:1.4"),   # SIM7600 RNDIS mode AT
        usb_port("/dev/ttyUSB6", 0x0403, 0x6001, "1-1.4"),        # an FTDI adapter
        usb_port("/dev/ttyUSB7", 0x12D1, 0x15C1, "1-1.5:2.4"),   # ME909s PCUI
        usb_port("/dev/ttyUSB8", 0x1BC7, 0x1204, "1-1.6:1.4"),   # LE910C1 MBIM composition NMEA
        usb_port("/dev/ttyUSB9", 0x1BC7, 0x1204, "1-1.6:1.5"),   # LE910C1 MBIM composition AT
        usb_port("/dev/ttyUSB10", 0x413C, 0x81B6, "1-1.7:1.0"),  # DW5811e DM/DIAG
        usb_port("/dev/ttyUSB11", 0x413C, 0x81B6, "1-1.7:1.2"),  # DW5811e NMEA
        usb_port("/dev/ttyUSB12", 0x413C, 0x81B6, "1-1.7:1.3"),  # DW5811e AT
        ListPortInfo("/dev/ttyAMA0", skip_link_detection=True),   # the Pi's UART, no USB id
    ]
    found = find_ports(ports)
    for port in found:
        print(f"{port.device}: {port.vid}:{port.pid} if{port.interface} {port.role} {port.profile.name} {port.candidates}")
    assert [(p.device, p.role, p.profile.name) for p in found] == [
        ("/dev/ttyUSB1", "nmea", "quectel-ec25"),
        ("/dev/ttyUSB11", "nmea", "sierra-em7455"),
        ("/dev/ttyUSB12", "at", "sierra-em7455"),
        ("/dev/ttyUSB2", "at", "quectel-ec25"),
        ("/dev/ttyUSB4", "nmea", "simcom-sim7600"),
        ("/dev/ttyUSB5", "at", "simcom-sim7600"),
        ("/dev/ttyUSB7", "at", "huawei-me909s"),
        ("/dev/ttyUSB8", "nmea", "telit-le910c1"),
        ("/dev/ttyUSB9", "at", "telit-le910c1"),
    ]
    assert found[3].candidates == ("quectel-ec25", "quectel-eg25g")
    print("this machine:", find_ports())  # real comports(): must not fail without modems


EC25_PORTS = [
    usb_port("/dev/ttyUSB0", 0x2C7C, 0x0125, "1-1.2:1.0"),   # diag
    usb_port("/dev/ttyUSB1", 0x2C7C, 0x0125, "1-1.2:1.1"),   # NMEA
    usb_port("/dev/ttyUSB2", 0x2C7C, 0x0125, "1-1.2:1.2"),   # AT
    usb_port("/dev/ttyUSB3", 0x2C7C, 0x0125, "1-1.2:1.3"),   # PPP
]
NO_MODEM_PORTS = [
    usb_port("/dev/ttyUSB0", 0x0403, 0x6001, "1-1.4"),        # an FTDI adapter
    ListPortInfo("/dev/ttyAMA0", skip_link_detection=True),   # the Pi's UART
]


@pytest.mark.parametrize("role,configured,ports,expected", [
    ("at", "/dev/blankspot-at", EC25_PORTS, "/dev/blankspot-at"),
    ("nmea", "/dev/blankspot-nmea", NO_MODEM_PORTS, "/dev/blankspot-nmea"),
    ("at", "", EC25_PORTS, "/dev/ttyUSB2"),
    ("nmea", "", EC25_PORTS, "/dev/ttyUSB1"),
    ("at", "", NO_MODEM_PORTS, None),
    ("nmea", "", [], None),
], ids=["configured AT port wins", "configured NMEA port wins without a modem", "AT port of the modem",
        "NMEA port of the modem", "no modem, no AT port", "no ports at all"])
def test_port_for_a_role_is_the_configured_one_else_the_first_found(role, configured, ports, expected) -> None:
    assert port_for(role, configured, ports) == expected


# -- documentation and packaging -------------------------------------------------------------

README = CONFIGS / "README.md"


def test_readme_documents_every_key() -> None:
    """Each key a profile may hold is in the README's tables with the code's own description."""
    from agent.unit.devices.modem.profiles import ProfileSpec
    from agent.unit.config_schema import walk

    text = README.read_text(encoding="utf-8")
    specs = {key: spec for key, spec, _ in walk(ProfileSpec)}
    missing = [key for key in profile_keys() if f"| `{key}` |" not in text]
    wrong = [key for key in profile_keys() if f"| `{key}` |" in text and specs[key].doc not in text]
    assert not missing and not wrong, (missing, wrong)
    print(f"{len(profile_keys())} keys documented")


def readme_script(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(rf"`{re.escape(name)}`.*?```python\n(.*?)```", text, re.S)
    assert m, name
    return m.group(1)


class FakeModem(threading.Thread):
    """Answers from a transcript on the master side of a pseudo-terminal, echoing until ATE0."""

    def __init__(self, master: int, transcript: Transcript) -> None:
        super().__init__(daemon=True)
        self.master, self.transcript, self.echo, self.stop = master, transcript, True, False
        self.answered: list[str] = []

    def run(self) -> None:
        buffer = b""
        while not self.stop:
            try:
                chunk = os.read(self.master, 1024)
            except OSError:
                return
            buffer += chunk
            while b"\r" in buffer:
                raw, buffer = buffer.split(b"\r", 1)
                command = raw.decode().strip()
                if not command:
                    continue
                lines = self.transcript.answer(command)
                out = (raw + b"\r") if self.echo else b""
                out += b"\r\n" + "\r\n".join(lines or ("ERROR",)).encode() + b"\r\n"
                if command == "AT+CSQ":
                    out += b"\r\n+CEREG: 1\r\n"  # a URC right after OK, in the same read
                if command.upper() == "ATE0":
                    self.echo = False
                self.answered.append(command)
                os.write(self.master, out)
                if command == "AT+CREG?":
                    time.sleep(0.05)  # a URC a moment after the answer, in a read of its own
                    os.write(self.master, b'\r\n+QIND: "csq",23,99\r\n')


def test_readme_recipe_records_a_transcript_through_spy(tmp_path: Path) -> None:
    """record_transcript.py via spy:// on a pseudo-terminal, then spy2transcript.py: the answers come back exactly."""
    (tmp_path / "record_transcript.py").write_text(readme_script("record_transcript.py"))
    (tmp_path / "spy2transcript.py").write_text(readme_script("spy2transcript.py"))
    source = load_profile("quectel-ec25").transcript
    master, slave = os.openpty()
    tty.setraw(slave)
    modem = FakeModem(master, source)
    modem.start()
    try:
        started = time.monotonic()
        run = subprocess.run([sys.executable, "record_transcript.py", os.ttyname(slave), "at.log"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        converted = subprocess.run([sys.executable, "spy2transcript.py", "at.log"],
                                   cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert converted.returncode == 0, converted.stderr
        elapsed = time.monotonic() - started
    finally:
        modem.stop = True
        os.close(slave)
        os.close(master)
    log_lines = (tmp_path / "at.log").read_text().count("\n")
    recorded = parse_transcript(converted.stdout, "converted")
    print(f"recorded {len(recorded.answers)} answers from {len(modem.answered)} commands, "
          f"{log_lines} log lines, {elapsed:.1f}s")
    assert len(recorded.answers) == len(modem.answered) >= 10
    for command, lines in recorded.answers.items():
        assert lines == source.answer(command), command   # echo and the trailing URC are gone


def test_setup_installs_the_profiles_as_data_files(tmp_path: Path) -> None:
    """setup.cfg's data_files put every .toml and .transcript in share/blankspot/firmware_configs, which is on the search path."""
    source = copy_source(tmp_path / "src")
    target = tmp_path / "prefix"
    run = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "install_data", "--install-dir", str(target)],
        cwd=source, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    installed = target / "share" / "blankspot" / "firmware_configs"
    shipped = sorted(p.name for p in installed.iterdir())
    expected = sorted(p.name for p in CONFIGS.iterdir() if p.suffix in (".toml", ".transcript"))
    print(f"{len(shipped)} profile files installed under {installed.relative_to(tmp_path)}")
    assert shipped == expected
    assert Path(sys.prefix) / installed.relative_to(target) in search_path()
    for path in installed.glob("*.toml"):
        assert load_profile_file(path).name == path.stem
