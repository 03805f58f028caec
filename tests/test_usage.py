"""Data accounting and the budget: interface counters that reset and wrap, the ledger's days
and quota months, the budget's decisions and its event, and what ``blankspot status`` shows."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.unit.buffer import ReadingBuffer
from agent.commands.main import main
from agent.unit.config import Config, ConfigError, parse_config
from agent.unit.measure.usage import (
    SPEEDTEST_FIRST_GUESS, Budget, Calendar, CounterSample, InterfaceCounters, UsageLedger, UsageTotals,
    budget_decision, counter_delta, expected_bytes, skip_event, usage_summary,
)
from agent.shared.reading import Event, Reading, reading_from_dict
from tests.support.netlab import require_netlab

ROOT = Path(__file__).resolve().parent.parent
WITA = Calendar("Asia/Makassar")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def sample(rx: int, tx: int, ifindex: int = 3, boot: str = "boot-a", name: str = "wwan0") -> CounterSample:
    return CounterSample(name, rx, tx, ifindex, boot)


# -- counters ----------------------------------------------------------------------------------

@pytest.mark.parametrize("before, after, delta", [
    (sample(1000, 500), sample(1000, 500), 0),
    (sample(1000, 500), sample(4000, 700), 3200),
    # reboot: the counters started again; what they show is all there is since
    (sample(9_000_000, 1_000_000), sample(3000, 1000, boot="boot-b"), 4000),
    # the modem reconnected: a new interface of the same name, counting from zero
    (sample(9_000_000, 1_000_000), sample(3000, 1000, ifindex=7), 4000),
    # a 32-bit kernel's counter passed 4 GiB
    (sample(2**32 - 1000, 500), sample(2000, 600), 3100),
    (sample(2**31, 0), sample(5, 0), 2**31 + 5),
    # gone down from low in the range: a reset, not a wrap
    (sample(2**31 - 1, 0), sample(5, 0), 5),
    # gone down above the 32-bit range: only a reset can do that
    (sample(2**40, 100), sample(10, 100), 10),
])
def test_counter_delta(before: CounterSample, after: CounterSample, delta: int) -> None:
    assert counter_delta(before, after) == delta
    assert after.bytes_since(before) == delta


def test_counters_of_two_interfaces_do_not_subtract() -> None:
    with pytest.raises(ValueError):
        counter_delta(sample(1, 1), sample(2, 2, name="eth0"))


@settings(max_examples=200)
@given(steps=st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=50), start=st.integers(0, 2**32 - 1))
def test_a_wrapping_32_bit_counter_adds_up(steps: list[int], start: int) -> None:
    """Sampled at least every 2 GiB, a 32-bit counter's deltas add up to the true total."""
    value, total = start, 0
    previous = sample(value, 0)
    for step in steps:
        value = (value + step) % 2**32
        current = sample(value, 0)
        total += counter_delta(previous, current)
        previous = current
    assert total == sum(steps)


def test_counters_of_a_missing_interface_are_none() -> None:
    assert InterfaceCounters("nosuchif0").read() is None
    with pytest.raises(ValueError):
        InterfaceCounters("../etc")


READ_COUNTERS = ("import json, sys; from agent.unit.measure.usage import InterfaceCounters; "
                 "s = InterfaceCounters(sys.argv[1]).read(); print(json.dumps(s.__dict__))")
SEND = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        "[s.sendto(b'x' * 972, ('10.99.0.2', 9)) for _ in range(int(sys.argv[1]))]")


def test_a_reconnected_modem_interface_restarts_its_counters_and_the_ledger_keeps_counting(tmp_path: Path) -> None:
    """A real interface in its own namespace, deleted and created again as a modem's is when it
    reconnects: the new interface counts from zero under a new index, and the ledger adds what
    each one moved."""
    require_netlab()
    ns = f"bslab-{os.getpid()}-usage-c"

    def run(*argv: str) -> str:
        done = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=30,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr
        return done.stdout

    def make_interface() -> None:
        run("ip", "link", "add", "wwan9", "type", "veth", "peer", "name", "wwan9peer")
        run("ip", "addr", "add", "10.99.0.1/24", "dev", "wwan9")
        run("ip", "link", "set", "wwan9peer", "up")
        run("ip", "link", "set", "wwan9", "up")
        run("ip", "neigh", "replace", "10.99.0.2", "lladdr", "02:00:00:00:00:02", "dev", "wwan9", "nud", "permanent")

    def read() -> CounterSample:
        return CounterSample(**json.loads(run(sys.executable, "-c", READ_COUNTERS, "wwan9")))

    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        run("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        make_interface()
        ledger = UsageLedger(tmp_path / "usage.db", WITA)
        at = utc("2026-11-24T03:00:00")
        first = read()
        assert ledger.record_counters(first, at) is None, "the first sample only sets the base"
        run(sys.executable, "-c", SEND, "100")  # 100 frames of 1014 bytes: 1000 of IP, 14 of Ethernet
        second = read()
        assert ledger.record_counters(second, at + timedelta(minutes=1)) == 100 * 1014 == second.tx_bytes - first.tx_bytes
        run("ip", "link", "del", "wwan9")
        make_interface()
        run(sys.executable, "-c", SEND, "30")
        third = read()
        print(first, second, third, sep="\n")
        assert third.ifindex != second.ifindex and third.tx_bytes == 30 * 1014 < second.tx_bytes
        assert ledger.record_counters(third, at + timedelta(minutes=2)) == 30 * 1014
        assert ledger.totals(at + timedelta(minutes=3)).day_bytes == {"interface:wwan9": 130 * 1014}
        ledger.close()
    finally:
        subprocess.run(["ip", "netns", "delete", ns], timeout=30)


# -- days and quota months ---------------------------------------------------------------------

@pytest.mark.parametrize("moment, day", [
    ("2026-11-24T15:59:59", date(2026, 11, 24)),  # 23:59:59 WITA
    ("2026-11-24T16:00:00", date(2026, 11, 25)),  # midnight WITA
    ("2026-12-31T16:00:00", date(2027, 1, 1)),
])
def test_days_begin_at_midnight_in_the_quota_time_zone(moment: str, day: date) -> None:
    assert WITA.day_of(utc(moment)) == day
    with pytest.raises(ValueError):
        WITA.day_of(datetime(2026, 11, 24))


@pytest.mark.parametrize("start_day, day, month", [
    (1, date(2026, 11, 24), (date(2026, 11, 1), date(2026, 12, 1))),
    (1, date(2026, 12, 31), (date(2026, 12, 1), date(2027, 1, 1))),
    (15, date(2026, 11, 24), (date(2026, 11, 15), date(2026, 12, 15))),
    (15, date(2026, 11, 14), (date(2026, 10, 15), date(2026, 11, 15))),
    (15, date(2027, 1, 3), (date(2026, 12, 15), date(2027, 1, 15))),
    (28, date(2027, 2, 28), (date(2027, 2, 28), date(2027, 3, 28))),
])
def test_quota_months_begin_on_their_day(start_day: int, day: date, month: tuple[date, date]) -> None:
    assert Calendar("UTC", start_day).month_of(day) == month


def test_a_calendar_is_checked() -> None:
    with pytest.raises(Exception):
        Calendar("Mars/Olympus")
    with pytest.raises(ValueError):
        Calendar("UTC", 29)


# -- the ledger --------------------------------------------------------------------------------

def test_the_ledger_rolls_over_at_local_midnight_and_at_the_quota_month(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    with UsageLedger(path, WITA) as ledger:
        ledger.record("uplink", 1000, utc("2026-11-30T15:59:00"))  # 23:59 WITA, 30 November
        ledger.record("throughput/http", 5000, utc("2026-11-30T15:59:30"))
        ledger.record("uplink", 200, utc("2026-11-30T16:01:00"))  # 00:01 WITA, 1 December
        before = ledger.totals(utc("2026-11-30T15:59:59"))
        after = ledger.totals(utc("2026-11-30T16:30:00"))
    print(before, after, sep="\n")
    assert before.today == date(2026, 11, 30) and before.day_bytes == {"uplink": 1000, "throughput/http": 5000}
    assert before.month_bytes == {"uplink": 1000, "throughput/http": 5000} and before.month_used == 6000
    assert after.today == date(2026, 12, 1) and after.day_bytes == {"uplink": 200}
    assert after.month_start == date(2026, 12, 1) and after.month_used == 200
    with UsageLedger(path, WITA) as reopened:
        assert reopened.totals(utc("2026-11-30T16:30:00")) == after, "kept on disk"
        assert reopened.totals(utc("2026-12-31T16:30:00")).month_used == 0  # 1 January


def test_a_quota_month_from_the_15th_adds_up_across_calendar_months(tmp_path: Path) -> None:
    with UsageLedger(tmp_path / "usage.db", Calendar("UTC", 15)) as ledger:
        for day in ("2026-11-14", "2026-11-15", "2026-11-30", "2026-12-14", "2026-12-15"):
            ledger.record("uplink", 100, utc(f"{day}T12:00:00"))
        totals = ledger.totals(utc("2026-12-14T13:00:00"))
    assert (totals.month_start, totals.month_end, totals.month_used) == (date(2026, 11, 15), date(2026, 12, 15), 300)
    assert totals.days_left == 1


def test_the_units_usage_is_what_the_interfaces_saw_or_what_was_recorded_whichever_is_more(tmp_path: Path) -> None:
    at = utc("2026-11-24T03:00:00")
    with UsageLedger(tmp_path / "usage.db", WITA) as ledger:
        ledger.record("uplink", 3000, at)
        ledger.record("throughput/http", 40_000, at)
        assert ledger.totals(at).day_used == 43_000
        ledger.record_counters(sample(0, 0), at)
        ledger.record_counters(sample(30_000, 20_000), at)  # 50 000 seen, measurements included
        assert ledger.totals(at).day_used == 50_000
        ledger.record_counters(sample(0, 100, boot="boot-b"), at)  # rebooted: little seen since
        assert ledger.totals(at).day_used == 50_100


def test_old_days_are_pruned_and_costs_remembered(tmp_path: Path) -> None:
    with UsageLedger(tmp_path / "usage.db", WITA) as ledger:
        ledger.record("uplink", 1, utc("2025-01-01T03:00:00"))
        ledger.record("throughput/speedtest", 48_000_000, utc("2026-11-24T03:00:00"))
        days = [row[0] for row in ledger.conn.execute("SELECT day FROM usage ORDER BY day")]
        assert days == ["2026-11-24"]
        assert ledger.last_cost("throughput/speedtest") == 48_000_000 and ledger.last_cost("nothing") is None
        with pytest.raises(ValueError):
            ledger.record("uplink", -1, utc("2026-11-24T03:00:00"))


# -- the budget --------------------------------------------------------------------------------

def totals(day: int = 0, month: int = 0, days_left: int = 10) -> UsageTotals:
    today = date(2026, 11, 21)
    return UsageTotals(today, date(2026, 11, 1), today + timedelta(days=days_left),
                       {"uplink": day}, {"uplink": month})


@pytest.mark.parametrize("budget, used, expected, allowed, period, reserve", [
    (Budget(), totals(10**9, 10**10), 10**9, True, None, 0),
    (Budget(daily=50_000_000), totals(30_000_000, 30_000_000), 20_000_000, True, None, 0),
    (Budget(daily=50_000_000), totals(30_000_000, 30_000_000), 20_000_001, False, "day", 0),
    (Budget(daily=50_000_000, uplink_reserve=5_000_000), totals(30_000_000, 30_000_000), 15_000_000, True, None, 0),
    (Budget(daily=50_000_000, uplink_reserve=5_000_000), totals(30_000_000, 30_000_000), 16_000_000, False, "day", 5_000_000),
    (Budget(monthly=1_000_000_000), totals(0, 990_000_000), 10_000_000, True, None, 0),
    (Budget(monthly=1_000_000_000), totals(0, 995_000_000), 10_000_000, False, "month", 0),
    # one reserve for each day left in the quota month, today included
    (Budget(monthly=1_000_000_000, uplink_reserve=5_000_000), totals(0, 900_000_000, days_left=10), 50_000_000, True, None, 0),
    (Budget(monthly=1_000_000_000, uplink_reserve=5_000_000), totals(0, 900_000_000, days_left=11), 50_000_000, False, "month", 55_000_000),
    (Budget(daily=50_000_000, monthly=1_000_000_000), totals(45_000_000, 999_000_000), 10_000_000, False, "day", 0),
])
def test_budget_decisions(budget: Budget, used: UsageTotals, expected: int, allowed: bool, period: str | None, reserve: int) -> None:
    decision = budget_decision(budget, used, expected)
    print(decision.reason)
    assert (decision.allowed, decision.period, decision.reserve) == (allowed, period, reserve)


def test_a_skipped_test_is_an_event_reading_with_its_figures() -> None:
    decision = budget_decision(Budget(daily=50_000_000, uplink_reserve=5_000_000), totals(40_000_000), 10_000_000)
    event = skip_event(decision, "http throughput test")
    assert event == Event(
        "budget_skip",
        "http throughput test skipped: it may use 10000000 bytes and this day has used 40000000 of its "
        "50000000 (5000000 kept for the uplink)",
        {"period": "day", "used": 40_000_000, "limit": 50_000_000, "expected": 10_000_000, "reserve": 5_000_000},
    )
    reading = Reading("boat-07", utc("2026-11-24T03:00:00"), "gps", event, seq=7)
    assert reading_from_dict(json.loads(reading.to_json())) == reading


def test_what_a_test_is_expected_to_cost(tmp_path: Path) -> None:
    with UsageLedger(tmp_path / "usage.db", WITA) as ledger:
        assert expected_bytes("http", 4_000_000, ledger) == 4_000_000
        assert expected_bytes("speedtest", 4_000_000, ledger) == SPEEDTEST_FIRST_GUESS
        ledger.record("throughput/speedtest", 52_000_000, utc("2026-11-24T03:00:00"))
        assert expected_bytes("speedtest", 4_000_000, ledger) == 52_000_000
    assert expected_bytes("speedtest", 4_000_000, None) == SPEEDTEST_FIRST_GUESS


# -- config and status -------------------------------------------------------------------------

def test_budget_settings_are_read_and_checked() -> None:
    config = parse_config('[budget]\ndaily = "50MB"\nmonthly = "1GB"\ntimezone = "Asia/Jakarta"\nmonth_start_day = 15\n',
                          require_device_id=False)
    assert (config.budget.daily, config.budget.monthly, config.budget.month_start_day) == (50_000_000, 10**9, 15)
    assert Config().budget.daily == 0
    for text, message in [
        ('[budget]\ntimezone = "WITA"\n', ":2: budget.timezone: unknown time zone 'WITA'"),
        ("[budget]\nmonth_start_day = 31\n", ":2: budget.month_start_day: must be at most 28"),
        ('[budget]\ndaily = 50\n', ":2: budget.daily: expected a size"),
        ('[budget]\nthroughput_cap = "10KB"\n', ':2: budget.throughput_cap: must be at least "100KB"'),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_config(text, require_device_id=False)
        assert message in str(caught.value)


def test_usage_summary_reads_without_creating_the_ledger(tmp_path: Path) -> None:
    config = parse_config(f'[budget]\nledger = "{tmp_path / "usage.db"}"\ndaily = "50MB"\n', require_device_id=False)
    now = utc("2026-11-24T03:00:00")
    empty = usage_summary(config, now)
    assert not (tmp_path / "usage.db").exists()
    assert empty["day"] == {"date": "2026-11-24", "used_bytes": 0, "limit_bytes": 50_000_000, "by_kind": {}}
    with UsageLedger(tmp_path / "usage.db", WITA) as ledger:
        ledger.record("uplink", 2_500_000, now)
    summary = usage_summary(config, now)
    assert summary["day"]["used_bytes"] == summary["month"]["used_bytes"] == 2_500_000
    assert summary["month"]["limit_bytes"] is None and summary["month"]["start"] == "2026-11-01"


def test_status_shows_the_data_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[device]\nid = "unit-1"\n[buffer]\npath = "{tmp_path / "buffer.db"}"\n'
                      f'[budget]\nledger = "{tmp_path / "usage.db"}"\ndaily = "50MB"\n')
    ReadingBuffer(tmp_path / "buffer.db", "unit-1").close()
    with UsageLedger(tmp_path / "usage.db", WITA) as ledger:
        ledger.record("uplink", 2_500_000, datetime.now(timezone.utc))
    assert main(["status", "--json", "--config", str(config)]) == 0
    data = json.loads(capsys.readouterr().out)["data"]
    assert data["day"]["used_bytes"] == 2_500_000 and data["day"]["limit_bytes"] == 50_000_000
    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "data today        2.5 MB of 50 MB" in out and "data this month   2.5 MB (no limit)" in out
