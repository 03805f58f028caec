"""The central broker's shipped config (deploy/mosquitto/), run by a real Mosquitto.

The test takes deploy/mosquitto/blankspot.conf and acl as they are, changes only the
folder of the files they name and the port numbers, makes a throwaway CA, broker
certificate and password file (with the real mosquitto_passwd), and starts Mosquitto on it.

Required behaviour:
- a unit logs in over TLS with its own account and publishes under blankspot/v1/<its name>/;
- it cannot publish under another unit's name (MQTT 5 PUBACK: not authorized), nor read
  other units' readings;
- the collector account receives every unit's readings, also through a shared
  subscription ($share/<group>/...) that splits them among several collectors;
- a wrong password, an unknown account and an anonymous client are turned away;
- plain MQTT is not spoken on the TLS port;
- no packet over the shipped limit (max_packet_size) gets in, while a unit's largest batch
  does; the limit sits between what a unit sends and what the collector accepts, and
  docs/collector.md recommends the same figure;
- a unit reads its own confirmation (<prefix>/<device>/confirm, retained, published by the
  collectors) and no other unit's, and cannot write its own: only the collector account
  writes confirmations, for any unit;
- after a restart the broker still has retained confirmations and a collector's queued
  messages, but not its shared subscription: until the collector subscribes again a unit's
  batch is answered "No matching subscribers";
- the agent itself (password_file, TLS) delivers its readings through this broker;
- the collector, started the way systemd/blankspot-collector.service starts it (its
  ExecStart, with collector.env.example's options), stores every reading of a unit and
  tells systemd READY=1, WATCHDOG=1 and STOPPING=1 as its Type=notify unit expects.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.unit.config import Config, read_password
from agent.shared.protocol import MAX_BATCH_BYTES
from agent.sim.broker import LocalBroker, free_port
from agent.unit.uplink import MAX_MESSAGE_BYTES, MqttUplink
from tests.support.broker import require_mosquitto
from tests.support.central_broker import PASSWORDS, ROOT, SHIPPED, CentralBroker, Client, shipped_config, wait
from tests.support.mqtt_sink import ReadingSink
from tests.support.systemd import FakeSystemd
from tests.support.tls import TestCA, Unit, unit_config

PREFIX = "blankspot/v1"


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory):
    require_mosquitto()
    passwd_tool = shutil.which("mosquitto_passwd")
    if passwd_tool is None:
        pytest.fail("mosquitto_passwd is not installed; the test command installs it (apt-get install mosquitto)")
    folder = tmp_path_factory.mktemp("central")
    ca = TestCA(folder, "fleet")
    server = ca.issue("broker", server=True)
    shutil.copy(ca.cert_path, folder / "ca.crt")
    shutil.copy(server.cert, folder / "broker.crt")
    shutil.copy(server.key, folder / "broker.key")
    shutil.copy(SHIPPED / "acl", folder / "acl")
    for index, (user, password) in enumerate(PASSWORDS.items()):
        create = ["-c"] if index == 0 else []
        subprocess.run([passwd_tool, *create, "-b", str(folder / "passwd"), user, password], check=True,
                       capture_output=True)
    assert "river-mahakam-1" not in (folder / "passwd").read_text(), "passwords are stored hashed"
    tls_port, local_port = free_port(), free_port()
    # Debian's mosquitto.conf turns persistence on and names its folder; here the test's.
    broker = LocalBroker("mosquitto", port=tls_port, workdir=folder / "run",
                         listener=shipped_config(folder, tls_port, local_port),
                         extra_config=f"persistence true\npersistence_location {folder}/\n").start()
    yield CentralBroker(broker, tls_port, local_port, folder / "ca.crt")
    broker.kill()


@pytest.fixture
def clients():
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def connected(clients: list[Client], central: CentralBroker, username: str, **kwargs) -> Client:
    client = Client(central, username, PASSWORDS[username], **kwargs)
    clients.append(client)
    assert client.connect() == "Success", f"{username} could not log in"
    return client


# -- the tests -------------------------------------------------------------------------------

def test_unit_publishes_under_its_own_name_and_the_collector_receives_it(central: CentralBroker, clients) -> None:
    collector = connected(clients, central, "collector")
    assert collector.subscribe(f"{PREFIX}/#") == ["Granted QoS 1"]
    unit = connected(clients, central, "unit-1")
    assert unit.publish(f"{PREFIX}/unit-1/readings", b"batch-1") == "Success"
    assert wait(lambda: (f"{PREFIX}/unit-1/readings", b"batch-1") in collector.messages), collector.messages


def test_unit_cannot_publish_under_another_units_name(central: CentralBroker, clients) -> None:
    collector = connected(clients, central, "collector")
    collector.subscribe(f"{PREFIX}/#")
    unit = connected(clients, central, "unit-1")
    refused = {topic: unit.publish(topic, b"forged") for topic in
               (f"{PREFIX}/unit-2/readings", f"{PREFIX}/unit-2/status", f"{PREFIX}/unit-10/readings",
                "blankspot/v2/unit-1/readings", "elsewhere")}
    # a marker published after the forgeries: once it arrives, nothing forged is still on its way
    assert unit.publish(f"{PREFIX}/unit-1/status", b"marker") == "Success"
    assert wait(lambda: (f"{PREFIX}/unit-1/status", b"marker") in collector.messages)
    print(f"\nunit-1 publishing elsewhere: {refused}")
    assert set(refused.values()) == {"Not authorized"}, refused
    assert not [m for m in collector.messages if m[1] == b"forged"]


def test_unit_cannot_read_other_units(central: CentralBroker, clients) -> None:
    spy = connected(clients, central, "unit-1")
    granted = spy.subscribe(f"{PREFIX}/#")
    other = connected(clients, central, "unit-2")
    assert other.publish(f"{PREFIX}/unit-2/readings", b"private") == "Success"
    time.sleep(0.5)  # a window on the real broker in which a message the ACL let through would arrive
    print(f"\nunit-1 subscribing to {PREFIX}/#: {granted}; messages received: {len(spy.messages)}")
    assert spy.messages == []


def test_collectors_share_the_readings_through_a_shared_subscription(central: CentralBroker, clients) -> None:
    group = [connected(clients, central, "collector", client_id=f"collector-{n}") for n in (1, 2)]
    for member in group:
        assert member.subscribe(f"$share/collectors/{PREFIX}/+/readings") == ["Granted QoS 1"]
    unit = connected(clients, central, "unit-1")
    sent = [f"batch-{n}".encode() for n in range(40)]
    for payload in sent:
        assert unit.publish(f"{PREFIX}/unit-1/readings", payload) == "Success"
    assert wait(lambda: sum(len(m.messages) for m in group) >= len(sent))
    received = [p for member in group for _, p in member.messages]
    shares = [len(member.messages) for member in group]
    print(f"\n{len(sent)} batches over a shared subscription: collectors took {shares}")
    assert sorted(received) == sorted(sent), "each batch exactly once across the group"
    assert all(share > 0 for share in shares), "the load is split"


@pytest.mark.parametrize("username, password", [
    ("unit-1", "wrong password"),
    ("unit-1", PASSWORDS["unit-2"]),     # another unit's password
    ("unit-9", "river-mahakam-1"),       # no such account
    ("unit-1", None),
    (None, None),                        # anonymous
])
def test_bad_logins_are_refused(central: CentralBroker, clients, username, password) -> None:
    client = Client(central, username, password)
    clients.append(client)
    # Mosquitto 2.0 answers every failed login with "Not authorized" (0x87) under MQTT 5.
    assert client.connect() == "Not authorized"


def test_local_listener_also_needs_an_account(central: CentralBroker, clients) -> None:
    assert connected(clients, central, "collector", tls=False).subscribe(f"{PREFIX}/#") == ["Granted QoS 1"]
    anonymous = Client(central, None, tls=False)
    clients.append(anonymous)
    assert anonymous.connect() == "Not authorized"


def test_tls_port_does_not_speak_plain_mqtt(central: CentralBroker, clients) -> None:
    plain = Client(central, "unit-1", PASSWORDS["unit-1"], tls=False)
    plain.port = central.tls_port
    clients.append(plain)
    assert plain.connect(timeout=5) != "Success"


def shipped_setting(name: str) -> str:
    """The value of option ``name`` in deploy/mosquitto/blankspot.conf, which gives it once."""
    values = [line.split(None, 1)[1].strip() for line in (SHIPPED / "blankspot.conf").read_text().splitlines()
              if line.split(None, 1)[:1] == [name]]
    assert len(values) == 1, f"deploy/mosquitto/blankspot.conf gives {name} {len(values)} times"
    return values[0]


def test_shipped_config_starts_without_a_warning(central: CentralBroker) -> None:
    """Nothing deprecated, nothing Mosquitto 2 would rather have said otherwise."""
    lines: list[str] = []
    for path in (central.broker.workdir / "mosquitto.out", central.broker.log_path):
        for line in path.read_text(errors="replace").splitlines():
            if " running" in line:
                break  # the first start only: later lines are about the clients
            lines.append(line)
    complaints = [line for line in lines if re.search(r"warning|error|note:|deprecated|recommended", line, re.I)
                  # the test runs Mosquitto as root (user root), which Debian's service never does
                  and "should not be run as root" not in line]
    assert any(" starting" in line for line in lines) and complaints == [], "\n".join(lines)


# A batch's payload is its readings (at most MAX_MESSAGE_BYTES of them) in a short envelope.
ENVELOPE_BYTES = 1000


def test_packet_limit_sits_between_a_units_batch_and_what_the_collector_accepts() -> None:
    limit = int(shipped_setting("max_packet_size"))
    print(f"\nunit batches up to {MAX_MESSAGE_BYTES:,} bytes < broker limit {limit:,} < collector limit {MAX_BATCH_BYTES:,}")
    assert MAX_MESSAGE_BYTES + ENVELOPE_BYTES < limit < MAX_BATCH_BYTES
    assert not [line for line in (SHIPPED / "blankspot.conf").read_text().splitlines()
                if line.startswith("message_size_limit")], "deprecated in Mosquitto 2: max_packet_size"
    # The collector's documentation recommends what the sample sets.
    collector_doc = (ROOT / "docs" / "collector.md").read_text()
    for name in ("max_packet_size", "max_queued_messages", "max_queued_bytes", "autosave_interval"):
        assert f"{name} {shipped_setting(name)}" in collector_doc, f"docs/collector.md does not recommend {name}"


def test_a_packet_over_the_limit_ends_the_connection_while_a_units_largest_batch_passes(
        central: CentralBroker, clients) -> None:
    limit = int(shipped_setting("max_packet_size"))
    collector = connected(clients, central, "collector")
    assert collector.subscribe(f"{PREFIX}/+/readings") == ["Granted QoS 1"]
    unit = connected(clients, central, "unit-1")
    assert unit.connack_properties.MaximumPacketSize == limit, "MQTT 5 clients are told the limit"
    largest = b"x" * (MAX_MESSAGE_BYTES + ENVELOPE_BYTES)
    assert unit.publish(f"{PREFIX}/unit-1/readings", largest) == "Success"
    assert wait(lambda: (f"{PREFIX}/unit-1/readings", largest) in collector.messages, timeout=10)
    unit.client.publish(f"{PREFIX}/unit-1/readings", b"y" * limit, qos=1)
    # Mosquitto sends DISCONNECT "Packet too large" and closes; over TLS the client may only
    # see the connection end.  (paho would send the packet again at every reconnection.)
    assert wait(lambda: unit.disconnects != [], timeout=10), "the connection goes on"
    unit.close()
    time.sleep(0.5)  # a window on the real broker in which an oversized packet passed on would arrive
    sizes = sorted({len(payload) for _, payload in collector.messages})
    print(f"\n{len(largest):,} bytes: delivered; {limit:,} bytes: connection ended ({unit.disconnects[0]}); "
          f"the collector received sizes {sizes}")
    assert sizes == [len(largest)]


def confirm_topic(device: str) -> str:
    return f"{PREFIX}/{device}/confirm"


# A retained message is kept even when nobody is subscribed yet; MQTT 5 then answers 0x10
# "No matching subscribers", a success like 0x00.
KEPT = {"Success", "No matching subscribers"}


def confirmation(device: str, marker: str) -> bytes:
    """A stand-in for a blankspot.confirm/1 payload: the broker does not look inside."""
    return f"confirmation for {device}: {marker}".encode()


@pytest.fixture
def confirmations(central: CentralBroker):
    """Topics a test left a retained confirmation on; emptied afterwards, so that the retained
    message does not reach the next test's subscribers."""
    topics: list[str] = []
    yield topics
    cleaner = Client(central, "collector", PASSWORDS["collector"])
    if cleaner.connect() == "Success":
        for topic in topics:
            cleaner.publish(topic, b"", retain=True)
        cleaner.close()


def test_unit_reads_its_own_confirmation_and_no_other(central: CentralBroker, clients, confirmations) -> None:
    collector = connected(clients, central, "collector")
    for device in ("unit-1", "unit-2"):
        confirmations.append(confirm_topic(device))
        assert collector.publish(confirm_topic(device), confirmation(device, "retained"), retain=True) in KEPT
    unit = connected(clients, central, "unit-1")
    # Mosquitto grants every subscription; the ACL then decides which messages reach it.
    granted = {f: unit.subscribe(f) for f in (confirm_topic("unit-1"), confirm_topic("unit-2"), f"{PREFIX}/+/confirm")}
    assert wait(lambda: (confirm_topic("unit-1"), confirmation("unit-1", "retained")) in unit.retained)
    # Live ones too: unit-2's first, so that once unit-1's is in, unit-2's would have been.
    assert collector.publish(confirm_topic("unit-2"), confirmation("unit-2", "live"), retain=True) in KEPT
    assert collector.publish(confirm_topic("unit-1"), confirmation("unit-1", "live"), retain=True) in KEPT
    assert wait(lambda: (confirm_topic("unit-1"), confirmation("unit-1", "live")) in unit.messages)
    time.sleep(0.3)  # and a window on the real broker: MQTT orders messages per publisher, not across them
    print(f"\nunit-1 subscribing to {granted}: received {sorted(set(unit.messages))}")
    assert {topic for topic, _ in unit.messages} == {confirm_topic("unit-1")}


def test_collector_writes_and_reads_every_units_confirmation(central: CentralBroker, clients,
                                                              confirmations) -> None:
    collector = connected(clients, central, "collector")
    # boat-07 has no account yet: its confirmation waits, retained, for its first connection.
    devices = ("unit-1", "unit-2", "boat-07")
    for device in devices:
        confirmations.append(confirm_topic(device))
        assert collector.publish(confirm_topic(device), confirmation(device, "stored"), retain=True) in KEPT
    other = connected(clients, central, "collector", client_id="collector-2")
    assert other.subscribe(f"{PREFIX}/+/confirm") == ["Granted QoS 1"]
    expected = sorted((confirm_topic(d), confirmation(d, "stored")) for d in devices)
    assert wait(lambda: sorted(other.retained) == expected), other.retained
    unit = connected(clients, central, "unit-2")
    unit.subscribe(confirm_topic("unit-2"))
    assert wait(lambda: unit.retained == [(confirm_topic("unit-2"), confirmation("unit-2", "stored"))]), unit.retained


def test_unit_cannot_write_a_confirmation(central: CentralBroker, clients, confirmations) -> None:
    """Not even its own: a unit must never be able to say the centre holds its readings."""
    collector = connected(clients, central, "collector")
    collector.subscribe(f"{PREFIX}/#")
    unit = connected(clients, central, "unit-1")
    confirmations.extend([confirm_topic("unit-1"), confirm_topic("unit-2")])  # should one get through
    refused = [unit.publish(confirm_topic("unit-1"), b"forged", retain=True),
               unit.publish(confirm_topic("unit-1"), b"forged"),
               unit.publish(confirm_topic("unit-2"), b"forged", retain=True)]
    # What a unit does write (nobody subscribes to doctor's check).
    allowed = {topic: unit.publish(f"{PREFIX}/unit-1/{topic}", b"marker") for topic in ("readings", "status", "doctor")}
    assert wait(lambda: (f"{PREFIX}/unit-1/status", b"marker") in collector.messages)
    reader = connected(clients, central, "unit-1", client_id="unit-1-reader")
    reader.subscribe(confirm_topic("unit-1"))
    time.sleep(0.3)  # a window on the real broker in which a forged confirmation it kept would arrive
    print(f"\nunit-1 writing confirmations: {refused}; its own topics: {allowed}")
    assert set(refused) == {"Not authorized"}
    assert set(allowed.values()) <= KEPT, allowed
    assert not [m for m in collector.messages + reader.messages if m[1] == b"forged"]


class PasswordUnit(Unit):
    """The TLS unit of tests/support/tls.py, with the password read from uplink.password_file as the agent does."""

    def __init__(self, config: Config, readings: int) -> None:
        super().__init__(config, readings)
        self.uplink = MqttUplink(config.uplink, self.device, self.buffer, client_id=config.client_id,
                                 password=read_password(config.uplink))


def test_the_agent_delivers_through_the_central_broker(tmp_path: Path, central: CentralBroker) -> None:
    """A unit configured the way the fleet playbook configures one: TLS, the fleet CA,
    username = device id, password in a file beside the config."""
    password_file = tmp_path / "broker.password"
    password_file.write_text(PASSWORDS["unit-2"] + "\n")
    sink = ReadingSink(central.local_port, client_id="collector-agent-test", persistent=False)
    sink.client.username_pw_set("collector", PASSWORDS["collector"])
    sink.start()
    try:
        config = unit_config(tmp_path, central.tls_port, "unit-2", "unit-2", ca_file=central.ca,
                             username="unit-2", password_file=password_file, host="localhost")
        with PasswordUnit(config, readings=30) as unit:
            arrived = sink.wait_for_seqs("unit-2", unit.seqs, timeout=15)
            drained = unit.uplink.wait_until(lambda: unit.buffer.pending_count() == 0, timeout=5)
            print(f"\nagent unit-2 via TLS + password: {len(sink.unique('unit-2'))}/{len(unit.seqs)} readings at "
                  f"the collector, {unit.delivered()} marked delivered")
            assert arrived and drained
            assert unit.uplink.stats.batches_refused == 0
    finally:
        sink.stop()
    assert sink.bad == []


def exec_start(unit: Path, environment: dict[str, str]) -> list[str]:
    """A unit's ExecStart as systemd expands it: ``${VAR}`` is one word, ``$VAR`` is split at spaces."""
    line = next(l for l in unit.read_text().splitlines() if l.startswith("ExecStart="))[len("ExecStart="):]
    words: list[str] = []
    for word in line.split():
        braced = re.fullmatch(r"\$\{(\w+)\}", word)
        bare = re.fullmatch(r"\$(\w+)", word)
        if braced:
            words.append(environment[braced.group(1)])
        elif bare:
            words.extend(environment[bare.group(1)].split())
        else:
            words.append(word)
    return words


def test_collector_service_stores_what_units_send(tmp_path: Path, central: CentralBroker) -> None:
    """The collector's unit command line with the example environment file's options, the
    broker URL and database pointed at this test: every reading of a unit is stored once."""
    env_file = ROOT / "systemd" / "collector.env.example"
    settings = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#"))
    password_file = tmp_path / "collector.password"
    password_file.write_text(PASSWORDS["collector"] + "\n")
    database = tmp_path / "collector.db"
    settings["BLANKSPOT_BROKER"] = settings["BLANKSPOT_BROKER"].replace("127.0.0.1:1883", f"127.0.0.1:{central.local_port}")
    settings["BLANKSPOT_DB"] = f"sqlite://{database}"
    settings["BLANKSPOT_COLLECT_ARGS"] = settings["BLANKSPOT_COLLECT_ARGS"].replace(
        "/etc/blankspot/collector.password", str(password_file))
    command = exec_start(ROOT / "systemd" / "blankspot-collector.service", settings)
    assert command[0] == "/opt/blankspot/venv/bin/blankspot"
    command = [sys.executable, "-m", "agent", *command[1:], "--client-id", "collector-service-test"]
    log = tmp_path / "collector.log"
    # systemd's side of Type=notify with WatchdogSec=, as a socket of our own.
    systemd = FakeSystemd(str(tmp_path / "notify.sock"))
    env = dict(os.environ, NOTIFY_SOCKET=systemd.env_value, WATCHDOG_USEC="1000000")
    env.pop("WATCHDOG_PID", None)
    with log.open("wb") as out:
        collector = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    password = tmp_path / "unit.password"
    password.write_text(PASSWORDS["unit-1"] + "\n")
    stored: set[int] = set()
    try:
        # Until its first subscription the broker has nowhere to keep the collector's share.
        assert wait(lambda: "subscribed to" in log.read_text(errors="replace") or collector.poll() is not None,
                    timeout=20) and collector.poll() is None, log.read_text(errors="replace")[-3000:]
        config = unit_config(tmp_path, central.tls_port, "unit-1", "unit-1", ca_file=central.ca,
                             username="unit-1", password_file=password, host="localhost")
        with PasswordUnit(config, readings=40) as unit:
            assert unit.uplink.wait_until(lambda: unit.buffer.pending_count() == 0, timeout=15)
            expected = unit.seqs
        from agent.centre.store import open_store

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and stored != expected:
            if database.exists():
                with open_store(f"sqlite://{database}") as store:
                    stored = {r.seq for r in store.iter_readings(device="unit-1")}
            time.sleep(0.2)
        # Fed while it waits too (idle is not hung): a few pings whatever how fast it stored.
        wait(lambda: len(systemd.pings()) >= 2, timeout=10)
    finally:
        collector.send_signal(signal.SIGTERM)
        try:
            code = collector.wait(20)
        except subprocess.TimeoutExpired:
            collector.kill()
            code = collector.wait()
        systemd.close()
    output = log.read_text(errors="replace")
    said = [m for _, m in systemd.messages]
    print(f"\n{shlex.join(command[3:])}\nstored {len(stored)}/{len(expected)} readings; exit {code}; "
          f"told systemd: {len(said)} messages, {len(systemd.pings())} watchdog pings")
    assert stored == expected, output[-3000:]
    assert code == 0, output[-3000:]
    # Type=notify: READY=1 once subscribed, WATCHDOG=1 while storing, STOPPING=1 on SIGTERM.
    assert any(m.startswith("READY=1") for m in said), said
    assert len(systemd.pings()) >= 2, said
    assert any(m.startswith("STOPPING=1") for m in said), said


def test_restart_keeps_confirmations_and_queues_but_not_shared_subscriptions(central: CentralBroker, clients,
                                                                             confirmations) -> None:
    """What docs/collector.md says of a broker restart (systemctl restart, apt upgrade): the
    retained confirmations and a collector's queued messages are kept (SIGTERM saves them),
    but Mosquitto 2.0 forgets shared subscriptions, so until the collector is back a unit's
    batch finds no subscriber, and the unit keeps it."""
    readings = f"{PREFIX}/unit-1/readings"
    group = f"$share/restart-test/{PREFIX}/+/readings"

    def collector_session() -> Client:
        client = Client(central, "collector", PASSWORDS["collector"], tls=False, client_id="collector-restart-test")
        clients.append(client)
        assert client.connect(session_expiry=600) == "Success"
        return client

    collector = collector_session()
    assert collector.subscribe(group) == ["Granted QoS 1"]
    confirmations.append(confirm_topic("unit-1"))
    assert collector.publish(confirm_topic("unit-1"), confirmation("unit-1", "before the restart"), retain=True) in KEPT
    collector.close()
    unit = connected(clients, central, "unit-1")
    assert unit.publish(readings, b"queued for the collector") == "Success"
    unit.close()

    central.broker.restart()

    unit = connected(clients, central, "unit-1")
    before = unit.publish(readings, b"sent before the collector is back")
    assert unit.subscribe(confirm_topic("unit-1")) == ["Granted QoS 1"]
    assert wait(lambda: (confirm_topic("unit-1"), confirmation("unit-1", "before the restart")) in unit.retained)
    collector = collector_session()
    assert collector.session_present, "the collector's session survived the restart"
    assert wait(lambda: (readings, b"queued for the collector") in collector.messages)
    assert collector.subscribe(group) == ["Granted QoS 1"]
    after = unit.publish(readings, b"sent after the collector is back")
    assert wait(lambda: (readings, b"sent after the collector is back") in collector.messages)
    collector.client.unsubscribe(group)
    print(f"\nafter a restart: a batch before the collector resubscribed: {before}; after: {after}")
    assert before == "No matching subscribers"
    assert after == "Success"
