"""The uplink over TLS with client certificates, against a Mosquitto that enforces an ACL.

The broker here is set up the way a fleet broker is: a TLS listener that requires a client
certificate, takes the certificate's CN as the MQTT username, and an ACL that lets each
unit write only under its own ``blankspot/v1/<CN>/`` and lets the ``collector`` read
everything.  Certificates are made by the test itself (a throwaway CA per test module).

Required behaviour:
- a unit whose certificate CN matches its ``device.id`` delivers its readings;
- a unit whose ``device.id`` does not match its certificate is refused by the ACL: its
  readings stay in the buffer (never marked delivered), the refusal is counted, and an
  ERROR line names the ACL as the thing to check;
- a unit that does not trust the broker's CA does not connect, keeps its readings, and the
  log says the certificate could not be verified;
- a unit without a client certificate is turned away by the broker and delivers nothing.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.buffer import ReadingBuffer
from agent.config import Config, load_config
from agent.sim.broker import LocalBroker, free_port
from agent.uplink import MqttUplink
from agent.polling import wait_until as wait
from tests.conftest import require_mosquitto, write_config
from tests.mqtt_sink import ReadingSink
from tests.readings_factory import signal_reading

PREFIX = "blankspot/v1"
READINGS = 25


# -- a throwaway PKI -------------------------------------------------------------------------

@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "blankspot test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


class TestCA:
    """A CA that issues server and client certificates into ``folder``."""

    __test__ = False  # not a pytest class

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        self.subject = _name(f"{name} root")
        cert = (
            x509.CertificateBuilder()
            .subject_name(self.subject).issuer_name(self.subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.cert = cert
        self.cert_path = folder / f"{name}-ca.crt"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str, *, server: bool = False) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(self.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(self.folder / f"{self.name}-{cn}.crt", self.folder / f"{self.name}-{cn}.key")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, issued.key)
        return issued


@dataclass(frozen=True)
class Pki:
    ca: TestCA
    rogue_ca: TestCA
    server: Issued
    unit_a: Issued
    collector: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = TestCA(folder, "fleet")
    # Signs nothing the broker uses: a unit that trusts it cannot verify the broker.
    rogue = TestCA(folder, "rogue")
    return Pki(ca=ca, rogue_ca=rogue, server=ca.issue("broker", server=True),
               unit_a=ca.issue("unit-a"), collector=ca.issue("collector"))


# -- the broker and the collector's subscription ----------------------------------------------

@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki):
    """Mosquitto with a certificate-only TLS listener and a per-unit write ACL."""
    require_mosquitto()
    work = tmp_path / "broker"
    work.mkdir()
    acl = work / "acl"
    acl.write_text(
        f"pattern write {PREFIX}/%u/#\n"
        "\n"
        "user collector\n"
        f"topic read {PREFIX}/#\n"
    )
    port = free_port()
    listener = (
        f"listener {port} 127.0.0.1\n"
        f"cafile {pki.ca.cert_path}\n"
        f"certfile {pki.server.cert}\n"
        f"keyfile {pki.server.key}\n"
        "require_certificate true\n"
        "use_identity_as_username true\n"
    )
    broker = LocalBroker("mosquitto", port=port, workdir=work, listener=listener,
                         extra_config=f"acl_file {acl}\n").start()
    yield broker
    broker.kill()


@pytest.fixture
def collector(tls_broker: LocalBroker, pki: Pki):
    """The central subscriber, authenticated by the ``collector`` certificate."""
    sink = ReadingSink(tls_broker.port, client_id="collector-tls", persistent=False)
    sink.client.tls_set(ca_certs=str(pki.ca.cert_path), certfile=str(pki.collector.cert), keyfile=str(pki.collector.key))
    sink.start()
    yield sink
    sink.stop()


# -- a unit ----------------------------------------------------------------------------------

def unit_config(tmp_path: Path, port: int, device: str, name: str, **tls: object) -> Config:
    """Config of a unit that connects over TLS; ``tls`` gives ca_file/cert_file/key_file."""
    folder = tmp_path / name
    folder.mkdir()
    uplink: dict[str, object] = {"tls": True, "batch_size": 10, "status_interval": "1s"}
    uplink.update({key: str(value) for key, value in tls.items()})
    path = write_config(folder / "agent.toml", port, folder / "buffer.db", {"uplink": uplink}, device=device)
    return load_config(path)


class Unit:
    """A buffer filled with readings and an uplink draining it, as the agent wires them."""

    def __init__(self, config: Config, readings: int = READINGS) -> None:
        self.config = config
        self.device = config.device_id
        self.buffer = ReadingBuffer(config.buffer.path, self.device)
        self.seqs = {self.buffer.append(signal_reading(self.device)).seq for _ in range(readings)}
        self.uplink = MqttUplink(config.uplink, self.device, self.buffer, client_id=config.client_id)

    def __enter__(self) -> "Unit":
        self.uplink.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uplink.stop()
        self.buffer.close()

    def delivered(self) -> int:
        """Readings the broker acknowledged (no collector runs here to confirm them)."""
        stats = self.buffer.stats()
        return stats.delivered_total + stats.unconfirmed




def uplink_errors(caplog: pytest.LogCaptureFixture, level: int = logging.ERROR) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "agent.uplink" and r.levelno >= level]


# -- the tests -------------------------------------------------------------------------------

def test_unit_with_matching_certificate_delivers(tmp_path: Path, tls_broker: LocalBroker, pki: Pki,
                                                 collector: ReadingSink) -> None:
    """CN ``unit-a`` publishing as device ``unit-a``: every reading reaches the collector
    over TLS and is marked delivered only after the broker acknowledged it."""
    config = unit_config(tmp_path, tls_broker.port, "unit-a", "unit-a", ca_file=pki.ca.cert_path,
                         cert_file=pki.unit_a.cert, key_file=pki.unit_a.key)
    with Unit(config) as unit:
        arrived = collector.wait_for_seqs("unit-a", unit.seqs, timeout=10)
        drained = unit.uplink.wait_until(lambda: unit.buffer.pending_count() == 0, timeout=5)
        stats = unit.uplink.stats
        print(f"\nunit-a over TLS: {len(unit.seqs)} readings buffered, {len(collector.unique('unit-a'))} at the "
              f"collector, {unit.delivered()} marked delivered, batches acked={stats.batches_acked} "
              f"refused={stats.batches_refused}, duplicates={collector.duplicates('unit-a')}")
        assert arrived, f"collector saw {sorted(collector.unique('unit-a'))}"
        assert drained and unit.delivered() == len(unit.seqs)
        assert stats.batches_refused == 0 and stats.connects == 1
        assert wait(lambda: any(s.get("device") == "unit-a" and s.get("state") == "online"
                                for s in collector.statuses), 5), collector.statuses
    assert collector.bad == []


def test_device_id_not_matching_certificate_is_refused_by_the_acl(
        tmp_path: Path, tls_broker: LocalBroker, pki: Pki, collector: ReadingSink,
        caplog: pytest.LogCaptureFixture) -> None:
    """CN ``unit-a`` publishing as device ``unit-b``: the ACL refuses every batch (MQTT 5
    PUBACK 0x87).  The readings stay pending in the buffer, the refusals are counted, an
    ERROR line points at device.id and the ACL, and nothing under ``unit-b`` reaches the
    collector.  A correctly configured unit on the same broker is unaffected."""
    caplog.set_level(logging.INFO, logger="agent.uplink")
    wrong = unit_config(tmp_path, tls_broker.port, "unit-b", "unit-b", ca_file=pki.ca.cert_path,
                        cert_file=pki.unit_a.cert, key_file=pki.unit_a.key)
    right = unit_config(tmp_path, tls_broker.port, "unit-a", "unit-a", ca_file=pki.ca.cert_path,
                        cert_file=pki.unit_a.cert, key_file=pki.unit_a.key)
    with Unit(wrong) as bad, Unit(right) as good:
        # Two refusals show that the hold-off retries, and is refused again, without loss.
        refused = bad.uplink.wait_until(lambda: bad.uplink.stats.batches_refused >= 2, timeout=10)
        good_arrived = collector.wait_for_seqs("unit-a", good.seqs, timeout=10)
        time.sleep(0.5)  # a grace period in which a wrongly accepted batch would show up
        stats = bad.uplink.stats
        pending = bad.buffer.pending_count()
        print(f"\nunit-b with CN unit-a: connects={stats.connects} batches sent={stats.batches_sent} "
              f"refused={stats.batches_refused} acked={stats.batches_acked}; buffer pending={pending}/"
              f"{len(bad.seqs)} delivered={bad.delivered()}; collector saw unit-b={len(collector.seqs('unit-b'))} "
              f"unit-a={len(collector.unique('unit-a'))}/{len(good.seqs)}")
        assert refused, f"uplink stats: {stats}"
        assert stats.connects >= 1, "the refusal must come from the ACL, not a failed connection"
        assert stats.batches_acked == 0 and bad.delivered() == 0
        assert pending == len(bad.seqs)
        assert collector.seqs("unit-b") == []
        assert not any(s.get("device") == "unit-b" for s in collector.statuses)
        assert good_arrived and good.uplink.stats.batches_refused == 0
    errors = uplink_errors(caplog)
    acl_lines = [m for m in errors if "ACL" in m and f"{PREFIX}/unit-b/readings" in m]
    print(f"ERROR lines: {len(errors)}, naming the ACL: {len(acl_lines)}; first: {acl_lines[0] if acl_lines else None}")
    assert acl_lines, errors
    assert "Not authorized" in acl_lines[0]
    assert "device.id" in acl_lines[0]


def test_unit_that_does_not_trust_the_broker_ca_keeps_its_readings(
        tmp_path: Path, tls_broker: LocalBroker, pki: Pki, collector: ReadingSink,
        caplog: pytest.LogCaptureFixture) -> None:
    """A unit whose ca_file is a different CA than the one that signed the broker: the TLS
    handshake fails on the unit's side, nothing is sent, every reading stays buffered, and
    the log says the certificate could not be verified."""
    caplog.set_level(logging.DEBUG, logger="agent.uplink")
    config = unit_config(tmp_path, tls_broker.port, "unit-a", "unit-a", ca_file=pki.rogue_ca.cert_path,
                         cert_file=pki.unit_a.cert, key_file=pki.unit_a.key)
    with Unit(config) as unit:
        failed = unit.uplink.wait_until(lambda: unit.uplink.stats.connection_failures >= 2, timeout=10)
        stats = unit.uplink.stats
        pending = unit.buffer.pending_count()
        print(f"\nwrong CA: connects={stats.connects} failures={stats.connection_failures} "
              f"batches sent={stats.batches_sent}; buffer pending={pending}/{len(unit.seqs)}; "
              f"collector saw {len(collector.seqs('unit-a'))}; last error: {stats.last_error}")
        assert failed
        assert stats.connects == 0 and stats.batches_sent == 0
        assert pending == len(unit.seqs) and unit.delivered() == 0
        assert collector.seqs("unit-a") == []
        assert "certificate verify failed" in (stats.last_error or "")
    warnings = uplink_errors(caplog, logging.WARNING)
    assert any("certificate verify failed" in m for m in warnings), warnings


def test_unit_without_client_certificate_is_rejected(
        tmp_path: Path, tls_broker: LocalBroker, pki: Pki, collector: ReadingSink) -> None:
    """A unit that trusts the right CA but presents no client certificate: the broker
    (``require_certificate true``) turns it away, so it never gets a CONNACK, nothing is
    delivered, and the readings stay buffered."""
    config = unit_config(tmp_path, tls_broker.port, "unit-a", "unit-a", ca_file=pki.ca.cert_path)
    assert config.uplink.cert_file is None
    with Unit(config) as unit:
        failed = unit.uplink.wait_until(lambda: unit.uplink.stats.connection_failures >= 2, timeout=10)
        stats = unit.uplink.stats
        pending = unit.buffer.pending_count()
        print(f"\nno client certificate: connects={stats.connects} failures={stats.connection_failures} "
              f"batches sent={stats.batches_sent}; buffer pending={pending}/{len(unit.seqs)}; "
              f"collector saw {len(collector.seqs('unit-a'))}; last error: {stats.last_error}")
        assert failed
        assert stats.connects == 0 and stats.batches_sent == 0
        assert pending == len(unit.seqs) and unit.delivered() == 0
        assert collector.seqs("unit-a") == []
    # The unit only sees its connection drop; the broker's log says why.
    broker_log = tls_broker.log_path.read_text(errors="replace")
    rejections = broker_log.count("peer did not return a certificate")
    print(f"broker log: {rejections} connections rejected for lack of a client certificate")
    assert rejections >= 2, broker_log[-2000:]
