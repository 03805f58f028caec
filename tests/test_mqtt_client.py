"""The MQTT client every part of blankspot makes (agent.shared.mqtt), against a real Mosquitto.

Required behaviour:
- a persistent MQTT 3.1.1 client keeps its session across a reconnect: a QoS 1 message
  published while it was away arrives when it comes back; a clean one starts afresh;
- an MQTT 5 client keeps its session when it asks for one at connect (``clean_start=False``
  and a Session Expiry Interval, as the uplink and the collector do), and only then;
- the login is sent: the right password is accepted, a wrong one or none is refused;
- over TLS the broker's certificate is required: one from the trusted CA is accepted, one
  from another CA is refused, and so is a private CA's when no CA file is given (the
  system's CAs never signed it);
- without TLS the certificate files are not used.
"""
from __future__ import annotations

import queue
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.shared.mqtt import new_client, secure
from agent.sim.broker import LocalBroker, free_port
from tests.support.broker import password_broker, require_mosquitto  # noqa: F401  (password_broker: a fixture)
from tests.support.tls import Pki, pki, tls_listener  # noqa: F401  (pki: a fixture)

TOPIC = "blankspot/test/session"
WAIT = 10.0


@dataclass
class Connection:
    """A client from :func:`new_client`, looping, with what the broker sent it."""

    client: mqtt.Client
    connacks: queue.Queue = field(default_factory=queue.Queue)
    subacks: queue.Queue = field(default_factory=queue.Queue)
    messages: queue.Queue = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self.client.on_connect = lambda c, u, flags, rc, props: self.connacks.put(rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.put(rcs)
        self.client.on_message = lambda c, u, message: self.messages.put(message.payload)

    def connect(self, port: int, **options: Any) -> mqtt.ReasonCode:
        """The broker's answer to CONNECT."""
        self.client.connect("127.0.0.1", port, keepalive=10, **options)
        self.client.loop_start()
        return self.connacks.get(timeout=WAIT)

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        assert not any(rc.is_failure for rc in self.subacks.get(timeout=WAIT))

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(WAIT)

    def until(self, payload: bytes) -> list[bytes]:
        """Every message received up to and including ``payload``."""
        received: list[bytes] = []
        while not received or received[-1] != payload:
            received.append(self.messages.get(timeout=WAIT))
        return received

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def session_expiry(seconds: int) -> dict[str, Any]:
    """The connect options of an MQTT 5 client that asks for its session to be kept."""
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = seconds
    return {"clean_start": False, "properties": properties}


def received_after_return(port: int, protocol: str, persistent: bool, **options: Any) -> list[bytes]:
    """A client subscribes and leaves; a QoS 1 message is published; the client comes back
    as a fresh client with the same id (as the uplink does), subscribes again, and a marker
    follows.  What it received, in order: the broker sends a kept session's queue first."""
    publisher = Connection(new_client("test-publisher", protocol=protocol, persistent=False))
    assert not publisher.connect(port).is_failure
    try:
        away = Connection(new_client("test-returning", protocol=protocol, persistent=persistent))
        assert not away.connect(port, **options).is_failure
        away.subscribe(TOPIC)
        away.close()
        publisher.publish(TOPIC, b"while away")
        back = Connection(new_client("test-returning", protocol=protocol, persistent=persistent))
        assert not back.connect(port, **options).is_failure
        try:
            back.subscribe(TOPIC)
            publisher.publish(TOPIC, b"marker")
            return back.until(b"marker")
        finally:
            back.close()
    finally:
        publisher.close()


# -- the session -------------------------------------------------------------------------------

def test_a_persistent_3_1_1_client_gets_what_was_published_while_it_was_away(broker: LocalBroker) -> None:
    assert received_after_return(broker.port, "3.1.1", persistent=True) == [b"while away", b"marker"]


def test_a_clean_3_1_1_client_does_not_get_what_was_published_while_it_was_away(broker: LocalBroker) -> None:
    assert received_after_return(broker.port, "3.1.1", persistent=False) == [b"marker"]


def test_an_mqtt5_client_that_asks_for_its_session_at_connect_gets_what_was_published_while_it_was_away(
        broker: LocalBroker) -> None:
    assert received_after_return(broker.port, "5", persistent=True, **session_expiry(60)) == [b"while away", b"marker"]


def test_an_mqtt5_client_that_does_not_ask_for_its_session_starts_afresh(broker: LocalBroker) -> None:
    assert received_after_return(broker.port, "5", persistent=True) == [b"marker"]


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="'3.1'"):
        new_client("test-unknown", protocol="3.1")


# -- the login -----------------------------------------------------------------------------------

@pytest.mark.parametrize("username, password, accepted", [
    ("unit-1", "s3cret-Kukar", True),
    ("unit-1", "wrong", False),
    (None, None, False),
], ids=["right password", "wrong password", "no login"])
def test_the_login_is_what_the_broker_checks(password_broker: LocalBroker, username: str | None,
                                             password: str | None, accepted: bool) -> None:
    client = new_client("test-login")
    secure(client, username=username, password=password)
    connection = Connection(client)
    try:
        assert connection.connect(password_broker.port).is_failure is not accepted
    finally:
        connection.close()


# -- TLS -----------------------------------------------------------------------------------------

@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki):
    """Mosquitto with a TLS listener that also asks for a client certificate of the fleet CA."""
    require_mosquitto()
    work = tmp_path / "tls-broker"
    work.mkdir()
    port = free_port()
    listener = tls_listener(port, pki) + "allow_anonymous true\n"
    b = LocalBroker("mosquitto", port=port, workdir=work, listener=listener).start()
    yield b
    b.kill()


def test_over_tls_a_broker_certified_by_the_trusted_ca_is_accepted(tls_broker: LocalBroker, pki: Pki) -> None:
    client = new_client("test-tls")
    secure(client, tls=True, ca_file=pki.ca.cert_path, cert_file=pki.unit_a.cert, key_file=pki.unit_a.key)
    connection = Connection(client)
    try:
        assert not connection.connect(tls_broker.port).is_failure
    finally:
        connection.close()


@pytest.mark.parametrize("trusted", ["another CA", "the system's CAs"])
def test_over_tls_a_broker_certificate_from_a_ca_not_trusted_is_refused(tls_broker: LocalBroker, pki: Pki,
                                                                       trusted: str) -> None:
    client = new_client("test-tls")
    secure(client, tls=True, ca_file=pki.rogue_ca.cert_path if trusted == "another CA" else None,
           cert_file=pki.unit_a.cert, key_file=pki.unit_a.key)
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect("127.0.0.1", tls_broker.port)


def test_without_tls_the_certificate_files_are_not_used(broker: LocalBroker, tmp_path: Path) -> None:
    missing = tmp_path / "no-such.crt"
    client = new_client("test-plain")
    secure(client, tls=False, ca_file=missing, cert_file=missing, key_file=missing)
    connection = Connection(client)
    try:
        assert not connection.connect(broker.port).is_failure
    finally:
        connection.close()
