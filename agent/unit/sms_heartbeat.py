"""When the unit sends its SMS heartbeat, what it says, and the counter and budget it keeps.

Pure, apart from :class:`HeartbeatFile` (a few bytes beside the buffer).  The modem side is
:mod:`agent.unit.sms_duty`; the message itself :mod:`agent.shared.heartbeat`.

The rule (docs/sms-heartbeat.md, "On the unit"):

- nothing while ``sms.numbers`` is empty, or while the centre has confirmed a batch less than
  ``sms.after`` ago (since the agent started, when it has confirmed none in this run);
- then one heartbeat, and another every ``sms.every`` while the data stays down;
- at most ``sms.max_per_day`` and ``sms.max_per_month`` heartbeats (each goes to every number);
  one beyond is skipped, and the skip is said once a day;
- a heartbeat that reached no number is tried again after ``RETRY_FIRST_S``, doubling up to
  ``sms.every``: a SIM without credit is not asked again and again.

Times here are monotonic seconds, except the calendar day and month of the budget.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

from agent.shared.heartbeat import MAX_COUNT, counter_from_time
from agent.shared.reading import NO_SERVICE_REGISTRATIONS, Signal
from agent.unit.durable_file import replace_durably

log = logging.getLogger(__name__)

RETRY_FIRST_S = 1800.0
# An operator's notice about the quota explains the outage for this long (a top-up ends it
# sooner: the data comes back and no heartbeat is sent).
QUOTA_NOTICE_S = 3 * 86400.0
# Words of the operators' notices that a data quota or the balance ran out (Indonesian and
# English): "Kuota internet Anda telah habis", "Paket data Anda sudah habis", "Pulsa Anda tidak cukup".
QUOTA_WORDS = re.compile(r"\b(kuota|habis|quota|paket|pulsa|exhausted|depleted|used up)\b", re.IGNORECASE)


@dataclass(frozen=True)
class SmsPolicy:
    numbers: tuple[str, ...]
    after_s: float = 3600.0
    every_s: float = 21600.0
    max_per_day: int = 4
    max_per_month: int = 60
    retry_first_s: float = RETRY_FIRST_S

    @property
    def enabled(self) -> bool:
        return bool(self.numbers)


@dataclass
class Outage:
    """What the policy remembers of this outage, in memory (monotonic seconds)."""

    down_since: float  # the last confirmation, or the agent's start
    last_sent: float | None = None  # the last heartbeat that reached a number
    last_tried: float | None = None  # the last heartbeat due, sent or skipped or failed
    failures: int = 0  # heartbeats in a row that reached no number


@dataclass(frozen=True)
class Decision:
    action: str  # "off" | "wait" | "send" | "skip"
    wait_s: float = 0.0  # with "wait": until it is worth asking again
    why: str = ""  # with "skip": "max_per_day" | "max_per_month"


@dataclass
class Ledger:
    """What survives a restart: the last counter used and the heartbeats sent per day and month."""

    counter: int | None = None
    day: str = ""
    sent_day: int = 0
    month: str = ""
    sent_month: int = 0
    skip_said: str = ""  # the day a skip was last recorded

    def on(self, day: str) -> "Ledger":
        """These counts as of ``day`` (YYYY-MM-DD): a new day or month starts from nothing."""
        fresh = replace(self)
        if fresh.day != day:
            fresh.day, fresh.sent_day = day, 0
        if fresh.month != day[:7]:
            fresh.month, fresh.sent_month = day[:7], 0
        return fresh


def decide(policy: SmsPolicy, outage: Outage, ledger: Ledger, now: float, day: str) -> Decision:
    """What to do at ``now`` (monotonic) on calendar ``day``."""
    if not policy.enabled:
        return Decision("off")
    due = outage.down_since + policy.after_s
    if outage.failures:
        assert outage.last_tried is not None
        due = max(due, outage.last_tried + retry_wait(policy, outage.failures))
    elif outage.last_tried is not None and outage.last_tried >= outage.down_since:
        due = max(due, outage.last_tried + policy.every_s)
    if now < due:
        return Decision("wait", wait_s=due - now)
    counts = ledger.on(day)
    if counts.sent_day >= policy.max_per_day:
        return Decision("skip", why="max_per_day")
    if counts.sent_month >= policy.max_per_month:
        return Decision("skip", why="max_per_month")
    return Decision("send")


def retry_wait(policy: SmsPolicy, failures: int) -> float:
    """The wait after ``failures`` heartbeats in a row that reached nobody: doubling to ``every``."""
    return min(policy.every_s, policy.retry_first_s * 2 ** min(failures - 1, 30))


def next_counter(ledger: Ledger, now: datetime | None) -> int:
    """The counter of the next heartbeat: above the last one used and, when the clock is
    trusted (``now`` given), at least the seconds since 2020, so that a lost file never
    brings back a counter the centre has seen."""
    floor = 0 if ledger.counter is None else ledger.counter + 1
    if now is not None:
        floor = max(floor, counter_from_time(now))
    return min(floor, MAX_COUNT)


def is_quota_notice(text: str) -> bool:
    """Whether an SMS says the data quota or the balance ran out."""
    return QUOTA_WORDS.search(text) is not None


def reason(*, uplink_error: str | None, signal: Signal | None, quota_notice_age_s: float | None) -> str:
    """Why the data is down, as one of agent.shared.heartbeat.REASONS."""
    if quota_notice_age_s is not None and quota_notice_age_s < QUOTA_NOTICE_S:
        return "quota_exhausted"
    if signal is not None and signal.error is None and (
            signal.rat == "NONE" or signal.registration in NO_SERVICE_REGISTRATIONS):
        return "no_signal"
    error = (uplink_error or "").lower()
    if any(word in error for word in ("not authori", "bad user name", "password", "banned")):
        return "login_refused"
    if any(word in error for word in ("name or service not known", "temporary failure in name resolution",
                                      "network is unreachable", "no route to host", "nodename nor servname")):
        return "no_data_service"
    if error and any(word in error for word in ("broker", "connection", "timed out", "refused")):
        return "broker_unreachable"
    return "unknown"


def rat_word(rat: str | None) -> str | None:
    """A reading's radio technology as the heartbeat writes it."""
    return {"GSM": "gsm", "WCDMA": "umts", "LTE": "lte", "NR5G-NSA": "nr", "NR5G-SA": "nr", "NONE": "none"}.get(rat or "")


def level_dbm(signal: Signal) -> int | None:
    """RSRP on LTE and NR, RSSI on GSM and UMTS; None when not known or out of the message's range."""
    value = signal.rsrp_dbm if signal.rat in ("LTE", "NR5G-NSA", "NR5G-SA") else signal.rssi_dbm
    if value is None:
        return None
    level = round(value)
    return level if -200 <= level <= 0 else None


@dataclass
class HeartbeatFile:
    """The :class:`Ledger` in a small JSON file, replaced whole (write, fsync, rename)."""

    path: Path
    _cache: Ledger | None = field(default=None, repr=False)

    def read(self) -> Ledger:
        if self._cache is not None:
            return replace(self._cache)
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            known = {k: raw[k] for k in Ledger.__dataclass_fields__ if k in raw}
            ledger = Ledger(**known)
            if ledger.counter is not None and (type(ledger.counter) is not int or ledger.counter < 0):
                raise ValueError(f"counter {ledger.counter!r}")
        except FileNotFoundError:
            ledger = Ledger()
        except (OSError, ValueError, TypeError) as exc:
            # Starting again from the time is safe (next_counter); keeping no budget for a day is the cost.
            log.warning("heartbeat counter file %s unreadable (%s): starting from the clock", self.path, exc)
            ledger = Ledger()
        self._cache = replace(ledger)
        return ledger

    def write(self, ledger: Ledger) -> None:
        """Durably, before the message that uses its counter is sent.  Raises OSError."""
        replace_durably(self.path, json.dumps(asdict(ledger)))
        self._cache = replace(ledger)


def heartbeat_path(buffer_path: Path) -> Path:
    """The counter file beside the buffer."""
    return buffer_path.with_name(buffer_path.name + ".sms")
