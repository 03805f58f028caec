"""The served map's own state for whoever runs it: ``/healthz`` (JSON) and ``/metrics``
(Prometheus text format, version 0.0.4).  Pure: the facts are gathered by
:mod:`agent.centre.serve`, these functions only shape them."""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.shared.reading import format_time

# Request durations are counted in these buckets (seconds), as a Prometheus histogram.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class _Route:
    counts: dict[int, int] = field(default_factory=dict)      # status -> requests
    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    total_s: float = 0.0
    n: int = 0


class RequestStats:
    """Requests answered per route and status, and their durations."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}

    def record(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            r = self._routes.setdefault(route, _Route())
            r.counts[status] = r.counts.get(status, 0) + 1
            r.n += 1
            r.total_s += seconds
            for i, limit in enumerate(DURATION_BUCKETS):
                if seconds <= limit:
                    r.buckets[i] += 1

    def snapshot(self) -> dict[str, _Route]:
        with self._lock:
            return {k: _Route(dict(v.counts), list(v.buckets), v.total_s, v.n) for k, v in self._routes.items()}


@dataclass(frozen=True)
class Facts:
    """What the database says about itself, read in a few small queries."""

    reachable: bool
    error: str | None = None
    schema_version: int | None = None
    figures_kept: bool = False
    figures_stale: str | None = None
    last_received: datetime | None = None
    readings: int = 0                                  # stored, from the seq ledger
    counters: Mapping[str, int] = field(default_factory=dict)
    units: Sequence[dict[str, Any]] = ()               # device, state, last_seen (datetime), stored


def health(facts: Facts, now: datetime, layers: str) -> tuple[int, dict[str, Any]]:
    """The HTTP status (200, or 503 when the database cannot be read) and the JSON answer."""
    if not facts.reachable:
        return 503, {"status": "error", "database": {"reachable": False, "error": facts.error}}
    age = None if facts.last_received is None else round((now - facts.last_received).total_seconds(), 1)
    return 200, {
        "status": "ok" if facts.figures_stale is None else "degraded",
        "database": {"reachable": True, "schema_version": facts.schema_version},
        "figures": {"kept": facts.figures_kept, "stale": facts.figures_stale},
        "readings": facts.readings,
        "units": len(facts.units),
        "last_reading_received": None if facts.last_received is None else format_time(facts.last_received),
        "last_reading_age_s": age,
        "layers": layers,
        "now": format_time(now),
    }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def metrics_text(facts: Facts, stats: RequestStats, now: datetime) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, text: str, samples: Sequence[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {_number(value)}")

    metric("blankspot_database_up", "gauge", "1 when the collector database could be read.",
           [("", 1 if facts.reachable else 0)])
    if facts.reachable:
        metric("blankspot_readings_stored", "gauge", "Readings stored in the collector database.",
               [("", facts.readings)])
        metric("blankspot_units", "gauge", "Units the collector database knows of.", [("", len(facts.units))])
        metric("blankspot_quarantined_total", "counter", "Messages refused and kept in quarantine.",
               [("", facts.counters.get("quarantined", 0))])
        metric("blankspot_duplicates_total", "counter", "Readings received again and not stored twice.",
               [("", facts.counters.get("duplicates", 0))])
        metric("blankspot_batches_total", "counter", "Batches of readings stored by the collectors.",
               [("", facts.counters.get("batches", 0))])
        metric("blankspot_figures_stale", "gauge",
               "1 while the kept coverage figures are out of date (aggregate --rebuild needed).",
               [("", 0 if facts.figures_stale is None else 1)])
        if facts.last_received is not None:
            metric("blankspot_last_reading_age_seconds", "gauge", "Seconds since the newest reading was received.",
                   [("", round((now - facts.last_received).total_seconds(), 3))])
        seen = [(f'{{unit="{_label(u["device"])}"}}', round((now - u["last_seen"]).total_seconds(), 3))
                for u in facts.units if u.get("last_seen") is not None]
        metric("blankspot_unit_last_seen_age_seconds", "gauge", "Seconds since each unit's last status.", seen)
        metric("blankspot_unit_readings_stored", "gauge", "Readings stored per unit.",
               [(f'{{unit="{_label(u["device"])}"}}', u.get("stored", 0)) for u in facts.units])
    routes = stats.snapshot()
    metric("blankspot_serve_requests_total", "counter", "HTTP requests answered, per route and status.",
           [(f'{{route="{_label(route)}",status="{status}"}}', n)
            for route, r in sorted(routes.items()) for status, n in sorted(r.counts.items())])
    lines.append("# HELP blankspot_serve_request_duration_seconds Time to answer a request, per route.")
    lines.append("# TYPE blankspot_serve_request_duration_seconds histogram")
    for route, r in sorted(routes.items()):
        label = _label(route)
        for limit, n in zip(DURATION_BUCKETS, r.buckets):
            lines.append(f'blankspot_serve_request_duration_seconds_bucket{{route="{label}",le="{limit}"}} {n}')
        lines.append(f'blankspot_serve_request_duration_seconds_bucket{{route="{label}",le="+Inf"}} {r.n}')
        lines.append(f'blankspot_serve_request_duration_seconds_sum{{route="{label}"}} {r.total_s!r}')
        lines.append(f'blankspot_serve_request_duration_seconds_count{{route="{label}"}} {r.n}')
    return "\n".join(lines) + "\n"
