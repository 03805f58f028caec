"""Delivery that ends in the centre's database: what confirmations cost on the link, and how fast a hole is refilled.

The whole path, counted at its end: a unit (``ReadingBuffer`` + ``MqttUplink``: in this
process for part 1, in a process of its own for part 2), a local Mosquitto (persistence off),
and ``blankspot collect`` as a child process storing into SQLite.  A reading counts once the
collector's database holds it.

1. Link bytes per reading with confirmations (``uplink.confirm = true``, the default) against
   without (``false``: the broker's PUBACK ends the unit's responsibility), in the same run,
   through the counting TCP proxy (``LinkProxy``) between unit and broker, both directions:
   a. a backlog drain: readings already buffered, shipped settings (batch 200, collector
      ``--confirm-interval 5m``, unit ``status_interval`` 300 s);
   b. live cadence: one reading appended at a time at a fixed probe's pace, with time
      compressed (``--compress``, default 100: a reading every 0.1 s for every 10 s,
      ``--confirm-interval 3s`` for 5m, ``status_interval`` 3 s for 300 s, ``confirm_grace``
      and ``confirm_timeout`` likewise), so that readings per confirmation and per status are
      the field's.
   A run ends when the database holds every reading and, with confirmations, the unit has
   every reading confirmed (``pending == 0`` and ``unconfirmed == 0``).
2. Time to refill a hole of 1,000 readings the broker acknowledged and the centre never got:
   the unit speaks MQTT 3.1.1 (no PUBACK 0x10), sends them while no collector session exists
   (the broker acknowledges and drops them), the collector starts ``--away`` seconds later
   and the unit goes on with one reading every 10 s; measured from the first confirmation
   that shows the hole to the database holding all of it again, and the bytes in between.
   Over the network-namespace link lab of ``tests/support/netlab.py`` (2 Mbit/s, 100 ms each way)
   when run as root with ``ip``, ``tc`` and ``ethtool``; otherwise over plain loopback, and the
   output says so.

    python bench/confirm.py            # the figures in docs/benchmarks.md
    python bench/confirm.py --quick    # a smoke run
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from _common import DEVICE, REPO, machine_lines, open_run, synthetic_readings

from agent.unit.buffer import ReadingBuffer
from agent.centre.ingest import CollectorSettings
from agent.centre.store import open_store
from agent.unit.config import UplinkConfig
from agent.shared.protocol import Confirmation
from agent.shared.reading import Reading
from agent.sim.broker import LocalBroker, mosquitto_path
from agent.sim.link import LinkProxy
from agent.shared.quantities import format_duration
from agent.unit.uplink import MqttUplink

FILL_CHUNK = 1000
INNER = "--inner-refill"
# The shipped settings this benchmark starts from.
FIELD_CADENCE_S = 10.0  # a fixed probe's reading period
COLLECTOR_INTERVAL_S = CollectorSettings.confirm_interval_s  # blankspot collect --confirm-interval
STATUS_INTERVAL_S = UplinkConfig.status_interval
GRACE_S = UplinkConfig.confirm_grace
TIMEOUT_S = UplinkConfig.confirm_timeout


# -- the collector as a child process ----------------------------------------------------

class CollectorProcess:
    """``python -m agent collect`` (optionally inside a network namespace), its log in a file."""

    def __init__(self, work: Path, broker_url: str, db: Path, confirm_interval_s: float,
                 wrap: list[str] | None = None) -> None:
        self.log_path = work / "collector.log"
        self.command = [*(wrap or []), sys.executable, "-m", "agent", "collect", "--broker", broker_url,
                        "--db", f"sqlite://{db}", "--client-id", "bench-collector",
                        "--confirm-interval", format_duration(confirm_interval_s), "--stats-interval", "60s"]
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "CollectorProcess":
        """Start, and return once subscribed (from then on the broker keeps its share)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            cwd=REPO, start_new_session=True)
        deadline = time.monotonic() + timeout
        while "subscribed to" not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"collector did not subscribe:\n{self.log()[-2000:]}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def published(self) -> int | None:
        """Confirmations this collector published, from its closing summary line."""
        match = re.search(r"stopped: .* (\d+) confirmations", self.log())
        return int(match.group(1)) if match else None


def held(db: Path, first: int = 1, last: int = 2**62) -> int:
    """Readings of the unit with ``first <= seq <= last`` the collector's database holds."""
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return 0
    try:
        return conn.execute("SELECT count(*) FROM readings WHERE device = ? AND seq BETWEEN ? AND ?",
                            (DEVICE, first, last)).fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0
    finally:
        conn.close()


def centre_counts(db: Path) -> dict[str, int]:
    with open_store(f"sqlite://{db}") as store:
        return store.counts()


def fill(buffer: ReadingBuffer, readings: list[Reading]) -> None:
    for start in range(0, len(readings), FILL_CHUNK):
        buffer.append_many(readings[start:start + FILL_CHUNK])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll until ``predicate()``; the monotonic time it became true.  RuntimeError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not reached within {timeout:g}s")
        time.sleep(interval)
    return time.monotonic()


# -- part 1: link bytes with and without confirmations ------------------------------------

class RecordingBuffer(ReadingBuffer):
    """A buffer that notes each confirmation as it reaches it: when, and ``snapshot()`` at that moment
    (the uplink sends again what a confirmation shows missing right after applying it)."""

    def __init__(self, *args: Any, snapshot: Callable[[], Any] = lambda: None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.snapshot = snapshot
        self.confirmations: list[tuple[float, Confirmation, Any]] = []

    def apply_confirmation(self, confirmation: Confirmation):  # type: ignore[override]
        self.confirmations.append((time.monotonic(), confirmation, self.snapshot()))
        return super().apply_confirmation(confirmation)


@dataclass(frozen=True)
class Timing:
    """The intervals of one workload: the collector's, and the unit's."""

    confirm_interval_s: float
    status_interval_s: float
    grace_s: float
    timeout_s: float
    period_s: float | None = None  # live cadence: one reading every period_s; None: a backlog drain


@dataclass
class PathRun:
    workload: str
    confirm: bool
    readings: int
    up: int
    down: int
    stored_s: float  # from the uplink's start until the database held every reading
    done_s: float  # ... and, with confirmations, the unit had every reading confirmed
    messages: int  # batches of readings the unit published
    received: int  # confirmations that reached the unit
    stale: int  # ... of which not newer than one it had applied already (changed nothing)
    published: int | None  # confirmations the collector published
    resent: int
    duplicates: int

    @property
    def total(self) -> int:
        return self.up + self.down

    def per_reading(self, count: int) -> float:
        return count / self.readings


def run_path(work: Path, workload: str, readings: list[Reading], confirm: bool, timing: Timing,
             timeout: float) -> PathRun:
    """One unit, one broker, one collector, fresh: send ``readings`` and count the link until the end."""
    work.mkdir(parents=True)
    broker = LocalBroker("mosquitto", workdir=work / "broker").start()
    db = work / "collector.db"
    collector = CollectorProcess(work, f"mqtt://127.0.0.1:{broker.port}", db, timing.confirm_interval_s)
    buffer = RecordingBuffer(work / "unit.db", DEVICE)
    proxy: LinkProxy | None = None
    uplink: MqttUplink | None = None
    n = len(readings)
    try:
        collector.start()
        proxy = LinkProxy(broker.port).start()
        config = UplinkConfig(host="127.0.0.1", port=proxy.port, confirm=confirm,
                              status_interval=timing.status_interval_s, confirm_grace=timing.grace_s,
                              confirm_timeout=timing.timeout_s)
        uplink = MqttUplink(config, DEVICE, buffer, client_id="bench-unit")
        if timing.period_s is None:
            fill(buffer, readings)
        started = time.monotonic()
        uplink.start()
        if timing.period_s is not None:
            for index, reading in enumerate(readings):
                delay = started + index * timing.period_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                buffer.append(reading)
        stored = wait_for(lambda: held(db) >= n and buffer.pending_count() == 0, timeout,
                          f"{workload}, confirm {confirm}: database holding all {n:,} readings")
        done = stored
        if confirm:
            done = wait_for(lambda: (lambda s: s.pending == 0 and s.unconfirmed == 0)(buffer.stats()), timeout,
                            f"{workload}: every reading confirmed to the unit", interval=0.1)
        up, down = proxy.bytes_up, proxy.bytes_down
        messages, resent = uplink.stats.batches_sent, uplink.stats.readings_resent
        received = [c.rev for _, c, _ in buffer.confirmations]
    except BaseException:
        print(f"  (files kept in {work}; collector log tail:)\n{collector.log()[-1500:]}", file=sys.stderr)
        raise
    finally:
        if uplink is not None:
            uplink.stop()
        if proxy is not None:
            proxy.close()
        buffer.close()
        collector.stop()
        broker.stop()
    counts = centre_counts(db)
    stale = sum(1 for i, rev in enumerate(received) if rev <= max(received[:i], default=0))
    run = PathRun(workload, confirm, n, up, down, stored - started, done - started, messages, len(received), stale,
                  collector.published(), resent, counts.get("duplicates", 0))
    print(f"  {workload:<6} confirm {'on ' if confirm else 'off'}: {n:,} readings stored in {run.stored_s:.1f}s"
          + (f", all confirmed to the unit after {run.done_s:.1f}s" if confirm else "")
          + f"; {run.messages:,} messages, {run.received} confirmations received ({run.stale} not newer than "
          f"the last applied), "
          f"{run.resent} readings sent again, {run.duplicates} duplicates at the centre", flush=True)
    return run


def bytes_part(args: argparse.Namespace, folder: Path) -> list[PathRun]:
    count = max(args.drain_readings, args.live_readings)
    print(f"generating {count:,} synthetic readings ...", flush=True)
    readings = synthetic_readings(count)
    sample = readings[:args.drain_readings]
    body = sum(len(replace(r, seq=n).to_json()) for n, r in enumerate(sample, 1)) / len(sample)
    print(f"  {body:.0f} bytes of JSON per reading on average")
    drain = Timing(args.drain_confirm_interval, args.drain_status_interval, GRACE_S, TIMEOUT_S)
    k = args.compress
    live = Timing(COLLECTOR_INTERVAL_S / k, STATUS_INTERVAL_S / k, GRACE_S / k, TIMEOUT_S / k, FIELD_CADENCE_S / k)
    print(f"drain: {args.drain_readings:,} readings already buffered, batch {UplinkConfig.batch_size}; collector "
          f"--confirm-interval {format_duration(drain.confirm_interval_s)}, unit status_interval "
          f"{drain.status_interval_s:g}s, confirm_grace {drain.grace_s:g}s, confirm_timeout {drain.timeout_s:g}s")
    print(f"live: {args.live_readings:,} readings appended one at a time, one every {live.period_s:g}s; time "
          f"compressed {k:g}x: this stands for one every {FIELD_CADENCE_S:g}s with --confirm-interval "
          f"{format_duration(COLLECTOR_INTERVAL_S)} and status_interval {STATUS_INTERVAL_S:g}s, so "
          f"{COLLECTOR_INTERVAL_S / FIELD_CADENCE_S:g} readings per confirmation interval and per status as in "
          f"the field (collector --confirm-interval {format_duration(live.confirm_interval_s)}, unit "
          f"status_interval {live.status_interval_s:g}s, confirm_grace {live.grace_s:g}s, confirm_timeout "
          f"{live.timeout_s:g}s)", flush=True)
    runs = []
    for workload, part, timing in (("drain", readings[:args.drain_readings], drain),
                                   ("live", readings[:args.live_readings], live)):
        for confirm in (True, False):
            runs.append(run_path(folder / f"{workload}-{'on' if confirm else 'off'}", workload, part, confirm,
                                 timing, args.timeout))
    return runs


def report_bytes(runs: list[PathRun], goal_pct: float) -> list[dict[str, Any]]:
    print()
    print(f"{'workload':<8} {'confirm':<8} {'readings':>9} {'up B/reading':>13} {'down B/reading':>15} "
          f"{'total B/reading':>16} {'confirmations (repeats)':>24} {'messages':>9} {'done after':>11}")
    for run in runs:
        print(f"{run.workload:<8} {'on' if run.confirm else 'off':<8} {run.readings:>9,} "
              f"{run.per_reading(run.up):>13.2f} {run.per_reading(run.down):>15.2f} "
              f"{run.per_reading(run.total):>16.2f} {f'{run.received} ({run.stale})':>24} {run.messages:>9,} "
              f"{run.done_s:>10.1f}s")
    summary = []
    print()
    for workload in dict.fromkeys(run.workload for run in runs):
        on = next(r for r in runs if r.workload == workload and r.confirm)
        off = next(r for r in runs if r.workload == workload and not r.confirm)
        ratio = on.per_reading(on.total) / off.per_reading(off.total)
        extra = on.per_reading(on.total) - off.per_reading(off.total)
        verdict = "goal met" if (ratio - 1) * 100 <= goal_pct else "GOAL MISSED"
        print(f"{workload}: confirmations on/off {ratio:.4f}x ({(ratio - 1) * 100:+.2f}%, {extra:+.2f} bytes per "
              f"reading; up {on.per_reading(on.up) / off.per_reading(off.up):.4f}x, down "
              f"{on.per_reading(on.down) / off.per_reading(off.down):.2f}x): {verdict} (at most +{goal_pct:g}%)")
        summary.append({"workload": workload, "ratio": ratio, "extra_bytes_per_reading": extra,
                        "goal_met": verdict == "goal met"})
    print("bytes are MQTT over TCP as counted by the proxy between unit and broker (both directions, including "
          "CONNECT, SUBSCRIBE, status messages and keepalives); IP/TCP headers are not included. confirmations: "
          "received by the unit (repeats: not newer than one it had applied, so they changed nothing).")
    return summary


# -- part 2: refilling a hole ---------------------------------------------------------------

class InterfaceBytes:
    """Bytes sent and received on a network interface: whole frames, TCP/IP headers and resends included."""

    def __init__(self, name: str) -> None:
        self.base = Path("/sys/class/net") / name / "statistics"

    def read(self) -> tuple[int, int]:
        return (int((self.base / "tx_bytes").read_text()), int((self.base / "rx_bytes").read_text()))


def tcp_segments_resent() -> int:
    """TCP segments this network namespace has sent again (``/proc/net/snmp``, ``RetransSegs``)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Tcp:")]
    return int(dict(zip(lines[0], lines[1]))["RetransSegs"])


class ProxyBytes:
    def __init__(self, proxy: LinkProxy) -> None:
        self.proxy = proxy

    def read(self) -> tuple[int, int]:
        return (self.proxy.bytes_up, self.proxy.bytes_down)


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def refill_unit(plan: dict[str, Any]) -> None:
    """The unit's side of part 2, run as its own process (in the lab's client namespace).

    Sends ``hole`` buffered readings with MQTT 3.1.1 and says ``lost`` once the broker has
    acknowledged them all; on ``collector-up`` (stdin) goes on with one reading every
    ``period_s`` and says ``refilled`` once the collector's database holds the whole hole.
    """
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    folder, hole, db = Path(plan["dir"]), plan["hole"], Path(plan["db"])
    readings = synthetic_readings(hole + plan["more"])
    host, port = plan["host"], plan["port"]
    proxy = None
    if plan["iface"]:
        counter: InterfaceBytes | ProxyBytes = InterfaceBytes(plan["iface"])
    else:
        proxy = LinkProxy(port, host).start()
        host, port = "127.0.0.1", proxy.port
        counter = ProxyBytes(proxy)
    # Only the lab's client namespace is the unit's alone; elsewhere the count is the machine's.
    resends = tcp_segments_resent if plan["iface"] else (lambda: 0)
    buffer = RecordingBuffer(folder / "unit.db", DEVICE, snapshot=lambda: (counter.read(), resends()))
    fill(buffer, readings[:hole])
    config = UplinkConfig(host=host, port=port, protocol="3.1.1", confirm=True,
                          confirm_grace=plan["grace_s"], confirm_timeout=plan["timeout_s"])
    uplink = MqttUplink(config, DEVICE, buffer, client_id="bench-refill-unit")
    collector_up = threading.Event()

    def listen() -> None:
        for line in sys.stdin:
            if line.strip() == "collector-up":
                collector_up.set()

    threading.Thread(target=listen, daemon=True).start()
    limit = plan["timeout"]
    try:
        base, base_resent = counter.read(), resends()
        started = time.monotonic()
        uplink.start()
        lost = wait_for(lambda: uplink.stats.readings_acked >= hole, limit, "broker acknowledging the first readings")
        sent = counter.read()
        _emit("lost", t=lost, seconds=lost - started, up=sent[0] - base[0], down=sent[1] - base[1],
              tcp_resent=resends() - base_resent)
        if not collector_up.wait(limit):
            raise RuntimeError("no word that the collector is up")
        next_reading, index = time.monotonic(), hole
        seen: tuple[float, Confirmation, tuple[tuple[int, int], int]] | None = None
        resend_at: float | None = None
        deadline = time.monotonic() + limit
        while True:
            now = time.monotonic()
            if now >= next_reading and index < len(readings):
                buffer.append(readings[index])
                index += 1
                next_reading += plan["period_s"]
            if seen is None:
                for when, c, snapshot in list(buffer.confirmations):
                    if c.bound >= hole and not all(c.covers(s) for s in range(1, hole + 1)):
                        seen = (when, c, snapshot)
                        break
            if resend_at is None and uplink.stats.readings_resent:
                resend_at = now
            if seen is not None and held(db, 1, hole) == hole:
                done, at_done, done_resent = time.monotonic(), counter.read(), resends()
                break
            if now > deadline:
                raise RuntimeError(f"hole not refilled within {limit:g}s: the database holds "
                                   f"{held(db, 1, hole)} of seq 1-{hole}; confirmation seen: {seen is not None}")
            time.sleep(0.02)
        when, c, (at_seen, seen_resent) = seen
        _emit("refilled", seen=when, resend=resend_at, done=done, up=at_done[0] - at_seen[0],
              down=at_done[1] - at_seen[1], tcp_resent=done_resent - seen_resent,
              confirmation={"rev": c.rev, "upto": c.upto, "top": c.top, "holes": [list(h) for h in c.holes]},
              resent=uplink.stats.readings_resent, more=index - hole, confirmations=uplink.stats.confirmations)
    except Exception as exc:
        _emit("error", message=str(exc))
        raise
    finally:
        uplink.stop()
        if proxy is not None:
            proxy.close()
        buffer.close()


@dataclass
class Refill:
    link: str
    hole: int
    away_s: float  # from the broker's acknowledgement of the last lost reading to the collector's subscription
    first_send_s: float
    first_send_bytes: int
    hole_seen_after_s: float  # from the collector's subscription to the unit holding the confirmation with the hole
    resend_after_s: float | None  # from that confirmation to the unit deciding to send the hole again
    refill_s: float  # from that confirmation to the database holding the whole hole
    refill_up: int
    refill_down: int
    resent: int
    duplicates: int
    first_send_tcp_resent: int  # TCP segments sent again on the unit's side (lost at the bottleneck)
    refill_tcp_resent: int
    confirmation: dict[str, Any] = field(default_factory=dict)

    @property
    def refill_bytes(self) -> int:
        return self.refill_up + self.refill_down


def lab_missing() -> str | None:
    """Why the link lab cannot be built here, or None."""
    if os.geteuid() != 0:
        return "not running as root"
    missing = [tool for tool in ("ip", "tc", "ethtool") if shutil.which(tool) is None]
    return f"missing {', '.join(missing)}" if missing else None


def _expect(unit: subprocess.Popen, event: str, timeout: float, log: Path) -> dict[str, Any]:
    """The next event line of the unit process, which must be ``event``."""
    result: dict[str, Any] = {}

    def read() -> None:
        line = unit.stdout.readline() if unit.stdout else ""
        result.update(json.loads(line) if line.strip() else {"event": "exit"})

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if result.get("event") != event:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"unit process: expected {event!r}, got {result or 'nothing'}\n{tail}")
    return result


def refill_once(args: argparse.Namespace, work: Path, away: float, lab: Any | None) -> Refill:
    work.mkdir(parents=True)
    db = work / "collector.db"
    if lab is not None:
        from tests.support.netlab import BrokerInNamespace

        broker: LocalBroker = BrokerInNamespace(lab, lab.server_ns, work / "broker").start()
        host, wrap, iface = lab.server_ip, ["ip", "netns", "exec", lab.server_ns], lab.client_if
        link = (f"emulated: {args.rate_mbit:g} Mbit/s each way, {args.delay_ms / 2:g} ms each way "
                f"({args.delay_ms:g} ms round trip), tbf queue 200 ms")
    else:
        broker = LocalBroker("mosquitto", workdir=work / "broker").start()
        host, wrap, iface = "127.0.0.1", [], None
        link = "loopback (no link lab)"
    plan = {"dir": str(work), "db": str(db), "host": host, "port": broker.port, "iface": iface,
            "hole": args.hole, "more": math.ceil(args.timeout / FIELD_CADENCE_S) + 1, "period_s": FIELD_CADENCE_S,
            "grace_s": args.grace, "timeout_s": args.confirm_timeout, "timeout": args.timeout}
    argv = [sys.executable, str(REPO / "bench" / "confirm.py"), INNER, json.dumps(plan)]
    unit_log = work / "unit.log"
    collector = CollectorProcess(work, f"mqtt://127.0.0.1:{broker.port}", db, args.refill_confirm_interval, wrap)
    with open(unit_log, "wb") as err:
        options: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": err,
                                   "text": True, "bufsize": 1}
        unit = lab.popen(lab.client_ns, argv, **options) if lab is not None else \
            subprocess.Popen(argv, cwd=REPO, **options)
    try:
        lost = _expect(unit, "lost", args.timeout, unit_log)
        print(f"  away {away:g}s: {args.hole:,} readings acknowledged by the broker and dropped "
              f"({lost['seconds']:.1f}s, {lost['up'] + lost['down']:,} bytes); collector starts "
              f"{away:g}s later", flush=True)
        time.sleep(max(0.0, lost["t"] + away - time.monotonic()))
        collector.start()
        up_at = time.monotonic()
        assert unit.stdin is not None
        unit.stdin.write("collector-up\n")
        unit.stdin.flush()
        done = _expect(unit, "refilled", args.timeout + 30, unit_log)
        unit.wait(30)
    except BaseException:
        print(f"  (files kept in {work}; unit log tail:)\n"
              f"{unit_log.read_text(errors='replace')[-1500:]}\ncollector log tail:\n{collector.log()[-1500:]}",
              file=sys.stderr)
        raise
    finally:
        if unit.poll() is None:
            unit.kill()
            unit.wait(10)
        collector.stop()
        broker.stop()
    counts = centre_counts(db)
    refill = Refill(link, args.hole, up_at - lost["t"], lost["seconds"], lost["up"] + lost["down"],
                    done["seen"] - up_at, None if done["resend"] is None else done["resend"] - done["seen"],
                    done["done"] - done["seen"], done["up"], done["down"], done["resent"],
                    counts.get("duplicates", 0), lost["tcp_resent"], done["tcp_resent"], done["confirmation"])
    print(f"  away {refill.away_s:.0f}s: the confirmation showing the hole ({refill.confirmation}) reached the "
          f"unit {refill.hole_seen_after_s:.1f}s after the collector subscribed; the database held all "
          f"{args.hole:,} again {refill.refill_s:.1f}s after it, {refill.refill_bytes:,} bytes; "
          f"{refill.resent:,} readings sent again, {refill.duplicates} duplicates", flush=True)
    return refill


def refill_part(args: argparse.Namespace, folder: Path) -> tuple[list[Refill], str | None]:
    why = lab_missing()
    note = None
    if why is not None:
        note = (f"NOTE: {why}: the network-namespace link lab (tests/support/netlab.py) needs root, ip, tc and ethtool, "
                f"so the hole is refilled over plain loopback; its times say nothing about a cellular link")
        print(note)
    print(f"refill: a hole of {args.hole:,} readings; unit on MQTT 3.1.1, confirm_grace {args.grace:g}s, "
          f"confirm_timeout {args.confirm_timeout:g}s, status_interval {STATUS_INTERVAL_S:g}s, one new reading every "
          f"{FIELD_CADENCE_S:g}s once the collector is back; collector --confirm-interval "
          f"{format_duration(args.refill_confirm_interval)}", flush=True)
    refills = []
    for number, away in enumerate(args.away):
        work = folder / f"refill-{number}"
        if why is None:
            from tests.support.netlab import NetLab

            with NetLab(delay_ms=args.delay_ms, rate_mbit=args.rate_mbit, seed=1) as lab:
                refills.append(refill_once(args, work, away, lab))
        else:
            refills.append(refill_once(args, work, away, None))
    return refills, note


def report_refills(refills: list[Refill], note: str | None) -> None:
    if not refills:
        return
    lab = "emulated" in refills[0].link
    print()
    print(f"link: {refills[0].link}; " + ("bytes are whole frames on the unit's interface, both directions (IP/TCP "
                                          "headers and TCP resends included)" if lab
                                          else "bytes are MQTT over TCP at the proxy, both directions"))
    print(f"{'hole':>6} {'collector away':>15} {'first send':>11} {'first send bytes':>17} {'hole seen after':>16} "
          f"{'resend after':>13} {'refilled after':>15} {'refill bytes':>13} {'vs first send':>14} {'sent again':>11} "
          f"{'TCP resends':>12}")
    for r in refills:
        resend = "-" if r.resend_after_s is None else f"{r.resend_after_s:.1f}s"
        print(f"{r.hole:>6,} {r.away_s:>14.0f}s {r.first_send_s:>10.1f}s {r.first_send_bytes:>17,} "
              f"{r.hole_seen_after_s:>15.1f}s {resend:>13} {r.refill_s:>14.1f}s {r.refill_bytes:>13,} "
              f"{r.refill_bytes / r.first_send_bytes:>13.2f}x {r.resent:>11,} "
              f"{f'{r.first_send_tcp_resent} / {r.refill_tcp_resent}' if lab else '-':>12}")
    print("collector away: from the broker's acknowledgement of the last lost reading to the collector's subscription; "
          "hole seen after: from that subscription to the unit holding the first confirmation that shows the hole; "
          "resend after, refilled after (the database holds the whole hole again) and refill bytes: from that "
          "confirmation; first send: the same readings' first trip, from the unit's start; TCP resends: segments, "
          "first send / refill")
    if note:
        print(note)


# -- the command ------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--drain-readings", type=int, default=10_000,
                        help="readings in the drained backlog (default 10000)")
    parser.add_argument("--drain-confirm-interval", type=float, default=COLLECTOR_INTERVAL_S, metavar="S",
                        help=f"collector --confirm-interval for the drain, seconds (default {COLLECTOR_INTERVAL_S:g}, "
                             "as shipped)")
    parser.add_argument("--drain-status-interval", type=float, default=STATUS_INTERVAL_S, metavar="S",
                        help=f"unit status_interval for the drain, seconds (default {STATUS_INTERVAL_S:g}, as shipped)")
    parser.add_argument("--live-readings", type=int, default=1200,
                        help="readings taken at the live cadence (default 1200: 3 h 20 min of a fixed probe)")
    parser.add_argument("--compress", type=float, default=100.0,
                        help="time compression of the live case: every interval divided by this (default 100)")
    parser.add_argument("--hole", type=int, default=1000, help="readings the centre misses (default 1000)")
    parser.add_argument("--away", type=float, nargs="+", default=None, metavar="S",
                        help="seconds the collector is away after the broker acknowledged the last lost reading, "
                             "one refill run each (default: confirm_grace + 5, and 10)")
    parser.add_argument("--grace", type=float, default=GRACE_S,
                        help=f"the unit's confirm_grace in the refill, seconds (default {GRACE_S:g}, as shipped)")
    parser.add_argument("--confirm-timeout", type=float, default=TIMEOUT_S,
                        help=f"the unit's confirm_timeout in the refill, seconds (default {TIMEOUT_S:g}, as shipped)")
    parser.add_argument("--refill-confirm-interval", type=float, default=COLLECTOR_INTERVAL_S, metavar="S",
                        help=f"collector --confirm-interval in the refill, seconds (default {COLLECTOR_INTERVAL_S:g})")
    parser.add_argument("--rate-mbit", type=float, default=2.0, help="link lab rate, each way (default 2)")
    parser.add_argument("--delay-ms", type=float, default=200.0,
                        help="link lab round-trip delay, half each way (default 200)")
    parser.add_argument("--parts", nargs="+", choices=("bytes", "refill"), default=["bytes", "refill"],
                        help="what to run (default both)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2000 readings drained with 10 s intervals, 300 live, a hole of 200 "
                             "with confirm_grace 5 s and the collector away 10 s")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (default bench/results/)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up a wait after this many seconds")
    parser.add_argument(INNER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.drain_readings = min(args.drain_readings, 2000)
        args.drain_confirm_interval = min(args.drain_confirm_interval, 10.0)
        args.drain_status_interval = min(args.drain_status_interval, 10.0)
        args.live_readings = min(args.live_readings, 300)
        args.hole = min(args.hole, 200)
        args.grace = min(args.grace, 5.0)
        args.away = args.away or [10.0]
    args.away = args.away or [args.grace + 5.0, 10.0]
    return args


def main() -> None:
    args = parse_args()
    if args.inner_refill:
        refill_unit(json.loads(args.inner_refill))
        return
    if mosquitto_path() is None:
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
    work = open_run(args.dir, "confirm-")
    results: dict[str, Any] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "machine": machine_lines(), "args": {k: v for k, v in vars(args).items()
                                                                     if k not in ("dir", "inner_refill")}}
    runs: list[PathRun] = []
    refills: list[Refill] = []
    note = None
    if "bytes" in args.parts:
        runs = bytes_part(args, work)
    if "refill" in args.parts:
        refills, note = refill_part(args, work)
    if runs:
        results["bytes"] = [asdict(run) for run in runs]
        results["ratios"] = report_bytes(runs, goal_pct=2.0)
    if refills:
        results["refills"] = [asdict(r) for r in refills]
        results["refill_note"] = note
        report_refills(refills, note)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = work.parent / f"confirm-{stamp}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nfigures written to {out}")


if __name__ == "__main__":
    main()
