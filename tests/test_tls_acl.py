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

import logging
import time
from pathlib import Path

import pytest

from agent.sim.broker import LocalBroker, free_port
from agent.shared.polling import wait_until as wait
from tests.support.broker import require_mosquitto
from tests.support.mqtt_sink import ReadingSink
from tests.support.tls import Pki, Unit, pki, tls_listener, unit_config  # noqa: F401  (pki: a fixture, a throwaway PKI)

PREFIX = "blankspot/v1"


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
    listener = tls_listener(port, pki) + "use_identity_as_username true\n"
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


# -- a unit's log ----------------------------------------------------------------------------

def uplink_errors(caplog: pytest.LogCaptureFixture, level: int = logging.ERROR) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "agent.unit.uplink" and r.levelno >= level]


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
    caplog.set_level(logging.INFO, logger="agent.unit.uplink")
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
    caplog.set_level(logging.DEBUG, logger="agent.unit.uplink")
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
