"""Config files are validated once, strictly, with one clear line per mistake."""
from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from agent.config import DEVICE_ID_MISSING, Config, ConfigError, DeviceConfig, load_config, parse_config
from agent.units import parse_duration, parse_size


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

