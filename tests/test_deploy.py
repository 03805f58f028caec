"""Field deployment: the systemd units, deploy/install.sh, the offline bundle, the Ansible playbook.

Everything runs for real, into temporary folders standing in for a Raspberry Pi's root:
install.sh with ``--root``, systemd's own ``systemd-analyze`` on the units, pip installing
the bundle with every package index unreachable, ansible-playbook provisioning two units and
a broker on this machine, and Mosquitto started from what the playbook wrote.

Required behaviour:
- the units are valid for systemd (no warning at all), hardened (exposure under a
  threshold), and carry the settings the agent depends on (notify + watchdog, the service
  user, state folder, CAP_NET_RAW, serial and GPIO devices, adjtimex allowed);
- the agent unit's command line is one the agent accepts, and the agent so started speaks
  the notify protocol the unit expects (READY=1, WATCHDOG=1, STOPPING=1, exit 0 on SIGTERM);
- install.sh makes the user (dialout, gpio when it exists), folders, config, units, udev
  rules and the enable link; run twice it leaves the same tree; it never overwrites an
  operator's agent.toml; --dry-run changes nothing and never says "installed";
- install.sh gives a unit its own heartbeat key once (readable by the agent, never replaced)
  and says where the centre's copy goes; a collector gets the SMS gateway's unit, not
  enabled, its settings and the keys' folder;
- the package builds without a warning and carries its licence;
- the offline bundle (made with the collector's extras) installs with no package index
  reachable; under --root the virtualenv works once the image boots (run in a mount
  namespace with the build folder gone): the installed command checks the installed
  config, and a collector draws a map, a report and an export of a database with readings;
  a bundle without the collector's extras is named as the reason the install stops; the
  same collector installed from a checkout (pip with the package index) draws them too;
- the playbook gives each unit its own device id, account and password, the broker the
  matching hashed password file, the collector what it needs to draw maps, every unit's
  heartbeat key and the SMS gateway enabled on the modem it names, and a second run
  changes nothing; Mosquitto started from the broker's files lets a unit in with the
  password the playbook gave it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.shared.heartbeat import read_key
from agent.unit.config import Config, parse_config
from agent.unit.config_files import SERVICE_STATE_DIRECTORY
from agent.sim.broker import LocalBroker, free_port
from tests.support.broker import require_mosquitto
from tests.support.central_broker import CentralBroker, Client, shipped_config, wait
from tests.support.systemd import FakeSystemd
from tests.support.tls import TestCA
from tests.support.source_tree import copy_source
from tests.support.survey_factory import survey_db, trip_with_tags
from tests.support.unit_config import write_config

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "deploy" / "install.sh"
MAKE_BUNDLE = ROOT / "deploy" / "make-bundle.sh"
UNITS = ROOT / "systemd"
ANSIBLE = ROOT / "deploy" / "ansible"
# Debian's own interpreter, as on Raspberry Pi OS Bookworm: the test venv then sees only
# what apt installed, not this checkout's development packages.
SYSTEM_PYTHON = "/usr/bin/python3"


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed; the test command installs it (apt-get install {package})")
    return path


# -- a unit file, read the way systemd reads it ----------------------------------------------

def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given (DeviceAllow= and friends repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(settings: dict[str, list[str]], key: str) -> str:
    values = settings.get(key, [])
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


def seconds(value: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+)\s*(min|s|h)?", value):
        total += int(number) * {"": 1, "s": 1, "min": 60, "h": 3600}[unit]
    return total


@pytest.fixture(scope="module")
def systemd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding systemd's own units, ours, and an executable where ExecStart points."""
    require("systemd-analyze", "systemd")
    root = tmp_path_factory.mktemp("systemd-root")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    exe = root / "opt/blankspot/venv/bin/blankspot"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return root


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", *args, f"--root={root}"], capture_output=True, text=True, timeout=60)


# -- the units -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["blankspot-agent.service", "blankspot-collector.service",
                                  "blankspot-speed-server.service", "blankspot-serve.service",
                                  "blankspot-sms-gateway.service"])
def test_units_verify_without_a_single_warning(systemd_root: Path, name: str) -> None:
    shutil.copy(UNITS / name, systemd_root / "etc/systemd/system" / name)
    done = analyze(systemd_root, "verify", "--man=no", f"/etc/systemd/system/{name}")
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stdout + done.stderr


def test_verify_does_catch_mistakes(systemd_root: Path) -> None:
    """The check above is not vacuous: systemd-analyze names a misspelt key and a bad value."""
    broken = (UNITS / "blankspot-agent.service").read_text()
    broken = broken.replace("WatchdogSec=2min", "WatchdogSec=two minutes\nWatchdogSecs=2min")
    (systemd_root / "etc/systemd/system/broken.service").write_text(broken)
    done = analyze(systemd_root, "verify", "--man=no", "/etc/systemd/system/broken.service")
    complaints = done.stdout + done.stderr
    assert "Unknown key 'WatchdogSecs'" in complaints and "Failed to parse sec value" in complaints, complaints


@pytest.mark.parametrize("name, threshold", [("blankspot-agent.service", 3.0), ("blankspot-collector.service", 2.0),
                                             ("blankspot-speed-server.service", 2.0),
                                             ("blankspot-serve.service", 2.0),
                                             ("blankspot-sms-gateway.service", 2.0)])
def test_units_are_hardened(systemd_root: Path, name: str, threshold: float) -> None:
    """systemd's own exposure score (0 = locked down, 10 = exposed); the agent needs
    serial ports, GPIO and raw ICMP sockets, the collector only the network, the SMS gateway
    the network and the modem's port."""
    shutil.copy(UNITS / name, systemd_root / "etc/systemd/system" / name)
    done = analyze(systemd_root, "security", "--offline=true", "--no-pager", f"/etc/systemd/system/{name}")
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert m, done.stdout[-1000:] + done.stderr
    print(f"\n{name}: exposure {m.group(1)}")
    assert float(m.group(1)) <= threshold


def test_agent_unit_has_what_the_agent_depends_on() -> None:
    unit = unit_settings(UNITS / "blankspot-agent.service")
    service = unit["Service"]
    expected = {
        "Type": "notify", "NotifyAccess": "main", "Restart": "always",
        "User": "blankspot", "Group": "blankspot",
        "StateDirectory": "blankspot", "ConfigurationDirectory": "blankspot",
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "AmbientCapabilities": "CAP_NET_RAW", "CapabilityBoundingSet": "CAP_NET_RAW",
        "ExecStart": "/opt/blankspot/venv/bin/blankspot run --config /etc/blankspot/agent.toml",
    }
    assert {key: one(service, key) for key in expected} == expected
    watchdog = seconds(one(service, "WatchdogSec"))
    assert 30 <= watchdog <= 600, "long enough for a loop turn, short enough to matter"
    assert seconds(one(service, "RestartSec")) >= 1
    assert seconds(one(service, "TimeoutStopSec")) >= 60, "time to drain the buffer on stop"
    assert one(unit["Unit"], "StartLimitIntervalSec") == "0", "a field unit never gives up restarting"
    assert "network-online.target" not in " ".join(v for values in unit["Unit"].values() for v in values), \
        "the agent must start in a blank spot, where the network never comes up"
    # agent/shared/clock.py asks adjtimex(2) whether the clock is synchronised.
    assert service.get("ProtectClock", ["no"]) == ["no"]
    assert any("adjtimex" in v.split() for v in service["SystemCallFilter"])
    assert Config().buffer.path.parent == SERVICE_STATE_DIRECTORY == Path("/var/lib/blankspot"), \
        "the buffer is in StateDirectory"
    devices = " ".join(service["DeviceAllow"])
    for device in ("char-ttyUSB", "char-ttyACM", "char-gpiochip", "char-gpiomem"):
        assert device in devices
    assert one(service, "DevicePolicy") == "closed"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_collector_unit_runs_the_collect_command_from_its_environment_file() -> None:
    service = unit_settings(UNITS / "blankspot-collector.service")["Service"]
    assert one(service, "Type") == "notify" and one(service, "NotifyAccess") == "main"
    assert one(service, "EnvironmentFile") == "/etc/blankspot/collector.env"
    assert one(service, "ExecStart") == ("/opt/blankspot/venv/bin/blankspot collect --broker ${BLANKSPOT_BROKER} "
                                         "--db ${BLANKSPOT_DB} $BLANKSPOT_COLLECT_ARGS")
    example = dict(line.split("=", 1) for line in (UNITS / "collector.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert set(example) == {"BLANKSPOT_BROKER", "BLANKSPOT_DB", "BLANKSPOT_COLLECT_ARGS"}


def test_serve_unit_runs_the_live_map_read_only_as_the_collectors_user() -> None:
    collector = unit_settings(UNITS / "blankspot-collector.service")["Service"]
    service = unit_settings(UNITS / "blankspot-serve.service")["Service"]
    assert one(service, "EnvironmentFile") == "/etc/blankspot/serve.env"
    assert one(service, "ExecStart") == "/opt/blankspot/venv/bin/blankspot serve --db ${BLANKSPOT_DB} $BLANKSPOT_SERVE_ARGS"
    for key in ("User", "Group", "StateDirectory", "ProtectSystem"):
        assert one(service, key) == one(collector, key), key
    assert one(service, "Restart") == "always" and one(service, "RestartPreventExitStatus") == "2"
    example = dict(line.split("=", 1) for line in (UNITS / "serve.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert set(example) == {"BLANKSPOT_DB", "BLANKSPOT_SERVE_ARGS"}
    assert "--bind 127.0.0.1" in example["BLANKSPOT_SERVE_ARGS"], "as shipped, this machine only"
    collector_env = dict(line.split("=", 1) for line in (UNITS / "collector.env.example").read_text().splitlines()
                         if line and not line.startswith("#"))
    assert example["BLANKSPOT_DB"] == collector_env["BLANKSPOT_DB"], "it reads the collector's database"


def test_sms_gateway_unit_runs_as_the_collector_with_the_modems_port_only() -> None:
    collector = unit_settings(UNITS / "blankspot-collector.service")["Service"]
    service = unit_settings(UNITS / "blankspot-sms-gateway.service")["Service"]
    assert one(service, "Type") == "notify" and one(service, "NotifyAccess") == "main"
    assert one(service, "WatchdogSec") and one(service, "RestartPreventExitStatus") == "2"
    assert one(service, "EnvironmentFile") == "/etc/blankspot/sms-gateway.env"
    assert one(service, "ExecStart") == ("/opt/blankspot/venv/bin/blankspot sms-gateway --port ${BLANKSPOT_SMS_PORT} "
                                         "--db ${BLANKSPOT_DB} $BLANKSPOT_SMS_GATEWAY_ARGS")
    for key in ("User", "Group", "StateDirectory", "ProtectSystem"):
        assert one(service, key) == one(collector, key), key
    assert one(service, "DevicePolicy") == "closed"
    assert sorted(service["DeviceAllow"]) == ["char-ttyACM rw", "char-ttyUSB rw"]
    example = dict(line.split("=", 1) for line in (UNITS / "sms-gateway.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert set(example) == {"BLANKSPOT_SMS_PORT", "BLANKSPOT_DB", "BLANKSPOT_SMS_GATEWAY_ARGS"}
    collector_env = dict(line.split("=", 1) for line in (UNITS / "collector.env.example").read_text().splitlines()
                         if line and not line.startswith("#"))
    assert example["BLANKSPOT_DB"] == collector_env["BLANKSPOT_DB"], "it writes the collector's database"


def test_serve_accepts_its_units_command_line(tmp_path: Path) -> None:
    """ExecStart with the shipped serve.env, run by the real CLI until it listens."""
    db = survey_db(tmp_path / "collector.db", [])
    example = dict(line.split("=", 1) for line in (UNITS / "serve.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    port = str(free_port())
    args = ["serve", "--db", db, *example["BLANKSPOT_SERVE_ARGS"].replace("8090", port).split()]
    server = subprocess.Popen([sys.executable, "-m", "agent", *args], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        import urllib.request

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                    return reply.status == 200
            except OSError:
                return False

        assert wait(healthy, 30), server.stderr.read() if server.poll() is not None else "no answer"
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def test_agent_accepts_the_units_command_line(tmp_path: Path) -> None:
    """ExecStart's options, run by the real CLI (with --check, on the shipped example config, named)."""
    exec_start = one(unit_settings(UNITS / "blankspot-agent.service")["Service"], "ExecStart").split()
    config = tmp_path / "agent.toml"
    config.write_text((ROOT / "deploy" / "agent.example.toml").read_text().replace('\nid = ""\n', '\nid = "boat-07"\n'))
    args = [config if a == "/etc/blankspot/agent.toml" else a for a in exec_start[1:]]
    done = subprocess.run([sys.executable, "-m", "agent", *map(str, args), "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout


def test_agent_speaks_the_notify_protocol_its_unit_expects(tmp_path: Path) -> None:
    """Type=notify, NotifyAccess=main, WatchdogSec=: the agent started with the unit's
    command line says READY=1, feeds the watchdog, says STOPPING=1 on SIGTERM and exits 0
    well within TimeoutStopSec."""
    service = unit_settings(UNITS / "blankspot-agent.service")["Service"]
    config = write_config(tmp_path / "agent.toml", free_port(), tmp_path / "buffer.db", {"uplink": {"enabled": False}})
    words = [str(config) if w == "/etc/blankspot/agent.toml" else w for w in one(service, "ExecStart").split()]
    systemd = FakeSystemd(str(tmp_path / "notify.sock"))
    env = dict(os.environ, NOTIFY_SOCKET=systemd.env_value, WATCHDOG_USEC="1000000")
    env.pop("WATCHDOG_PID", None)
    agent = subprocess.Popen([sys.executable, "-m", "agent", *words[1:]], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait(lambda: any(m.startswith("READY=1") for _, m in systemd.messages), 30), systemd.messages
        assert wait(lambda: len(systemd.pings()) >= 3, 10), systemd.messages
        agent.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = agent.wait(seconds(one(service, "TimeoutStopSec")))
        took = time.monotonic() - started
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.wait()
        systemd.close()
    said = [m for _, m in systemd.messages]
    print(f"\nagent told systemd: {said[0]!r}, {len(systemd.pings())} watchdog pings, then "
          f"{[m for m in said if m.startswith('STOPPING')]}; stopped in {took:.1f} s")
    assert code == 0, agent.stderr.read()[-2000:] if agent.stderr else code
    assert any(m.startswith("STOPPING=1") for m in said)


# -- install.sh ------------------------------------------------------------------------------

def pi_root(path: Path, gpio: bool = True) -> Path:
    """A root with the accounts of a fresh Raspberry Pi OS: dialout, and gpio on a Pi."""
    (path / "etc").mkdir(parents=True)
    (path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n")
    groups = "root:x:0:\ndialout:x:20:pi\npi:x:1000:\n" + ("gpio:x:997:pi\n" if gpio else "")
    (path / "etc/group").write_text(groups)
    return path


def install(root: Path, *args: str, script: Path = INSTALL, env: dict[str, str] | None = None,
            expect: int = 0) -> subprocess.CompletedProcess:
    require("systemd-sysusers", "systemd")
    done = subprocess.run([str(script), "--root", str(root), *args], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == expect, done.stdout + done.stderr
    return done


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Every path under ``root`` with its type, mode, owner, and content or link target."""
    tree: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if any(rel.startswith(s) for s in skip) or "__pycache__" in rel:
            continue
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            what = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            what = None
        tree[rel] = (stat.filemode(info.st_mode), info.st_uid, info.st_gid, what)
    return tree


def group_members(root: Path) -> dict[str, tuple[int, set[str]]]:
    groups = {}
    for line in (root / "etc/group").read_text().splitlines():
        name, _, gid, members = line.split(":")
        groups[name] = (int(gid), set(filter(None, members.split(","))))
    return groups


def test_install_sets_up_a_unit(tmp_path: Path) -> None:
    root = pi_root(tmp_path / "pi")
    done = install(root, "--no-pip")
    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    groups = group_members(root)
    gid = groups["blankspot"][0]

    assert passwd["blankspot"][6] == "/usr/sbin/nologin" and int(passwd["blankspot"][2]) < 1000, "a system user"
    assert "blankspot" in groups["dialout"][1] and "blankspot" in groups["gpio"][1]
    assert snapshot(root)["etc/blankspot"][:3] == ("drwxr-x---", 0, gid)
    assert snapshot(root)["etc/blankspot/agent.toml"][:3] == ("-rw-r-----", 0, gid)
    assert (root / "etc/blankspot/agent.toml").read_text() == (ROOT / "deploy/agent.example.toml").read_text()
    assert (root / "etc/systemd/system/blankspot-agent.service").read_bytes() == \
        (UNITS / "blankspot-agent.service").read_bytes()
    assert (root / "etc/udev/rules.d/90-blankspot.rules").read_bytes() == \
        (ROOT / "deploy/udev/90-blankspot.rules").read_bytes()
    wants = root / "etc/systemd/system/multi-user.target.wants/blankspot-agent.service"
    assert os.readlink(wants) == "/etc/systemd/system/blankspot-agent.service", "enabled"
    assert not (root / "etc/udev/rules.d/90-blankspot.rules").read_text().count("ID_MM_PORT_IGNORE")
    assert "enabled" in done.stdout


def test_install_twice_gives_the_same_tree(tmp_path: Path) -> None:
    root = pi_root(tmp_path / "pi")
    install(root, "--no-pip")
    first = snapshot(root)
    again = install(root, "--no-pip")
    assert snapshot(root) == first
    assert not re.search(r"install: (installed|folder)", again.stdout), again.stdout
    assert "Creating" not in again.stderr


def test_agent_and_collector_on_one_host_settle(tmp_path: Path) -> None:
    root = pi_root(tmp_path / "pi")
    install(root, "--no-pip")
    install(root, "--no-pip", "--collector")
    both = snapshot(root)
    install(root, "--no-pip")
    install(root, "--no-pip", "--collector")
    assert snapshot(root) == both
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == ["blankspot-agent.service", "blankspot-collector.service"]


def test_operators_config_is_never_overwritten(tmp_path: Path) -> None:
    root = pi_root(tmp_path / "pi")
    install(root, "--no-pip")
    mine = '[device]\nid = "boat-07"\n'
    (root / "etc/blankspot/agent.toml").write_text(mine)
    done = install(root, "--no-pip")
    assert (root / "etc/blankspot/agent.toml").read_text() == mine
    assert "kept /etc/blankspot/agent.toml" in done.stdout
    assert (root / "etc/blankspot/agent.example.toml").exists(), "the new example lies beside it"


def test_install_makes_the_units_heartbeat_key_once_and_names_the_centres_copy(tmp_path: Path) -> None:
    root = pi_root(tmp_path / "pi")
    dry = install(root, "--dry-run", "--no-pip")
    assert "would create /etc/blankspot/heartbeat.key" in dry.stdout and not (root / "etc/blankspot").exists()

    done = install(root, "--no-pip")
    key_file = root / "etc/blankspot/heartbeat.key"
    gid = group_members(root)["blankspot"][0]
    assert snapshot(root)["etc/blankspot/heartbeat.key"][:3] == ("-rw-r-----", 0, gid), "the agent's group reads it"
    text = key_file.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}\n", text) and len(read_key(text)) == 32
    assert "install: installed /etc/blankspot/heartbeat.key" in done.stdout
    assert Config().sms.key_file == Path("/etc/blankspot/heartbeat.key"), "where the agent looks by default"
    assert "copy its new heartbeat key /etc/blankspot/heartbeat.key to the collector host" in done.stdout
    assert "/etc/blankspot/heartbeat-keys/<device id>.key" in done.stdout, "no device id set yet"
    assert not list((root / "etc/blankspot").glob("*.new"))

    # Never replaced (the centre's copy would no longer match); the hint names the unit once it has an id.
    config = root / "etc/blankspot/agent.toml"
    config.write_text(config.read_text().replace('\nid = ""\n', '\nid = "boat-07"\n'))
    again = install(root, "--no-pip")
    assert key_file.read_text() == text
    assert "heartbeat.key" not in " ".join(re.findall(r"install: installed .*", again.stdout))
    assert "copy its heartbeat key /etc/blankspot/heartbeat.key" in again.stdout
    assert "/etc/blankspot/heartbeat-keys/boat-07.key" in again.stdout

    other = pi_root(tmp_path / "pi-2")
    install(other, "--no-pip")
    assert (other / "etc/blankspot/heartbeat.key").read_text() != text, "every unit its own key"


def test_install_without_gpio_group(tmp_path: Path) -> None:
    root = pi_root(tmp_path / "pc", gpio=False)
    done = install(root, "--no-pip")
    groups = group_members(root)
    assert "gpio" not in groups, "no gpio group is invented"
    assert "blankspot" in groups["dialout"][1]
    assert "no gpio group" in done.stdout


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    root = pi_root(tmp_path / "pi")
    before = snapshot(root)
    done = install(root, "--dry-run", "--no-pip")
    assert snapshot(root) == before
    assert "would install /etc/systemd/system/blankspot-agent.service" in done.stdout
    assert "would: Creating user 'blankspot'" in done.stdout


def test_dry_run_never_says_installed(tmp_path: Path) -> None:
    root = pi_root(tmp_path / "server", gpio=False)
    done = install(root, "--dry-run", "--collector")
    assert not re.search(r"install: (installed|folder)", done.stdout), done.stdout
    assert f"install: would install blankspot[collector,postgres] from {ROOT} into /opt/blankspot/venv" in done.stdout
    assert re.search(r"would run: \S+ -m pip .* install --quiet --upgrade " + re.escape(f"{ROOT}[collector,postgres]"),
                     done.stdout), done.stdout
    assert not (root / "opt").exists()


def test_collector_install(tmp_path: Path) -> None:
    root = pi_root(tmp_path / "server", gpio=False)
    done = install(root, "--collector", "--no-pip")
    tree = snapshot(root)
    assert tree["etc/blankspot/collector.env"][:3] == ("-rw-------", 0, 0), "it may hold passwords"
    assert (root / "etc/systemd/system/multi-user.target.wants/blankspot-collector.service").is_symlink()
    assert (root / "etc/systemd/system/blankspot-serve.service").read_bytes() == \
        (UNITS / "blankspot-serve.service").read_bytes()
    assert not (root / "etc/systemd/system/multi-user.target.wants/blankspot-serve.service").exists(), \
        "the live map waits for its login and address"
    assert tree["etc/blankspot/serve.env"][:3] == ("-rw-------", 0, 0)
    assert not (root / "etc/udev/rules.d").exists() and not (root / "etc/blankspot/agent.toml").exists()
    assert not (root / "etc/blankspot/heartbeat.key").exists(), "a unit's key, not the centre's"
    assert unit_settings(UNITS / "blankspot-collector.service")["Service"]["PrivateDevices"] == ["yes"]

    # The SMS gateway: in place, not enabled until its modem is named; the units' keys'
    # folder readable by the group the gateway runs as.
    gateway = unit_settings(UNITS / "blankspot-sms-gateway.service")["Service"]
    gid = group_members(root)[one(gateway, "Group")][0]
    assert (root / "etc/systemd/system/blankspot-sms-gateway.service").read_bytes() == \
        (UNITS / "blankspot-sms-gateway.service").read_bytes()
    assert not (root / "etc/systemd/system/multi-user.target.wants/blankspot-sms-gateway.service").exists(), \
        "the gateway waits for its modem's port"
    assert tree["etc/blankspot/sms-gateway.env"][:3] == ("-rw-------", 0, 0)
    assert (root / "etc/blankspot/sms-gateway.env").read_bytes() == (UNITS / "sms-gateway.env.example").read_bytes()
    assert tree["etc/blankspot/heartbeat-keys"][:3] == ("drwxr-x---", 0, gid)
    assert (root / "opt/blankspot/share/doc/sms-heartbeat.md").is_file(), "the unit's Documentation="
    assert "systemctl enable --now blankspot-sms-gateway" in done.stdout
    assert "/etc/blankspot/heartbeat-keys/<device id>.key" in done.stdout

    mine = "BLANKSPOT_SMS_PORT=/dev/serial/by-id/usb-Quectel-if02-port0\n"
    (root / "etc/blankspot/sms-gateway.env").write_text(mine)
    again = install(root, "--collector", "--no-pip")
    assert (root / "etc/blankspot/sms-gateway.env").read_text() == mine
    assert "kept /etc/blankspot/sms-gateway.env" in again.stdout


def test_share_modem_installs_port_only_rules(tmp_path: Path) -> None:
    root = pi_root(tmp_path / "pi")
    install(root, "--no-pip", "--share-modem")
    rules = (root / "etc/udev/rules.d/90-blankspot.rules").read_text()
    assert "ID_MM_PORT_IGNORE" in rules and "ID_MM_DEVICE_IGNORE" not in rules


def test_bad_options_are_refused(tmp_path: Path) -> None:
    done = subprocess.run([str(INSTALL), "--frobnicate"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown option --frobnicate" in done.stderr and "--bundle DIR" in done.stderr
    done = subprocess.run([str(INSTALL), "--root", str(tmp_path), "--bundle", str(tmp_path / "none")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "no such folder" in done.stderr


@pytest.mark.parametrize("script", ["install.sh", "make-bundle.sh"])
def test_shellcheck(script: str) -> None:
    shellcheck = require("shellcheck", "shellcheck")
    done = subprocess.run([shellcheck, "--shell=sh", str(ROOT / "deploy" / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


# -- the package -----------------------------------------------------------------------------

def test_package_builds_without_warnings_and_carries_its_licence(tmp_path: Path) -> None:
    """setuptools' own build steps on a clean copy: every folder of data files is a package it
    knows (no "absent from the packages configuration"), and the licence goes into the metadata."""
    source = copy_source(tmp_path / "src")
    (source / "agent/centre/__pycache__").mkdir()   # as a checkout that has run has them
    meta = tmp_path / "meta"
    meta.mkdir()
    done = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q",
                           "egg_info", "--egg-base", str(meta), "build_py", "--build-lib", str(tmp_path / "lib")],
                          cwd=source, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Warning" not in done.stderr, done.stderr[-3000:]
    assert "License-File: LICENSE" in (meta / "blankspot.egg-info/PKG-INFO").read_text().splitlines()
    built = tmp_path / "lib/agent"
    for data in ("centre/static/map.html", "centre/static/leaflet/leaflet.js", "sim/routes/mahakam.csv"):
        assert (built / data).is_file(), data
    assert not list(built.rglob("__pycache__"))
    assert "MIT" in (ROOT / "LICENSE").read_text() and "the blankspot authors" in (ROOT / "LICENSE").read_text()


# -- the offline bundle ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/make-bundle.sh for this machine's platform (a Pi's, aarch64, differs only in tags),
    with the collector's extras: one bundle for both roles."""
    out = tmp_path_factory.mktemp("dist") / "bundle"
    done = subprocess.run([str(MAKE_BUNDLE), "--arch", "host", "--python", sys.executable,
                           "--extras", "collector,postgres", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return out


def offline_env(tmp_path: Path) -> dict[str, str]:
    """pip with every index unreachable: only the bundle's wheels can be installed."""
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple",
               PIP_NO_CACHE_DIR="1", PIP_RETRIES="0", PIP_TIMEOUT="2", HOME=str(tmp_path))
    for key in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(key, None)
    return env


def test_bundle_holds_everything_install_needs(bundle: Path) -> None:
    wheels = sorted(p.name for p in (bundle / "wheels").glob("*.whl"))
    assert any(w.startswith("blankspot-") for w in wheels)
    for extra in ("h3-", "psycopg-", "psycopg_binary-"):
        assert any(w.startswith(extra) for w in wheels), f"the collector's {extra.rstrip('-')} is in the bundle"
    assert (bundle.parent / "bundle.tar.gz").is_file()
    for needed in ("deploy/install.sh", "deploy/agent.example.toml", "deploy/udev/90-blankspot.rules",
                   "systemd/blankspot-agent.service", "systemd/blankspot-serve.service", "systemd/serve.env.example",
                   "systemd/blankspot-sms-gateway.service", "systemd/sms-gateway.env.example",
                   "docs/install.md", "docs/serve.md", "docs/sms-heartbeat.md", "firmware_configs/quectel-ec25.toml"):
        assert (bundle / needed).is_file(), needed
    listed = [line.split()[1].removeprefix("./") for line in (bundle / "SHA256SUMS").read_text().splitlines()]
    assert sorted(listed) == wheels


def run_booted(root: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``args`` run as on the image once it boots: the root's /opt/blankspot is at /opt/blankspot
    (a mount namespace of its own), and the folder the image was built in has gone (renamed
    for the while), so nothing can still point into it."""
    unshare = require("unshare", "util-linux")
    built = root.with_name(root.name + "-image")
    root.rename(built)
    mount = 'mount -t tmpfs none /opt && mkdir /opt/blankspot && mount --bind "$0/opt/blankspot" /opt/blankspot && exec "$@"'
    try:
        return subprocess.run([unshare, "--mount", "sh", "-c", mount, str(built), *args],
                              capture_output=True, text=True, timeout=120, env=env)
    finally:
        built.rename(root)


def test_offline_bundle_installs_a_working_agent(tmp_path: Path, bundle: Path) -> None:
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} (Debian's python3, with python3-venv) is needed")
    root = pi_root(tmp_path / "pi")
    env = offline_env(tmp_path)
    done = install(root, "--python", SYSTEM_PYTHON, script=bundle / "deploy" / "install.sh", env=env)
    assert "installed blankspot-" in done.stdout
    blankspot = "/opt/blankspot/venv/bin/blankspot"
    version = run_booted(root, [blankspot, "--version"], env)
    assert version.returncode == 0 and version.stdout.startswith("blankspot "), version.stderr[-2000:]
    # The installed config, beside the image (whose /etc the booted command does not see).
    installed = tmp_path / "agent.toml"
    shutil.copy(root / "etc/blankspot/agent.toml", installed)
    check = run_booted(root, [blankspot, "run", "--check", "--config", str(installed)], env)
    assert check.returncode == 2 and "device.id: required" in check.stderr, "the unit is not named yet"
    installed.write_text(installed.read_text().replace('\nid = ""\n', '\nid = "boat-07"\n'))
    check = run_booted(root, [blankspot, "run", "--check", "--config", str(installed)], env)
    assert check.returncode == 0, check.stderr[-2000:]
    # Advice printed on the unit names the example config and documents installed there.
    missing = run_booted(root, [blankspot, "run", "--check", "--config", str(tmp_path / "none.toml")], env)
    example = re.search(r"copy (\S+) there", missing.stderr)
    assert missing.returncode == 2 and example, missing.stderr
    named = run_booted(root, ["/opt/blankspot/venv/bin/python", "-c",
                              "from agent.shared.installed import doc; print(doc('buffer.md'))"], env)
    for path in (example.group(1), named.stdout.strip()):
        assert path.startswith("/opt/blankspot/venv/") and (root / path.lstrip("/")).is_file(), path
    print(f"\noffline install from {len(list((bundle / 'wheels').glob('*.whl')))} wheels: {version.stdout.strip()}; "
          f"{check.stdout.strip()}")

    venv = snapshot(root / "opt/blankspot/venv")
    again = install(root, "--python", SYSTEM_PYTHON, script=bundle / "deploy" / "install.sh", env=env)
    assert "installed blankspot-" not in again.stdout, "an unchanged wheel is not installed again"
    assert snapshot(root / "opt/blankspot/venv") == venv


def check_collector_draws(root: Path, tmp_path: Path, env: dict[str, str]) -> None:
    """The collector installed under ``root`` reads a database with readings into a map, a
    report and an export, and has PostgreSQL's driver, all from /opt/blankspot once booted."""
    db = survey_db(tmp_path / "collector.db", trip_with_tags())
    blankspot = "/opt/blankspot/venv/bin/blankspot"
    out = tmp_path / "drawn"
    out.mkdir()
    for command in (["map", "--out", str(out / "map.html")], ["report"],
                    ["export", "--what", "cells", "--out", str(out / "cells.geojson")]):
        done = run_booted(root, [blankspot, *command, "--db", db], env)
        assert done.returncode == 0, f"{command[0]}: {done.stdout[-1000:]}{done.stderr[-2000:]}"
    assert (out / "map.html").read_text().startswith("<!DOCTYPE html>")
    assert json.loads((out / "cells.geojson").read_text())["features"]
    done = run_booted(root, ["/opt/blankspot/venv/bin/python", "-c", "import psycopg, h3"], env)
    assert done.returncode == 0, done.stderr[-2000:]


def test_offline_bundle_installs_a_collector_that_draws_maps_once_the_image_boots(tmp_path: Path, bundle: Path) -> None:
    root = pi_root(tmp_path / "server", gpio=False)
    env = offline_env(tmp_path)
    done = install(root, "--collector", "--python", SYSTEM_PYTHON, script=bundle / "deploy" / "install.sh", env=env)
    assert re.search(r"install: installed blankspot-\S+ with collector,postgres into /opt/blankspot/venv", done.stdout)
    venv = root / "opt/blankspot/venv"
    built_here = [str(p.relative_to(root)) for p in venv.rglob("*")
                  if p.is_file() and not p.is_symlink() and p.name != "direct_url.json" and str(root).encode() in p.read_bytes()]
    assert built_here == [], "files naming the folder the image was built in"
    check_collector_draws(root, tmp_path, env)

    again = install(root, "--collector", "--python", SYSTEM_PYTHON, script=bundle / "deploy" / "install.sh", env=env)
    assert "installed blankspot-" not in again.stdout, "an unchanged wheel with its extras is not installed again"


def test_collector_installed_from_a_checkout_draws_maps_once_the_image_boots(tmp_path: Path) -> None:
    """install.sh --collector run from a checkout: pip takes blankspot and its extras from the
    package index this machine is set up with."""
    checkout = copy_source(tmp_path / "checkout")
    root = pi_root(tmp_path / "server", gpio=False)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = install(root, "--collector", "--python", SYSTEM_PYTHON, script=checkout / "deploy/install.sh", env=env)
    assert f"install: installed blankspot[collector,postgres] from {checkout} into /opt/blankspot/venv" in done.stdout
    check_collector_draws(root, tmp_path, env)


def test_a_bundle_without_the_collectors_extras_is_named_as_the_reason(tmp_path: Path, bundle: Path) -> None:
    agent_only = tmp_path / "bundle"
    shutil.copytree(bundle, agent_only)
    for wheel in (agent_only / "wheels").glob("h3-*.whl"):
        wheel.unlink()
    root = pi_root(tmp_path / "server", gpio=False)
    done = install(root, "--collector", "--python", SYSTEM_PYTHON, script=agent_only / "deploy" / "install.sh",
                   env=offline_env(tmp_path), expect=1)
    assert done.stderr.splitlines()[-1].endswith(
        "do not hold everything blankspot[collector,postgres] needs: make the bundle with "
        "deploy/make-bundle.sh --extras collector,postgres"), done.stderr


# -- Ansible ---------------------------------------------------------------------------------

def test_playbook_syntax() -> None:
    playbook = require("ansible-playbook", "ansible-core")
    done = subprocess.run([playbook, "--syntax-check", "-i", str(ANSIBLE / "inventory.example.yml"),
                           str(ANSIBLE / "site.yml")], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    assert done.returncode == 0, done.stdout + done.stderr


def write_inventory(path: Path, tmp_path: Path, bundle: Path, credentials: Path) -> None:
    inventory = f"""
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: {SYSTEM_PYTHON}
    ansible_become: false
    blankspot_broker_host: localhost
    blankspot_bundle: {bundle.parent / 'bundle.tar.gz'}
    blankspot_credentials: {credentials}
    blankspot_install_args: [--no-pip]
  children:
    broker:
      hosts:
        central:
          blankspot_root: {tmp_path / 'central'}
          blankspot_install_args: [--python, {SYSTEM_PYTHON}]
    collectors:
      hosts:
        central:
          blankspot_sms_gateway_port: /dev/serial/by-id/usb-Quectel_EC25-if02-port0
    units:
      vars:
        blankspot_agent_settings: {{log: {{level: info}}}}
      hosts:
        boat-07:
          blankspot_root: {tmp_path / 'boat-07'}
        desa-3:
          blankspot_root: {tmp_path / 'desa-3'}
          blankspot_device_id: desa-muara-kaman
          blankspot_agent_settings: {{log: {{level: debug}}, source: {{interval: "30s"}}}}
"""
    path.write_text(inventory)


def run_playbook(inventory: Path, tmp_path: Path) -> str:
    playbook = require("ansible-playbook", "ansible-core")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_HOME=str(tmp_path / "ansible-home"),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_RETRY_FILES_ENABLED="0")
    done = subprocess.run([playbook, "-i", str(inventory), str(ANSIBLE / "site.yml")], capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    return done.stdout


def recap(output: str) -> dict[str, dict[str, int]]:
    return {m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
            for m in re.finditer(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE)}


def test_playbook_provisions_units_and_broker(tmp_path: Path, bundle: Path) -> None:
    require_mosquitto()
    require("mosquitto_passwd", "mosquitto")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    ca = TestCA(credentials, "fleet")
    server = ca.issue("broker", server=True)
    shutil.copy(ca.cert_path, credentials / "ca.crt")
    shutil.copy(server.cert, credentials / "broker.crt")
    shutil.copy(server.key, credentials / "broker.key")
    for name in ("central", "boat-07", "desa-3"):
        pi_root(tmp_path / name)
    inventory = tmp_path / "inventory.yml"
    write_inventory(inventory, tmp_path, bundle, credentials)

    first = recap(run_playbook(inventory, tmp_path))
    assert set(first) == {"central", "boat-07", "desa-3"} and all(r["failed"] == 0 for r in first.values())

    # The collector, installed from the bundle with its extras, draws a map once booted.
    check_collector_draws(tmp_path / "central", tmp_path, offline_env(tmp_path))

    # Each unit: its own id, account and password; TLS with the fleet CA; settings merged.
    for host, device, level in (("boat-07", "boat-07", "info"), ("desa-3", "desa-muara-kaman", "debug")):
        etc = tmp_path / host / "etc/blankspot"
        config = parse_config((etc / "agent.toml").read_text(), etc / "agent.toml")
        assert config.device_id == device
        assert (config.uplink.username, config.uplink.host, config.uplink.port, config.uplink.tls) == \
            (device, "localhost", 8883, True)
        assert str(config.uplink.password_file) == "/etc/blankspot/broker.password"
        assert str(config.uplink.ca_file) == "/etc/blankspot/ca.crt"
        assert config.log.level == level
        password = (etc / "broker.password").read_text().strip()
        assert password == (credentials / f"{device}.password").read_text().strip() and len(password) == 32
        assert (etc / "ca.crt").read_bytes() == (credentials / "ca.crt").read_bytes()
        gid = group_members(tmp_path / host)["blankspot"][0]
        assert snapshot(tmp_path / host)["etc/blankspot/broker.password"][:3] == ("-rw-r-----", 0, gid)
    assert parse_config((tmp_path / "desa-3/etc/blankspot/agent.toml").read_text()).source.interval == 30
    passwords = {(credentials / f"{d}.password").read_text().strip() for d in ("boat-07", "desa-muara-kaman")}
    assert len(passwords) == 2, "every unit has its own password"

    # The broker: hashed accounts for both units and the collector; the collector's settings.
    broker_etc = tmp_path / "central/etc/mosquitto/blankspot"
    hashed = dict(line.split(":", 1) for line in (broker_etc / "passwd").read_text().splitlines())
    assert set(hashed) == {"boat-07", "desa-muara-kaman", "collector"}
    assert all(h.startswith("$7$") for h in hashed.values())
    env_file = (tmp_path / "central/etc/blankspot/collector.env").read_text()
    assert "BLANKSPOT_BROKER=mqtt://127.0.0.1:1883" in env_file and "--username collector" in env_file

    # Heartbeat keys: each unit's own, the collector host holding a copy of every one, where
    # the SMS gateway (enabled: its modem is named) reads them as the group it runs as.
    central = tmp_path / "central"
    gateway = unit_settings(UNITS / "blankspot-sms-gateway.service")["Service"]
    gid = group_members(central)[one(gateway, "Group")][0]
    tree = snapshot(central)
    assert tree["etc/blankspot/heartbeat-keys"][:3] == ("drwxr-x---", 0, gid)
    keys = set()
    for host, device in (("boat-07", "boat-07"), ("desa-3", "desa-muara-kaman")):
        key = (tmp_path / host / "etc/blankspot/heartbeat.key").read_text()
        assert len(read_key(key)) == 32 and re.fullmatch(r"[0-9a-f]{64}\n", key)
        assert key == (central / f"etc/blankspot/heartbeat-keys/{device}.key").read_text() == \
            (credentials / f"{device}.heartbeat.key").read_text().strip() + "\n"
        assert tree[f"etc/blankspot/heartbeat-keys/{device}.key"][:3] == ("-rw-r-----", 0, gid)
        keys.add(key)
    assert len(keys) == 2
    assert sorted(p.name for p in (central / "etc/blankspot/heartbeat-keys").iterdir()) == \
        ["boat-07.key", "desa-muara-kaman.key"]
    assert (central / "etc/systemd/system/blankspot-sms-gateway.service").is_file()
    wants = central / "etc/systemd/system/multi-user.target.wants/blankspot-sms-gateway.service"
    assert os.readlink(wants) == "/etc/systemd/system/blankspot-sms-gateway.service", "enabled: its modem is named"
    assert tree["etc/blankspot/sms-gateway.env"][:3] == ("-rw-------", 0, 0)
    sms_env = dict(line.split("=", 1) for line in (central / "etc/blankspot/sms-gateway.env").read_text().splitlines()
                   if line and not line.startswith("#"))
    collector_env = dict(line.split("=", 1) for line in env_file.splitlines() if line and not line.startswith("#"))
    assert sms_env == {"BLANKSPOT_SMS_PORT": "/dev/serial/by-id/usb-Quectel_EC25-if02-port0",
                       "BLANKSPOT_DB": collector_env["BLANKSPOT_DB"],
                       "BLANKSPOT_SMS_GATEWAY_ARGS": "--keys-dir /etc/blankspot/heartbeat-keys --list-every 60s"}

    # Mosquitto from what the playbook wrote lets boat-07 in with its password, and not elsewhere.
    conf = (tmp_path / "central/etc/mosquitto/conf.d/blankspot.conf").read_text()
    tls_port, local_port = free_port(), free_port()
    broker = LocalBroker("mosquitto", port=tls_port, workdir=tmp_path / "mosquitto-run",
                         listener=shipped_config(broker_etc, tls_port, local_port, text=conf)).start()
    central = CentralBroker(broker, tls_port, local_port, broker_etc / "ca.crt")
    clients: list[Client] = []
    try:
        collector = Client(central, "collector",
                           (tmp_path / "central/etc/blankspot/collector.password").read_text().strip(), tls=False)
        clients.append(collector)
        assert collector.connect() == "Success"
        assert collector.subscribe("blankspot/v1/#") == ["Granted QoS 1"]
        unit = Client(central, "boat-07", (tmp_path / "boat-07/etc/blankspot/broker.password").read_text().strip())
        clients.append(unit)
        assert unit.connect() == "Success"
        assert unit.publish("blankspot/v1/boat-07/readings", b"hello") == "Success"
        assert unit.publish("blankspot/v1/desa-muara-kaman/readings") == "Not authorized"
        assert unit.publish("blankspot/v1/boat-07/confirm") == "Not authorized", "only collectors confirm"
        assert wait(lambda: ("blankspot/v1/boat-07/readings", b"hello") in collector.messages)
    finally:
        for client in clients:
            client.close()
        broker.kill()

    second = recap(run_playbook(inventory, tmp_path))
    print(f"\nplaybook, first run: {first}\nsecond run: {second}")
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in second.values()), second
