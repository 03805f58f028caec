"""Messages gammu-smsd hands to its ``RunOnReceive`` program, filed like the gateway's.

gammu-smsd (1.28 and later) runs ``RunOnReceive`` once per received message (or per
multipart message) with the message in its environment (gammu-smsd-run(7)):

- ``SMS_MESSAGES``: how many physical messages; ``DECODED_PARTS``: how many decoded parts;
- per message ``n`` from 1: ``SMS_<n>_NUMBER`` (the sender), ``SMS_<n>_TEXT`` (the text,
  absent for an 8-bit binary message), ``SMS_<n>_CLASS``.

gammu does not say how a message was coded.  A unit writes GSM 7-bit only, so a text with a
character outside that alphabet came as UCS2 and is refused as ``ucs2``; a message without
text is ``8bit``.  A multipart message is several physical messages, each filed on its own
(a heartbeat is never split, so none of them is one).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timezone

from agent.centre.sms_inbox import Keys, Outcome, ReceivedSms, classify, file_message
from agent.centre.store.base import Store
from agent.shared.gsm_alphabet import is_gsm7

__all__ = ["GammuEnvironmentError", "file_gammu_messages", "gammu_messages"]

log = logging.getLogger(__name__)

# gammu-smsd's own limit on a multipart message is far below this; a larger count is not gammu's.
_MOST_MESSAGES = 255


class GammuEnvironmentError(ValueError):
    """The environment is not one gammu-smsd's RunOnReceive sets; ``str()`` says what is missing."""


def gammu_messages(environ: Mapping[str, str]) -> list[ReceivedSms]:
    """The messages in a RunOnReceive environment, in gammu's order."""
    count_text = environ.get("SMS_MESSAGES")
    if count_text is None:
        raise GammuEnvironmentError("SMS_MESSAGES is not set: run this from gammu-smsd's RunOnReceive")
    try:
        count = int(count_text.strip())
    except ValueError:
        raise GammuEnvironmentError(f"SMS_MESSAGES is not a whole number: {count_text!r}") from None
    if not 0 <= count <= _MOST_MESSAGES:
        raise GammuEnvironmentError(f"SMS_MESSAGES must be 0 to {_MOST_MESSAGES}, got {count}")
    messages = []
    for n in range(1, count + 1):
        sender = environ.get(f"SMS_{n}_NUMBER", "")
        text = environ.get(f"SMS_{n}_TEXT")
        if text is None:
            messages.append(ReceivedSms(sender, "", "8bit"))
        else:
            messages.append(ReceivedSms(sender, text, "gsm7" if is_gsm7(text) else "ucs2"))
    return messages


def file_gammu_messages(environ: Mapping[str, str], store: Store, keys: Keys,
                        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> list[Outcome]:
    """File every message of a RunOnReceive environment, one transaction each.

    Raises StoreError when the database cannot be written (what was filed before stays
    filed), GammuEnvironmentError when the environment is not gammu's.
    """
    outcomes = []
    for sms in gammu_messages(environ):
        outcomes.append(file_message(classify(sms, keys), store, now()))
    return outcomes
