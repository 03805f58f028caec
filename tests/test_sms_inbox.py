"""The centre's SMS inbox: heartbeats stored once, everything else refused and counted by reason.

Messages are real SMS-DELIVER PDUs as a modem lists them (``AT+CMGL``), recorded in a real
SQLite file and a real PostgreSQL; keys are files in a folder, as deploy/ansible lays them.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.centre.sms_inbox import KeyFolder, ReceivedSms, classify, process_listing
from agent.centre.store import open_store
from agent.centre.store.readonly import open_store_readonly
from agent.commands.main import main
from agent.shared.heartbeat import Heartbeat, encode_heartbeat, new_key, read_key
from agent.shared.sms_pdu import encode_deliver
from agent.unit.devices.modem.parse_sms import StoredPdu, StoredText, parse_cmgl_pdu
from tests.support.postgres import db_url, postgres_url, store  # noqa: F401  (fixtures)
from tests.support.readings_factory import signal_reading
from tests.support.served_map import served
from tests.support.heartbeat_keys import keys_folder

UNIT_NUMBER = "+6281234567001"
SENT = datetime(2026, 5, 1, 18, 0, 5, tzinfo=timezone(timedelta(hours=8)))
# The centre's clock when it reads the messages: after the readings the tests store.
LATER = datetime.now(timezone.utc) + timedelta(hours=1)
HB = Heartbeat(device="boat_7", counter=1043, time=datetime(2026, 5, 1, 10, 0, tzinfo=timezone.utc), lat=-0.50123,
               lon=117.15321, backlog=4312, oldest=datetime(2026, 4, 30, 6, 12, tzinfo=timezone.utc), last_seq=987654,
               rat="lte", operator="51010", level_dbm=-112, uptime_s=259217, reason="quota_exhausted")
QUOTA_NOTICE = "Kuota internet Anda telah habis. Beli paket baru di *363# atau MyTelkomsel."


@pytest.fixture
def keys(tmp_path: Path) -> KeyFolder:
    return KeyFolder(keys_folder(tmp_path))


def key_of(keys: KeyFolder, device: str) -> bytes:
    return read_key((keys.folder / f"{device}.key").read_text(encoding="ascii"))


def listed(*texts: str, sender: str = UNIT_NUMBER, coding: str = "gsm7", first: int = 1) -> list[StoredPdu]:
    """The messages as ``AT+CMGL=4`` in PDU mode prints them, parsed as the gateway parses them."""
    lines = []
    for index, text in enumerate(texts, start=first):
        pdu = encode_deliver(sender, text, SENT, coding=coding)  # type: ignore[arg-type]
        lines += [f"+CMGL: {index},0,,{len(pdu) // 2 - 8}", pdu]
    return parse_cmgl_pdu(lines + ["OK"])


def at(minutes: int = 0):
    return lambda: LATER + timedelta(minutes=minutes)


# -- heartbeats stored -----------------------------------------------------------------------

def test_a_heartbeat_is_stored_with_its_contents_and_may_then_be_deleted(store, keys) -> None:
    text = encode_heartbeat(HB, key_of(keys, "boat_7"))
    to_delete, outcomes = process_listing(listed(text, first=3), store, keys, now=at())
    assert to_delete == [3]
    assert [(o.index, o.result, o.reason, o.device, o.sender) for o in outcomes] == [
        (3, "stored", None, "boat_7", UNIT_NUMBER)]
    kept = store.heartbeats()["boat_7"]
    assert kept.heartbeat == HB and kept.sender == UNIT_NUMBER and kept.source == "sms"
    assert kept.received_at == LATER.replace(microsecond=LATER.microsecond // 1000 * 1000)
    assert store.refused_sms() == {}


def test_a_newer_heartbeat_replaces_the_last(store, keys) -> None:
    key = key_of(keys, "boat_7")
    newer = replace(HB, counter=HB.counter + 1, backlog=5000, reason="no_signal")
    assert process_listing(listed(encode_heartbeat(HB, key), encode_heartbeat(newer, key)), store, keys,
                           now=at()).to_delete == [1, 2]
    assert store.heartbeats()["boat_7"].heartbeat == newer


def test_a_listing_read_twice_stores_its_heartbeat_once_and_is_deletable_both_times(store, keys) -> None:
    """The gateway killed between the commit and the delete reads the same messages again."""
    messages = listed(encode_heartbeat(HB, key_of(keys, "boat_7")), QUOTA_NOTICE, first=7)
    first = process_listing(messages, store, keys, now=at())
    again = process_listing(messages, store, keys, now=at(1))
    assert first.to_delete == again.to_delete == [7, 8]
    assert [(o.result, o.reason) for o in first.outcomes] == [("stored", None), ("refused", "not_heartbeat")]
    assert [(o.result, o.reason) for o in again.outcomes] == [("refused", "replayed"), ("refused", "not_heartbeat")]
    assert store.heartbeats()["boat_7"].received_at < LATER + timedelta(minutes=1), "stored once: the first"
    assert store.refused_sms() == {"not_heartbeat": 2, "replayed": 1}


# -- refused, by reason ------------------------------------------------------------------------

def test_forged_heartbeats_are_refused_as_bad_signature(store, keys) -> None:
    genuine = encode_heartbeat(HB, key_of(keys, "boat_7"))
    other_key = encode_heartbeat(HB, read_key(new_key()))
    changed = genuine.replace("b=3BS", "b=3BT")  # one character of the backlog
    assert changed != genuine
    resigned_as_other_unit = encode_heartbeat(replace(HB, device="probe-2"), key_of(keys, "boat_7"))
    outcomes = process_listing(listed(other_key, changed, resigned_as_other_unit), store, keys, now=at()).outcomes
    assert [o.reason for o in outcomes] == ["bad_signature"] * 3
    assert store.heartbeats() == {} and store.refused_sms() == {"bad_signature": 3}
    assert [m["text"] for m in store.sms_log()] == [other_key, changed, resigned_as_other_unit]


def test_a_replayed_or_older_heartbeat_is_refused_also_after_a_restart(db_url, keys) -> None:
    key = key_of(keys, "boat_7")
    with open_store(db_url) as store:
        assert process_listing(listed(encode_heartbeat(HB, key)), store, keys, now=at()).outcomes[0].result == "stored"
        assert process_listing(listed(encode_heartbeat(HB, key)), store, keys, now=at(1)).outcomes[0].reason == \
            "replayed"
    with open_store(db_url) as restarted:
        older = encode_heartbeat(replace(HB, counter=HB.counter - 1), key)
        outcomes = process_listing(listed(encode_heartbeat(HB, key), older), restarted, keys, now=at(2)).outcomes
        assert [(o.result, o.reason, o.device) for o in outcomes] == [("refused", "replayed", "boat_7")] * 2
        assert restarted.refused_sms() == {"replayed": 3}
        assert restarted.heartbeats()["boat_7"].heartbeat == HB
        assert restarted.record_heartbeat(replace(HB, counter=HB.counter + 1), LATER, UNIT_NUMBER) == "stored"


def test_a_heartbeat_cut_anywhere_is_truncated(store, keys) -> None:
    text = encode_heartbeat(HB, key_of(keys, "boat_7"))
    cuts = [text[:n] for n in (3, 10, 40, len(text) - 13, len(text) - 12, len(text) - 5, len(text) - 1)]
    outcomes = process_listing(listed(*cuts), store, keys, now=at()).outcomes
    assert [o.reason for o in outcomes] == ["truncated"] * len(cuts)
    assert store.refused_sms() == {"truncated": len(cuts)}


def test_a_ucs2_message_is_refused_whatever_it_says(store, keys) -> None:
    """A unit writes GSM 7-bit only: even a well-signed heartbeat in UCS2 is not one of its."""
    short = replace(HB, lat=None, lon=None, oldest=None, backlog=0, rat=None, operator=None, level_dbm=None)
    text = encode_heartbeat(short, key_of(keys, "boat_7"))  # 70 characters fit one UCS2 message
    outcomes = process_listing(listed(text, "Pulsa Anda Rp 0 ✓", coding="ucs2"), store, keys, now=at()).outcomes
    assert [o.reason for o in outcomes] == ["ucs2", "ucs2"]
    assert store.heartbeats() == {} and store.refused_sms() == {"ucs2": 2}
    assert [(m["coding"], m["text"]) for m in store.sms_log()] == [("ucs2", text), ("ucs2", "Pulsa Anda Rp 0 ✓")]


def test_a_unit_without_a_key_file_is_unknown(store, keys) -> None:
    stranger = encode_heartbeat(replace(HB, device="boat_9"), read_key(new_key()))
    (keys.folder / "probe-2.key").write_text("not a key\n", encoding="ascii")
    broken = encode_heartbeat(replace(HB, device="probe-2"), read_key(new_key()))
    dots = "BS1 .. 1 t=0 b=0 s=0 u=0 w=quota AAAAAAAAAAAA"
    outcomes = process_listing(listed(stranger, broken, dots), store, keys, now=at()).outcomes
    assert [o.reason for o in outcomes] == ["unknown_unit"] * 3
    assert store.refused_sms() == {"unknown_unit": 3}


def test_an_operators_notice_is_not_a_heartbeat_and_is_kept_in_the_log(store, keys) -> None:
    result = process_listing(listed(QUOTA_NOTICE, sender="TELKOMSEL"), store, keys, now=at())
    assert result.to_delete == [1] and result.outcomes[0].reason == "not_heartbeat"
    assert store.refused_sms() == {"not_heartbeat": 1}
    [logged] = store.sms_log()
    assert (logged["sender"], logged["reason"], logged["coding"], logged["text"]) == (
        "TELKOMSEL", "not_heartbeat", "gsm7", QUOTA_NOTICE)


def test_malformed_version_and_unreadable_are_counted_and_outgoing_messages_left_alone(store, keys) -> None:
    key = key_of(keys, "boat_7")
    body = "BS1 boat/7 10 t=3AY940 b=3BS s=L62U u=5K0H w=sleepy"  # signed, but no such reason
    digest = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
    malformed = body + " " + base64.b32encode(digest).decode("ascii")[:12]
    messages = listed(malformed, "BS2 boat/7 1 whatever AAAAAAAAAAAA")
    messages += [StoredPdu(index=5, stat=0, length=3, pdu="07911111"),  # cut short: does not decode
                 StoredPdu(index=6, stat=2, length=20, pdu="0011000B911632547698F00000AA05E8329BFD06")]
    result = process_listing(messages, store, keys, now=at())
    assert result.to_delete == [1, 2, 5], "a message stored for sending is not the inbox's to delete"
    assert [o.reason for o in result.outcomes] == ["malformed", "version", "unreadable"]
    assert store.refused_sms() == {"malformed": 1, "unreadable": 1, "version": 1}


def test_a_text_mode_listing_is_read_as_gsm7(store, keys) -> None:
    text = encode_heartbeat(HB, key_of(keys, "boat_7"))
    messages = [StoredText(4, "REC UNREAD", UNIT_NUMBER, "26/05/01,18:00:05+32", text),
                StoredText(5, "STO SENT", "+62811", None, "sent by the centre")]
    result = process_listing(messages, store, keys, now=at())
    assert result.to_delete == [4] and store.heartbeats()["boat_7"].heartbeat == HB


def test_nothing_is_deletable_when_the_store_cannot_record(db_url, keys) -> None:
    open_store(db_url).close()  # the database exists at this schema
    reader = open_store_readonly(db_url)
    try:
        result = process_listing(listed(encode_heartbeat(HB, key_of(keys, "boat_7")), QUOTA_NOTICE), reader, keys,
                                 now=at())
    finally:
        reader.close()
    assert result == ([], []), "left on the modem for the next listing"


def test_classify_decides_without_a_store(keys) -> None:
    text = encode_heartbeat(HB, key_of(keys, "boat_7"))
    assert classify(ReceivedSms(UNIT_NUMBER, text), keys).heartbeat == HB
    assert classify(ReceivedSms(UNIT_NUMBER, text, "8bit"), keys).reason == "8bit"
    assert classify(ReceivedSms("TELKOMSEL", QUOTA_NOTICE), keys).reason == "not_heartbeat"


def test_the_log_keeps_only_the_newest_messages(tmp_path, keys) -> None:
    from agent.centre.store.sms_kept import KEPT_MESSAGES

    with open_store(f"sqlite:///{tmp_path}/c.db") as store:
        for n in range(KEPT_MESSAGES + 5):
            store.count_refused_sms("not_heartbeat", LATER, "TELKOMSEL", f"notice {n}")
        log = store.sms_log()
        assert len(log) == KEPT_MESSAGES and log[0]["text"] == "notice 5"
        assert store.refused_sms() == {"not_heartbeat": KEPT_MESSAGES + 5}


# -- what an operator sees ------------------------------------------------------------------

def fleet_db(tmp_path: Path, keys: KeyFolder) -> str:
    """boat_7 sent readings and a status, then went quiet but for a heartbeat; probe-2's status
    is newer than its heartbeat; boat-1 never sent one; and a forgery was refused."""
    url = f"sqlite:///{tmp_path}/collector.db"
    with open_store(url) as store:
        store.insert_readings([replace(signal_reading("boat_7"), seq=seq) for seq in range(1, 4)]
                              + [replace(signal_reading("boat-1"), seq=1)])
        store.update_unit("boat_7", "online", datetime.now(timezone.utc), {"state": "online"})
        store.update_unit("probe-2", "online", LATER + timedelta(hours=1), {"state": "online"})
        process_listing(listed(encode_heartbeat(HB, key_of(keys, "boat_7")),
                               encode_heartbeat(replace(HB, device="probe-2"), key_of(keys, "probe-2")),
                               encode_heartbeat(HB, read_key(new_key()))), store, keys, now=at())
    return url


EXPECTED_LINE = ("boat_7: alive by SMS at 2026-05-01T10:00:00.000Z, backlog 4312 (oldest 1d 3h), "
                 "last signal lte Telkomsel -112 dBm, data down: quota exhausted")


def test_blankspot_units_says_alive_by_sms_and_counts_refusals(tmp_path, keys, capsys) -> None:
    db = fleet_db(tmp_path, keys)
    assert main(["units", "--db", db]) == 0
    text = capsys.readouterr().out
    assert EXPECTED_LINE in text.splitlines()
    assert "probe-2: alive" not in text and "boat-1: alive" not in text, "a newer status, or no heartbeat"
    assert text.rstrip().endswith("SMS not stored as heartbeats: bad_signature 1")

    assert main(["units", "--db", db, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    units = {u["device"]: u for u in answer["units"]}
    sms = units["boat_7"]["alive_by_sms"]
    assert (sms["time"], sms["backlog"], sms["oldest"], sms["oldest_age_s"], sms["operator"], sms["level_dbm"],
            sms["reason"], sms["sender"], sms["counter"]) == (
        "2026-05-01T10:00:00.000Z", 4312, "2026-04-30T06:12:00.000Z", 100_080, "510-10", -112, "quota_exhausted",
        UNIT_NUMBER, 1043)
    assert "alive_by_sms" not in units["boat-1"] and "alive_by_sms" not in units["probe-2"]
    assert set(units["boat-1"]) == {"device", "state", "last_seen", "stored", "top", "backlog", "fault", "holes",
                                    "missing"}, "units without heartbeats keep their keys"
    assert answer["refused_sms"] == {"bad_signature": 1}


def test_units_without_heartbeats_print_as_before(tmp_path, capsys) -> None:
    db = f"sqlite:///{tmp_path}/c.db"
    with open_store(db) as store:
        store.insert_readings([replace(signal_reading("boat-1"), seq=1)])
    assert main(["units", "--db", db]) == 0
    text = capsys.readouterr().out
    assert "SMS" not in text and len(text.splitlines()) == 2


def test_the_fleet_panel_answer_carries_alive_by_sms(tmp_path, keys) -> None:
    db = fleet_db(tmp_path, keys)
    with served(db) as server:
        answer = server.get("api/fleet").json
    units = {u["device"]: u for u in answer["units"]}
    assert units["boat_7"]["alive_by_sms"]["text"] == EXPECTED_LINE.split(": ", 1)[1]
    assert units["boat_7"]["alive_by_sms"]["operator_name"] == "Telkomsel"
    assert "alive_by_sms" not in units["probe-2"] and "alive_by_sms" not in units["boat-1"]
    assert answer["refused_sms"] == {"bad_signature": 1}
