"""The centre's SMS inbox: what each message its gateway reads from the modem becomes.

A unit whose data link is dead sends the centre a signed heartbeat SMS
(:mod:`agent.shared.heartbeat`, docs/sms-heartbeat.md).  The gateway lists the messages
stored on its modem and hands them here; each one becomes exactly one of:

- a heartbeat **stored** as its unit's latest (signature verified with the unit's key,
  counter greater than the last one accepted from that unit);
- a message **refused**, counted under its reason (``Store.refused_sms()``) and kept in the
  log of the newest ones (``Store.sms_log()``): ``replayed`` (a counter already seen), a
  reason of :func:`~agent.shared.heartbeat.decode_heartbeat` (``bad_signature``,
  ``truncated``, ``malformed``, ``unknown_unit``, ``version``, ``not_heartbeat``: an
  operator's quota notice, a person's reply), ``ucs2`` or ``8bit`` (a unit writes only GSM
  7-bit, so such a message is not a unit's, whatever it says), ``unreadable`` (a PDU that does
  not decode).

:func:`classify` decides without touching anything; :func:`file_message` writes the
decision, in one transaction; :func:`process_listing` does both for a whole listing and says
which stored messages the gateway may delete.

Delete only after commit: a message is deleted from the modem only once the transaction that
recorded it has returned.  If the gateway dies between the commit and the delete, the next
listing reads the message again; a heartbeat is then "replayed" (its counter is no longer
new) and so stored once, and is deletable all the same.  A refused message read twice is
counted twice: the counters can be one too high after such a crash, never too low.  When the
database fails, the messages not yet recorded stay on the modem for the next listing.

Keys: one file per unit, ``<keys_dir>/<device>.key``, written by
:func:`agent.shared.heartbeat.new_key` (deploy/ansible/site.yml puts every unit's key there on
the collector hosts).  :class:`KeyFolder` reads a unit's file when its message arrives, so a
unit added to the fleet needs no restart.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, NamedTuple, Protocol, Union

from agent.centre.store.base import Store, StoreError
from agent.shared.heartbeat import Heartbeat, HeartbeatError, HeartbeatKeyError, decode_heartbeat, read_key
from agent.shared.sms_pdu import SmsPduError, decode_deliver

__all__ = [
    "Decision", "KeyFolder", "ListedPdu", "ListedText", "Listing", "Outcome", "ReceivedSms", "classify",
    "file_message", "process_listing",
]

log = logging.getLogger(__name__)

Keys = Callable[[str], Union[bytes, None]]
Result = Literal["stored", "refused"]

# A unit id as a key file may be named after it: what decode_heartbeat reads as an id, but not
# starting with a dot (no hidden files, no "..").
_KEY_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,31}", re.ASCII)
# +CMGL <stat> of messages the modem stores for sending (2, 3; "STO ..." in text mode): not
# received, not the inbox's to read or delete.
_OUTGOING_STATS = (2, 3)


class ListedPdu(Protocol):
    """A stored message of an ``AT+CMGL`` / ``AT+CMGR`` answer in PDU mode
    (``parse_sms.StoredPdu`` is one)."""

    index: int
    stat: int | None
    pdu: str


class ListedText(Protocol):
    """A stored message of an ``AT+CMGL`` answer in text mode (``parse_sms.StoredText`` is one)."""

    index: int
    status: str
    sender: str
    text: str


@dataclass(frozen=True)
class ReceivedSms:
    """One received message: who sent it, its text, and its coding (``gsm7``, ``ucs2``, ``8bit``;
    a text-mode listing does not say, and is taken as ``gsm7``)."""

    sender: str
    text: str
    coding: str = "gsm7"


@dataclass(frozen=True)
class Decision:
    """What a message is, before anything is written: a verified heartbeat (whose counter the
    store still has to find new), or a refusal with its reason."""

    sms: ReceivedSms
    heartbeat: Heartbeat | None
    reason: str | None  # None for a heartbeat
    detail: str = ""


@dataclass(frozen=True)
class Outcome:
    """What became of one message: "stored", or "refused" with ``reason`` ("replayed" among
    them); ``device`` when the message named a unit that was verified."""

    index: int | None
    result: Result
    reason: str | None
    sender: str
    device: str | None = None


class Listing(NamedTuple):
    """What :func:`process_listing` did: the indexes the gateway may now delete (every message
    recorded, in a transaction that returned), and each message's outcome."""

    to_delete: list[int]
    outcomes: list[Outcome]


class KeyFolder:
    """Units' heartbeat keys, one file each: ``<folder>/<device>.key``.  Call it with a unit id:
    its key, or None when it has none (no file, or a file that holds no key: logged)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def __call__(self, device: str) -> bytes | None:
        if not _KEY_NAME.fullmatch(device):
            return None
        path = self.folder / f"{device}.key"
        try:
            return read_key(path.read_text(encoding="ascii"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, HeartbeatKeyError) as exc:
            # The unit's messages are refused as unknown_unit until the file is fixed.
            log.error("heartbeat key of unit %s (%s) is unusable: %s", device, path, exc)
            return None


def classify(sms: ReceivedSms, keys: Keys) -> Decision:
    """What ``sms`` is: a heartbeat whose signature ``keys`` verify, or a refusal and its reason."""
    if sms.coding != "gsm7":
        return Decision(sms, None, sms.coding if sms.coding in ("ucs2", "8bit") else "unreadable",
                        f"coded {sms.coding}; units send GSM 7-bit only")
    try:
        return Decision(sms, decode_heartbeat(sms.text, keys), None)
    except HeartbeatError as exc:
        return Decision(sms, None, exc.reason, str(exc))


def file_message(decision: Decision, store: Store, received_at: datetime, index: int | None = None) -> Outcome:
    """Record ``decision`` in ``store``, in one transaction; raises StoreError when it cannot."""
    sms = decision.sms
    hb = decision.heartbeat
    if hb is not None:
        if store.record_heartbeat(hb, received_at, sms.sender) == "stored":
            log.info("unit %s alive by SMS from %s: heartbeat %d, backlog %d, data down: %s",
                     hb.device, sms.sender, hb.counter, hb.backlog, hb.reason)
            return Outcome(index, "stored", None, sms.sender, hb.device)
        log.warning("heartbeat %d of unit %s from %s refused: replayed (not newer than the last one accepted)",
                    hb.counter, hb.device, sms.sender)
        return Outcome(index, "refused", "replayed", sms.sender, hb.device)
    reason = decision.reason or "unreadable"
    store.count_refused_sms(reason, received_at, sms.sender, sms.text, sms.coding)
    # Another party's ordinary message is no trouble; anything else that looks like ours is.
    level = logging.INFO if reason == "not_heartbeat" else logging.WARNING
    log.log(level, "SMS from %s refused (%s): %s", sms.sender, reason, decision.detail or sms.text[:60])
    return Outcome(index, "refused", reason, sms.sender)


def _received(message: ListedPdu | ListedText) -> ReceivedSms | str | None:
    """The message's sender, text and coding; why it cannot be read; or None for a message
    stored for sending."""
    if hasattr(message, "pdu"):
        if getattr(message, "stat", None) in _OUTGOING_STATS:
            return None
        try:
            sms = decode_deliver(message.pdu)
        except SmsPduError as exc:
            return str(exc)
        return ReceivedSms(sms.sender, sms.text, sms.coding)
    if str(getattr(message, "status", "")).upper().startswith("STO"):
        return None
    return ReceivedSms(message.sender, message.text)


def process_listing(messages: Iterable[ListedPdu | ListedText], store: Store, keys: Keys,
                    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> Listing:
    """Record every received message of a listing, one transaction each, in the listing's
    order; return the indexes the gateway may delete and each message's outcome.

    Messages the modem stores for sending are left alone (neither recorded nor deletable).
    When the store fails, processing stops there: what was recorded is deletable, the rest
    stays on the modem for the next listing (the StoreError is logged, not raised).
    """
    to_delete: list[int] = []
    outcomes: list[Outcome] = []
    for message in messages:
        received = _received(message)
        if received is None:
            continue
        if isinstance(received, str):
            decision = Decision(ReceivedSms("", getattr(message, "pdu", "")[:200], "unreadable"), None, "unreadable",
                                received)
        else:
            decision = classify(received, keys)
        try:
            outcome = file_message(decision, store, now(), message.index)
        except StoreError as exc:
            log.error("SMS at index %d not recorded, left on the modem: %s", message.index, exc)
            break
        outcomes.append(outcome)
        to_delete.append(message.index)
    return Listing(to_delete, outcomes)
