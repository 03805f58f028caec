"""TLS for tests: a throwaway CA that issues broker and unit certificates (the ``pki``
fixture), Mosquitto's TLS listener, and a unit that connects over TLS (its config, its
buffer and its uplink)."""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
import pytest

from agent.unit.buffer import ReadingBuffer
from agent.unit.config import Config, load_config
from agent.unit.uplink import MqttUplink
from tests.support.readings_factory import signal_reading
from tests.support.unit_config import write_config

READINGS = 25


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
    """The fleet's CA with the broker's, unit-a's and the collector's certificates, and a
    rogue CA that signs nothing the broker shows: who trusts it cannot verify the broker."""
    folder = tmp_path_factory.mktemp("pki")
    ca = TestCA(folder, "fleet")
    return Pki(ca=ca, rogue_ca=TestCA(folder, "rogue"), server=ca.issue("broker", server=True),
               unit_a=ca.issue("unit-a"), collector=ca.issue("collector"))


def tls_listener(port: int, pki: Pki) -> str:
    """Mosquitto's listener on loopback: TLS with the broker's certificate, and a client
    certificate of the fleet CA required."""
    return (
        f"listener {port} 127.0.0.1\n"
        f"cafile {pki.ca.cert_path}\n"
        f"certfile {pki.server.cert}\n"
        f"keyfile {pki.server.key}\n"
        "require_certificate true\n"
    )


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
