"""Where the data the tests read lives (tests/data/, see its README for provenance)."""
from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
NMEA = DATA / "nmea"
ROUTE = DATA / "mahakam-route.csv"
AT_ANSWERS = DATA / "at" / "answers.jsonl"
SMS_PDUS = DATA / "sms" / "pdus.jsonl"
SMS_ANSWERS = DATA / "sms" / "answers.jsonl"
