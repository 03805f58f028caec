"""How much to send at once over the link the unit has now: batch size and in-flight window.

The configured ``uplink.batch_size`` and ``uplink.max_inflight`` are ceilings.  Within them:

- **window**: enough batches unacknowledged to keep the link busy for twice its bare round
  trip (the bandwidth-delay product, doubled for the PUBACK's own trip and jitter), never
  fewer than 2.  More than that only queues in the network: on a 200 kbit/s edge a deep
  queue delays the unit's status and the centre's confirmations by seconds, and a cut
  connection sends all of it again.
- **batch**: at most :data:`BATCH_SECONDS` of the link's time, fewer on a lossy link
  (each loss stalls TCP for a round trip or more, and a connection cut mid-batch costs the
  whole batch again), never fewer than :data:`MIN_BATCH` readings, whose overhead
  (MQTT framing, a PUBACK, a delivery mark) is then paid too often.

Pure: :class:`LinkMeter` turns what the uplink sent and the kernel's figures for its
connection (:mod:`agent.unit.tcp_info`) into a :class:`LinkEstimate`; :func:`plan_sending` decides.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from agent.unit.tcp_info import TcpInfo

BATCH_SECONDS = 2.0
LOSSY_PCT = 5.0  # above this, batches of half the time
MIN_BATCH = 10
MIN_WINDOW = 2


@dataclass(frozen=True)
class LinkEstimate:
    rtt_ms: float  # smoothed round trip
    min_rtt_ms: float  # the link's own round trip
    loss_pct: float  # bytes TCP sent again, of all it sent
    rate: float | None  # bytes/s the link delivers; None until measured while busy
    bytes_per_reading: float  # what a reading costs on the wire in the encoding used


@dataclass(frozen=True)
class SendingPlan:
    batch: int
    window: int

    def as_status(self, estimate: LinkEstimate | None) -> dict[str, float | int | None]:
        """What the unit learned of its link and chose, for its status message."""
        fields: dict[str, float | int | None] = {"batch": self.batch, "window": self.window}
        if estimate is not None:
            fields.update({
                "rtt_ms": round(estimate.rtt_ms, 1), "min_rtt_ms": round(estimate.min_rtt_ms, 1),
                "loss_pct": round(estimate.loss_pct, 2),
                "rate_kbit": None if estimate.rate is None else round(estimate.rate * 8 / 1000, 1),
                "bytes_per_reading": round(estimate.bytes_per_reading, 1),
            })
        return fields


def plan_sending(estimate: LinkEstimate | None, batch_size: int, max_inflight: int) -> SendingPlan:
    """The batch and window for ``estimate``, within the configured ceilings."""
    if estimate is None or estimate.rate is None or estimate.rate <= 0 or estimate.bytes_per_reading <= 0:
        return SendingPlan(batch_size, max_inflight)
    seconds = BATCH_SECONDS / 2 if estimate.loss_pct > LOSSY_PCT else BATCH_SECONDS
    fits = int(estimate.rate * seconds / estimate.bytes_per_reading)
    batch = max(min(batch_size, MIN_BATCH), min(batch_size, fits))
    batch_bytes = batch * estimate.bytes_per_reading
    in_flight = 2 * estimate.rate * max(estimate.min_rtt_ms, 1.0) / 1000
    window = max(min(max_inflight, MIN_WINDOW), min(max_inflight, math.ceil(in_flight / batch_bytes) + 1))
    return SendingPlan(batch, window)


class LinkMeter:
    """Builds a :class:`LinkEstimate` from what the uplink sends and what TCP reports."""

    def __init__(self) -> None:
        self.bytes_per_reading: float | None = None
        self.rate: float | None = None
        self.tcp: TcpInfo | None = None

    def sent(self, payload_bytes: int, readings: int) -> None:
        """A batch of ``readings`` went out as ``payload_bytes`` (its MQTT packet)."""
        if readings <= 0:
            return
        cost = payload_bytes / readings
        self.bytes_per_reading = cost if self.bytes_per_reading is None else 0.8 * self.bytes_per_reading + 0.2 * cost

    def connected(self) -> None:
        """A new connection: its counters start from nothing."""
        self.tcp = None

    def observed(self, info: TcpInfo | None) -> None:
        """The kernel's figures, read while batches are in flight."""
        if info is None:
            return
        self.tcp = info
        # A link busy with our batches shows its rate; an idle one only what we gave it.
        if not info.app_limited and info.delivery_rate > 0:
            self.rate = info.delivery_rate if self.rate is None else 0.7 * self.rate + 0.3 * info.delivery_rate

    def estimate(self) -> LinkEstimate | None:
        if self.tcp is None or self.bytes_per_reading is None:
            return None
        return LinkEstimate(self.tcp.rtt_ms, self.tcp.min_rtt_ms, self.tcp.loss_pct, self.rate,
                            self.bytes_per_reading)
