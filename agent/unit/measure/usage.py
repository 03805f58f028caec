"""Data accounting and the data budget: what the unit's mobile data went on, and what is left.

A prepaid SIM has a daily or monthly quota, and a throughput test can eat it: speedtest-cli
moves 20 seconds' worth of the link's full rate.  Three parts:

- Counting.  Each measurement counts its own bytes (the backends do); the modem's network
  interface counts everything (``/sys/class/net/IF/statistics/rx_bytes`` and ``tx_bytes``,
  read by :class:`InterfaceCounters`).  Those counters restart from zero when the unit
  reboots or the modem reconnects (a new interface), and 32-bit kernels wrap them at 4 GiB:
  :func:`counter_delta` tells the cases apart.
- The ledger (:class:`UsageLedger`, a small SQLite file): bytes per local day and per kind
  (``throughput/http``, ``uplink``, ``interface:wwan0`` ...), so that totals per day and per
  quota month survive restarts.  The unit's usage in a period is the larger of what the
  interfaces counted and what the kinds recorded add up to: the interfaces see everything,
  the records still count when an interface's counters were lost.
- The budget (:class:`Budget`, pure): daily and monthly limits, and a reserve kept for the
  uplink.  :func:`budget_decision` says whether a measurement expected to cost some bytes
  fits; when it does not, the measurement is skipped and :func:`skip_event` is the event
  reading that says so.

Days and quota months follow ``budget.timezone`` (the operator's quota resets at local
midnight) and ``budget.month_start_day``.
"""
from __future__ import annotations

import logging
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping
from zoneinfo import ZoneInfo

from agent.shared.reading import Event

if TYPE_CHECKING:
    from agent.unit.config import Config

log = logging.getLogger(__name__)

INTERFACE_KIND = "interface:"  # prefix of the kinds the interface counters record under
KEEP_DAYS = 400
SPEEDTEST_FIRST_GUESS = 40_000_000  # speedtest-cli before its first run: 10 s each way at ~16 Mbit/s
_WRAP32 = 2**32


# -- interface counters -------------------------------------------------------------------------

@dataclass(frozen=True)
class CounterSample:
    """One reading of an interface's byte counters."""

    interface: str
    rx_bytes: int
    tx_bytes: int
    ifindex: int | None = None  # a new interface (modem reconnected) gets a new index
    boot_id: str | None = None  # changes at every boot

    def bytes_since(self, earlier: "CounterSample") -> int:
        return counter_delta(earlier, self)


def _counter_step(before: int, after: int) -> int:
    if after >= before:
        return after - before
    if 2**31 <= before < _WRAP32:
        # A 32-bit counter (a 32-bit kernel's unsigned long) that passed 4 GiB.
        return _WRAP32 - before + after
    return after  # restarted from zero: what it shows now is all there is since


def counter_delta(before: CounterSample, after: CounterSample) -> int:
    """Bytes received and sent between two samples of one interface.

    After a reboot (another boot id) or on a re-created interface (another ifindex) the
    counters started again from zero, so the new values are the bytes since; what passed
    between the earlier sample and the reset is lost (counted as nothing).  A counter that
    went down otherwise wrapped if it was in the upper half of the 32-bit range, and was
    reset if not.
    """
    if before.interface != after.interface:
        raise ValueError(f"samples of two interfaces: {before.interface} and {after.interface}")
    if before.boot_id != after.boot_id or before.ifindex != after.ifindex:
        return after.rx_bytes + after.tx_bytes
    return _counter_step(before.rx_bytes, after.rx_bytes) + _counter_step(before.tx_bytes, after.tx_bytes)


class InterfaceCounters:
    """Reads an interface's byte counters from sysfs."""

    def __init__(self, interface: str, sys_net: Path = Path("/sys/class/net"),
                 boot_id: Path = Path("/proc/sys/kernel/random/boot_id")) -> None:
        if not interface or "/" in interface or interface in (".", ".."):
            raise ValueError(f"not an interface name: {interface!r}")
        self.interface = interface
        self.path = sys_net / interface
        self.boot_id_path = boot_id

    def read(self) -> CounterSample | None:
        """The counters now, or None when the interface does not exist (modem unplugged)."""
        try:
            rx = int((self.path / "statistics" / "rx_bytes").read_text())
            tx = int((self.path / "statistics" / "tx_bytes").read_text())
            ifindex = int((self.path / "ifindex").read_text())
        except (OSError, ValueError) as exc:
            log.debug("no counters for %s: %s", self.interface, exc)
            return None
        try:
            boot = self.boot_id_path.read_text().strip()
        except OSError:
            boot = None
        return CounterSample(self.interface, rx, tx, ifindex, boot)


# -- periods ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Calendar:
    """Where days and quota months begin."""

    timezone: str = "Asia/Makassar"
    month_start_day: int = 1

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # raises for an unknown zone
        if not 1 <= self.month_start_day <= 28:
            raise ValueError("month_start_day must be 1 to 28")

    def day_of(self, moment: datetime) -> date:
        if moment.tzinfo is None:
            raise ValueError("times must be timezone-aware")
        return moment.astimezone(ZoneInfo(self.timezone)).date()

    def month_of(self, day: date) -> tuple[date, date]:
        """First day of the quota month holding ``day``, and the first day of the next."""
        start = day.replace(day=self.month_start_day)
        if day < start:
            start = _add_months(start, -1)
        return start, _add_months(start, 1)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return day.replace(year=index // 12, month=index % 12 + 1)


@dataclass(frozen=True)
class UsageTotals:
    """Bytes per kind today and in the current quota month."""

    today: date
    month_start: date
    month_end: date  # first day of the next quota month
    day_bytes: Mapping[str, int] = field(default_factory=dict)
    month_bytes: Mapping[str, int] = field(default_factory=dict)

    @staticmethod
    def _used(by_kind: Mapping[str, int]) -> int:
        counted = sum(v for k, v in by_kind.items() if k.startswith(INTERFACE_KIND))
        recorded = sum(v for k, v in by_kind.items() if not k.startswith(INTERFACE_KIND))
        return max(counted, recorded)

    @property
    def day_used(self) -> int:
        return self._used(self.day_bytes)

    @property
    def month_used(self) -> int:
        return self._used(self.month_bytes)

    @property
    def days_left(self) -> int:
        """Days left in the quota month, today included."""
        return (self.month_end - self.today).days


# -- the ledger -------------------------------------------------------------------------------

class UsageLedger:
    """Bytes per local day and kind, in a SQLite file; also the last counter sample of each
    interface and the last cost of each kind."""

    def __init__(self, path: Path | str, calendar: Calendar = Calendar()) -> None:
        self.path = Path(path)
        self.calendar = calendar
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None)
        self.conn.executescript(
            """
            PRAGMA journal_mode=WAL;
            CREATE TABLE IF NOT EXISTS usage (
                day TEXT NOT NULL, kind TEXT NOT NULL, bytes INTEGER NOT NULL,
                PRIMARY KEY (day, kind));
            CREATE TABLE IF NOT EXISTS last_cost (kind TEXT PRIMARY KEY, bytes INTEGER NOT NULL, at TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS counters (
                interface TEXT PRIMARY KEY, rx_bytes INTEGER NOT NULL, tx_bytes INTEGER NOT NULL,
                ifindex INTEGER, boot_id TEXT, at TEXT NOT NULL);
            """
        )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "UsageLedger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Several records in one commit (one flush of the card), or each on its own outside one."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def record(self, kind: str, byte_count: int, when: datetime) -> None:
        """Add ``byte_count`` bytes of ``kind`` (``uplink``, ``throughput/http`` ...) to the
        day ``when`` falls on."""
        if byte_count < 0:
            raise ValueError("byte counts are not negative")
        day = self.calendar.day_of(when).isoformat()
        with self.transaction():
            self.conn.execute(
                "INSERT INTO usage (day, kind, bytes) VALUES (?, ?, ?) "
                "ON CONFLICT (day, kind) DO UPDATE SET bytes = bytes + excluded.bytes",
                (day, kind, int(byte_count)),
            )
            if not kind.startswith(INTERFACE_KIND):
                self.conn.execute("INSERT OR REPLACE INTO last_cost (kind, bytes, at) VALUES (?, ?, ?)",
                                  (kind, int(byte_count), when.astimezone(timezone.utc).isoformat()))
            oldest = (self.calendar.day_of(when) - timedelta(days=KEEP_DAYS)).isoformat()
            self.conn.execute("DELETE FROM usage WHERE day < ?", (oldest,))

    def record_counters(self, sample: CounterSample, when: datetime) -> int | None:
        """Add what the interface moved since its previous sample to the day of ``when``
        (kind ``interface:<name>``); None for the first sample, which only sets the base."""
        with self.transaction():
            row = self.conn.execute(
                "SELECT rx_bytes, tx_bytes, ifindex, boot_id FROM counters WHERE interface = ?", (sample.interface,)
            ).fetchone()
            self.remember_counters(sample, when)
            if row is None:
                return None
            delta = counter_delta(CounterSample(sample.interface, *row), sample)
            if delta:
                self.record(INTERFACE_KIND + sample.interface, delta, when)
            return delta

    def remember_counters(self, sample: CounterSample, when: datetime) -> None:
        """Keep ``sample`` as the base the next one is measured against, adding nothing: for a
        caller that counted the bytes up to it itself."""
        self.conn.execute(
            "INSERT OR REPLACE INTO counters (interface, rx_bytes, tx_bytes, ifindex, boot_id, at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (sample.interface, sample.rx_bytes, sample.tx_bytes, sample.ifindex, sample.boot_id,
             when.astimezone(timezone.utc).isoformat()),
        )

    def last_cost(self, kind: str) -> int | None:
        row = self.conn.execute("SELECT bytes FROM last_cost WHERE kind = ?", (kind,)).fetchone()
        return None if row is None else int(row[0])

    def totals(self, now: datetime) -> UsageTotals:
        return read_totals(self.conn, self.calendar, now)


def read_totals(conn: sqlite3.Connection, calendar: Calendar, now: datetime) -> UsageTotals:
    today = calendar.day_of(now)
    start, end = calendar.month_of(today)
    rows = conn.execute(
        "SELECT day, kind, bytes FROM usage WHERE day >= ? AND day < ?", (start.isoformat(), end.isoformat())
    ).fetchall()
    day_bytes: dict[str, int] = {}
    month_bytes: dict[str, int] = {}
    for day, kind, count in rows:
        month_bytes[kind] = month_bytes.get(kind, 0) + count
        if day == today.isoformat():
            day_bytes[kind] = day_bytes.get(kind, 0) + count
    return UsageTotals(today, start, end, day_bytes, month_bytes)


# -- the budget -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """Data limits; 0 means no limit.  ``uplink_reserve`` is kept free in every day for
    pushing readings: a measurement may not eat into it (into the monthly limit, one
    reserve for each day left in the quota month)."""

    daily: int = 0
    monthly: int = 0
    uplink_reserve: int = 0

    @property
    def unlimited(self) -> bool:
        return not self.daily and not self.monthly


@dataclass(frozen=True)
class BudgetDecision:
    allowed: bool
    expected: int
    period: str | None = None  # "day" or "month": the limit that would break
    used: int = 0
    limit: int = 0
    reserve: int = 0

    @property
    def reason(self) -> str:
        if self.allowed:
            return "within the budget"
        return (f"it may use {self.expected} bytes and this {self.period} has used {self.used} of its "
                f"{self.limit}" + (f" ({self.reserve} kept for the uplink)" if self.reserve else ""))


def budget_decision(budget: Budget, totals: UsageTotals, expected: int) -> BudgetDecision:
    """Whether a measurement expected to cost ``expected`` bytes fits in the budget."""
    checks = []
    if budget.daily:
        checks.append(("day", totals.day_used, budget.daily, budget.uplink_reserve))
    if budget.monthly:
        checks.append(("month", totals.month_used, budget.monthly, budget.uplink_reserve * totals.days_left))
    for period, used, limit, reserve in checks:
        if used + expected + reserve > limit:
            return BudgetDecision(False, expected, period, used, limit, reserve)
    return BudgetDecision(True, expected)


def skip_event(decision: BudgetDecision, what: str = "throughput test") -> Event:
    """The ``budget_skip`` event part for a measurement the budget did not allow."""
    return Event(
        type="budget_skip",
        message=f"{what} skipped: {decision.reason}",
        data={"period": decision.period, "used": decision.used, "limit": decision.limit,
              "expected": decision.expected, "reserve": decision.reserve},
    )


def expected_bytes(backend: str, cap_bytes: int, ledger: UsageLedger | None) -> int:
    """What a throughput test is expected to cost: the cap for the ``http`` backend (it
    never exceeds it); for ``speedtest``, which has no cap, its last run's cost, or a first
    guess (:data:`SPEEDTEST_FIRST_GUESS`)."""
    if backend == "http":
        return cap_bytes
    last = ledger.last_cost(f"throughput/{backend}") if ledger is not None else None
    return last if last else SPEEDTEST_FIRST_GUESS


# -- from the config --------------------------------------------------------------------------

def budget_from_config(config: "Config") -> Budget:
    b = config.budget
    return Budget(daily=b.daily, monthly=b.monthly, uplink_reserve=b.uplink_reserve)


def calendar_from_config(config: "Config") -> Calendar:
    return Calendar(config.budget.timezone, config.budget.month_start_day)


def open_ledger(config: "Config") -> UsageLedger:
    return UsageLedger(config.budget.ledger, calendar_from_config(config))


def usage_summary(config: "Config", now: datetime | None = None) -> dict[str, Any]:
    """The data used today and this quota month against the limits, for ``blankspot status``.

    Reads the ledger without creating it: a unit that never measured shows zeros.
    """
    now = now or datetime.now(timezone.utc)
    calendar = calendar_from_config(config)
    budget = budget_from_config(config)
    path = Path(config.budget.ledger)
    today = calendar.day_of(now)
    totals = UsageTotals(today, *calendar.month_of(today))
    error = None
    if path.exists():
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
            try:
                totals = read_totals(conn, calendar, now)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            error = f"cannot read {path}: {exc}"
    return {
        "ledger": str(path),
        "error": error,
        "day": {"date": totals.today.isoformat(), "used_bytes": totals.day_used,
                "limit_bytes": budget.daily or None, "by_kind": dict(sorted(totals.day_bytes.items()))},
        "month": {"start": totals.month_start.isoformat(), "end": totals.month_end.isoformat(),
                  "used_bytes": totals.month_used, "limit_bytes": budget.monthly or None,
                  "by_kind": dict(sorted(totals.month_bytes.items()))},
        "uplink_reserve_bytes": budget.uplink_reserve,
    }


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """``usage_summary`` as lines for ``blankspot status``."""
    def amount(used: int, limit: int | None) -> str:
        return f"{used / 1e6:.1f} MB" + (f" of {limit / 1e6:.0f} MB" if limit else " (no limit)")

    day, month = summary["day"], summary["month"]
    if summary.get("error"):
        return [f"data              unknown: {summary['error']}"]
    return [
        f"data today        {amount(day['used_bytes'], day['limit_bytes'])}",
        f"data this month   {amount(month['used_bytes'], month['limit_bytes'])} (since {month['start']})",
    ]
