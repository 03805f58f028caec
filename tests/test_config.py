"""Config files are validated once, strictly, with one clear line per mistake."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agent.commands.main import main
from agent.unit.config import DEVICE_ID_MISSING, Config, ConfigError, DeviceConfig, load_config, parse_config
from agent.unit.config_schema import line_of, toml_error
from agent.shared.quantities import parse_duration, parse_size


def named(text: str) -> str:
    """``text`` with a device.id added at its end, unless it has a [device] table of its own."""
    return text if "[device]" in text else text + "\n[device]\nid = 'unit-1'\n"


def test_a_file_with_only_the_device_id_gives_defaults() -> None:
    config = parse_config("[device]\nid = 'boat-07'\n")
    assert config == Config(device=DeviceConfig("boat-07"))
    assert config.uplink.protocol == "5"
    assert config.buffer.max_size == 200_000_000


# Every fresh Raspberry Pi OS is called "raspberrypi": a default taken from the host name
# would give many units one name, and the centre would merge their readings as duplicates.
@pytest.mark.parametrize("text,line", [("", None), ("[device]\n", None), ("[device]\nid = ''\n", 2),
                                       ("[uplink]\nhost = 'broker'\n", None)])
def test_device_id_is_required(text: str, line: int | None) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "agent.toml")
    where = f"agent.toml:{line}" if line else "agent.toml"
    assert str(info.value) == f"{where}: device.id: {DEVICE_ID_MISSING}"
    assert 'e.g. id = "boat-07"' in str(info.value) and "blankspot doctor" in str(info.value)


def test_commands_that_help_set_a_unit_up_accept_a_file_without_device_id() -> None:
    config = parse_config("[uplink]\nhost = 'broker'\n", require_device_id=False)
    assert config.device_id == "" and config.uplink.host == "broker"
    with pytest.raises(ConfigError, match="device.id: expected 1-64"):
        parse_config("[device]\nid = 'boat 7'\n", require_device_id=False)


def test_run_and_check_refuse_a_file_without_device_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[uplink]\nhost = 'broker'\n")
    for argv in (["run", "--config", str(path), "--check"], ["run", "--config", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == f"blankspot: config error: {path}: device.id: {DEVICE_ID_MISSING}\n"


def test_typed_values_are_converted() -> None:
    config = parse_config(
        """
        [device]
        id = "boat-07"
        [buffer]
        max_size = "50MB"
        keep_delivered = "7d"
        [uplink]
        keepalive = "30s"
        protocol = "3.1.1"
        """
    )
    assert config.device_id == "boat-07"
    assert config.client_id == "blankspot-boat-07"
    assert config.buffer.max_size == 50_000_000
    assert config.buffer.keep_delivered == 7 * 86400
    assert config.uplink.keepalive == 30.0
    assert config.uplink.protocol == "3.1.1"


# (file text, what the single error line must contain)
BAD_CONFIGS = [
    ("[uplink]\nhots = 'x'\n", "2: uplink.hots: unknown key (did you mean 'host'?)"),
    ("[uplnk]\nhost = 'x'\n", "uplnk: unknown key (did you mean 'uplink'?)"),
    ("[uplink]\nport = '1883'\n", "uplink.port: expected a whole number, got str '1883'"),
    ("[uplink]\nport = 70000\n", "uplink.port: must be at most 65535"),
    ("[uplink]\nprotocol = '5.0'\n", "uplink.protocol: expected one of '5', '3.1.1', got '5.0'"),
    ("[uplink]\nprotocol = '3.11'\n", "got '3.11' (did you mean '3.1.1'?)"),
    ("[uplink]\nkeepalive = 30\n", "uplink.keepalive: expected a duration such as \"30s\", got int 30"),
    ("[uplink]\nkeepalive = '30 sec'\n", "uplink.keepalive: expected a duration such as \"30s\""),
    ("[uplink]\nbackoff_min = '10s'\nbackoff_max = '1s'\n", "uplink.backoff_max: must not be shorter than uplink.backoff_min"),
    ("[uplink]\ncert_file = '/x.pem'\n", "uplink.cert_file: cert_file and key_file go together"),
    ("[uplink]\ntopic_prefix = 'a/#'\n", "uplink.topic_prefix: expected topic levels without wildcards"),
    ("[uplink]\ntls = 'yes'\n", "uplink.tls: expected true or false, got str 'yes'"),
    ("[buffer]\nmax_size = '10KB'\n", "buffer.max_size: must be at least \"1MB\""),
    ("[buffer]\nmax_size = 50\n", "buffer.max_size: expected a size such as \"50MB\", got int 50"),
    ("[device]\nid = 'boat/7'\n", "device.id: expected 1-64 letters, digits"),
    ("[device]\nid = 'a'\n[device]\nid = 'b'\n", "not valid TOML"),
    ("uplink = 5\n", "uplink: expected a table"),
    ("[source]\nkind = 'modme'\n", "source.kind: expected one of 'synthetic'"),
    ("[log]\nlevel = 'verbose'\n", "log.level: expected one of"),
]


@pytest.mark.parametrize("text,expected", BAD_CONFIGS)
def test_bad_config_is_one_clear_error(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(named(text), "agent.toml")
    message = str(info.value)
    assert message.startswith("agent.toml")
    assert expected in message
    assert "\n" not in message


def test_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[device]\nid = 'x'\n\n[uplink]\nhost = 'h'\nport = 'nope'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:6: uplink.port")


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[device]\nid = 'x'\nport = \n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:3: not valid TOML: Invalid value at column 8"


# (file text, dotted key, enclosing, the line line_of finds)
KEY_LINES = [
    ("[uplink]\nhost = 'h'\nport = 1\n", "uplink.port", False, 3),
    ("uplink.port = 1\n", "uplink.port", False, 1),
    ("uplink = { port = 1 }\n", "uplink.port", False, 1),
    ("[uplnk]\nhost = 'x'\n", "uplnk", False, 1),
    ('[ "uplink" ]\n"port" = 1\n', "uplink.port", False, 2),
    ("[uplink] # the broker\nport = 1  # plain MQTT\n", "uplink.port", False, 2),
    ("[buffer]\nport = 1\n[uplink]\nport = 2\n", "uplink.port", False, 4),
    ("[uplink]\nport = 1\n", "port", False, None),
    ("", "uplink.port", False, None),
    ("[device]\n", "device.id", False, None),
    ("[device]\n", "device.id", True, 1),
    ("[latency]\ntargets = ['a', 2]\n", "latency.targets[1]", False, None),
    ("[latency]\ntargets = ['a', 2]\n", "latency.targets[1]", True, 2),
    ("[[usb]]\nvid = 1\n[[usb]]\nvid = 2\n", "usb[1].vid", False, 4),
    ("[[usb]]\nvid = 1\n[[usb]]\npid = 2\n", "usb[1].vid", True, 3),
    ("[at]\ntimeout = 1\n", "at.timeout.seconds", True, 2),
    ("[uplink]\n", "buffer.path", True, None),
]


@pytest.mark.parametrize("text,key,enclosing,line", KEY_LINES)
def test_line_of_finds_the_line_a_key_is_on(text: str, key: str, enclosing: bool, line: int | None) -> None:
    assert line_of(text, key, enclosing=enclosing) == line


def test_a_toml_error_gives_its_line_apart_from_its_message() -> None:
    with pytest.raises(tomllib.TOMLDecodeError) as info:
        tomllib.loads("[device]\nid = \n")
    assert toml_error(info.value) == ("Invalid value at column 6", 2)


@pytest.mark.parametrize("text", BAD_CONFIGS[:6], ids=lambda t: t[1][:30])
def test_cli_exits_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: tuple[str, str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(named(text[0]))
    assert main(["run", "--config", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert text[1] in err


def test_missing_config_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert "nope.toml: no such file" in err and err.count("\n") == 1


def test_check_accepts_a_good_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[device]\nid = 'boat-1'\n")
    assert main(["run", "--config", str(path), "--check"]) == 0
    assert "ok (device boat-1)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["frobnicate"], ["run", "--bogus"], ["status", "--json", "extra"], ["demo", "--seconds", "soon"], []],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("blankspot")


@pytest.mark.parametrize(
    "text,seconds", [("250ms", 0.25), ("30s", 30), ("5m", 300), ("1h", 3600), ("7d", 604800), ("1.5s", 1.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text,size", [("512KB", 512_000), ("50MB", 50_000_000), ("1GiB", 2**30), ("2gb", 2_000_000_000), ("100B", 100)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "5", "5 parsecs", "-1s", "s", "1e3s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# -- the files a config names ---------------------------------------------------------------

@pytest.fixture(scope="module")
def fleet_ca(tmp_path_factory: pytest.TempPathFactory):
    from tests.support.tls import TestCA

    return TestCA(tmp_path_factory.mktemp("pki"), "fleet")


def unit_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f"[device]\nid = 'boat-07'\n\n[buffer]\npath = '{tmp_path / 'state' / 'buffer.db'}'\n\n"
                    f"[budget]\nledger = '{tmp_path / 'state' / 'usage.db'}'\n\n{body}")
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = main(["run", "--config", str(path), "--check"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return status, captured.err.splitlines() if status else captured.out.splitlines()


def test_check_accepts_usable_tls_files_and_a_buffer_folder_it_can_create(
        tmp_path: Path, fleet_ca, capsys: pytest.CaptureFixture[str]) -> None:
    unit = fleet_ca.issue("boat-07")
    (tmp_path / "broker.password").write_text("s3cret\n")
    path = unit_file(tmp_path, f"[uplink]\ntls = true\nca_file = '{fleet_ca.cert_path}'\ncert_file = '{unit.cert}'\n"
                               f"key_file = '{unit.key}'\nusername = 'boat-07'\n"
                               f"password_file = '{tmp_path / 'broker.password'}'\n")
    assert check(path, capsys) == (0, [f"{path}: ok (device boat-07)"])
    assert not (tmp_path / "state").exists(), "--check creates nothing"


def test_check_names_every_missing_file_on_its_own_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing"
    (tmp_path / "not-a-folder").write_text("")
    path = tmp_path / "agent.toml"
    path.write_text(
        "[device]\nid = 'boat-07'\n"
        f"[buffer]\npath = '{tmp_path / 'not-a-folder' / 'buffer.db'}'\n"
        f"[uplink]\ntls = true\nca_file = '{missing / 'ca.crt'}'\ncert_file = '{missing / 'boat-07.crt'}'\n"
        f"key_file = '{tmp_path}'\npassword_file = '{missing / 'broker.password'}'\n"
        f"[budget]\nledger = '{tmp_path / 'usage.db'}'\n"
    )
    status, lines = check(path, capsys)
    assert status == 2
    prefix = f"blankspot: config error: {path}"
    assert lines == [
        f"{prefix}:4: buffer.path: {tmp_path / 'not-a-folder'} is not a folder",
        f"{prefix}:7: uplink.ca_file: {missing / 'ca.crt'}: no such file",
        f"{prefix}:8: uplink.cert_file: {missing / 'boat-07.crt'}: no such file",
        f"{prefix}:9: uplink.key_file: {tmp_path}: is a folder, expected a file",
        f"{prefix}:10: uplink.password_file: {missing / 'broker.password'}: no such file",
    ]


def test_check_refuses_files_tls_cannot_use(tmp_path: Path, fleet_ca, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    unit, other = fleet_ca.issue("boat-07"), fleet_ca.issue("boat-08")
    not_pem = tmp_path / "ca.crt"
    not_pem.write_text("paste the CA certificate here\n")
    (tmp_path / "empty.password").write_text("\n")
    path = unit_file(tmp_path, f"[uplink]\ntls = true\nca_file = '{not_pem}'\ncert_file = '{unit.cert}'\n"
                               f"key_file = '{other.key}'\npassword_file = '{tmp_path / 'empty.password'}'\n")
    status, lines = check(path, capsys)
    assert status == 2 and len(lines) == 3, lines
    assert f":12: uplink.ca_file: {not_pem}: not a PEM CA certificate (" in lines[0]
    assert f":13: uplink.cert_file: {unit.cert} with key {other.key}: not a usable PEM certificate" in lines[1]
    assert f":15: uplink.password_file: {tmp_path / 'empty.password'}: its first line is empty" in lines[2]

    # A key with a passphrase: nobody is at the unit to type it (OpenSSL would ask on the terminal).
    locked = tmp_path / "locked.key"
    locked.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    path = unit_file(tmp_path, f"[uplink]\ntls = true\ncert_file = '{unit.cert}'\nkey_file = '{locked}'\n")
    status, lines = check(path, capsys)
    assert status == 2 and len(lines) == 1 and "uplink.cert_file:" in lines[0] and "unencrypted key" in lines[0]


def test_the_uplink_asks_check_tls_files_before_connecting(tmp_path: Path, fleet_ca) -> None:
    """The one-line answer the uplink logs instead of a traceback from ssl at every attempt."""
    from agent.unit.config_files import check_tls_files

    unit = fleet_ca.issue("boat-07")
    good = parse_config(f"[device]\nid = 'boat-07'\n[uplink]\ntls = true\nca_file = '{fleet_ca.cert_path}'\n"
                        f"cert_file = '{unit.cert}'\nkey_file = '{unit.key}'\n")
    assert check_tls_files(good.uplink) == []
    assert check_tls_files(parse_config("[device]\nid = 'boat-07'\n[uplink]\ntls = true\n").uplink) == []
    gone = parse_config(f"[device]\nid = 'boat-07'\n[uplink]\ntls = true\nca_file = '{tmp_path / 'ca.crt'}'\n")
    assert check_tls_files(gone.uplink) == [f"uplink.ca_file: {tmp_path / 'ca.crt'}: no such file"]
    (tmp_path / "ca.crt").write_bytes(fleet_ca.cert_path.read_bytes())
    assert check_tls_files(gone.uplink) == [], "a file copied in later is found on the next attempt"


def test_a_buffer_folder_is_checked_for_what_sqlite_writes_beside_the_file(tmp_path: Path) -> None:
    from agent.unit.config_files import SERVICE_STATE_DIRECTORY, writable_file_problem

    assert writable_file_problem("buffer.path", tmp_path / "a" / "b" / "buffer.db") is None  # can be created
    (tmp_path / "buffer.db").mkdir()
    assert str(writable_file_problem("buffer.path", tmp_path / "buffer.db")) == \
        f"buffer.path: {tmp_path / 'buffer.db'}: is a folder, expected a file"
    # The service's StateDirectory= is made by systemd when it starts: not there yet is fine.
    assert writable_file_problem("buffer.path", SERVICE_STATE_DIRECTORY / "buffer.db") is None \
        or SERVICE_STATE_DIRECTORY.exists()


def run_with_a_missing_ca_file(tmp_path: Path) -> tuple[int, str, int]:
    """The agent run with uplink.tls and a CA file that is not there, until it has tried to
    connect a few times: (exit status after SIGTERM, its stderr at debug level, readings it
    buffered meanwhile)."""
    import signal
    import subprocess
    import sys

    from agent.unit.buffer import read_stats
    from agent.shared.polling import wait_until
    from agent.sim.broker import free_port
    from tests.support.unit_config import write_config

    ca = tmp_path / "ca.crt"
    path = write_config(tmp_path / "agent.toml", free_port(), tmp_path / "buffer.db",
                        {"uplink": {"tls": True, "ca_file": str(ca)}})
    with open(tmp_path / "agent.log", "wb") as log:
        agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(path), "--log-level", "debug"],
                                 stderr=log, cwd=Path(__file__).parent.parent)
    try:
        def buffered() -> int:
            try:
                return read_stats(tmp_path / "buffer.db").pending
            except Exception:  # not created yet
                return 0
        def attempts() -> int:  # each one logged, after the first at debug level
            return (tmp_path / "agent.log").read_text(errors="replace").count("cannot connect with TLS")
        wait_until(lambda: buffered() >= 20, 20)
        assert wait_until(lambda: attempts() >= 3, 20), "the uplink kept trying to connect"
        agent.send_signal(signal.SIGTERM)
        status = agent.wait(30)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
    return status, (tmp_path / "agent.log").read_text(), buffered()


def test_run_with_a_missing_ca_file_warns_once_and_keeps_measuring(tmp_path: Path) -> None:
    status, log, buffered = run_with_a_missing_ca_file(tmp_path)
    assert status == 0, log[-2000:]
    assert buffered >= 20, "readings are taken and kept while the uplink cannot connect"
    assert log.count(f"uplink.ca_file: {tmp_path / 'ca.crt'}: no such file") >= 1
    assert "config error" not in log


def test_run_with_a_missing_ca_file_logs_no_traceback_at_each_attempt(tmp_path: Path) -> None:
    status, log, _ = run_with_a_missing_ca_file(tmp_path)
    assert status == 0 and "Traceback" not in log, log[-2000:]
