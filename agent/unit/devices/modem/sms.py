"""Short messages through the modem's AT channel, in PDU mode (``AT+CMGF=0``).

Sending builds the SMS-SUBMIT with :func:`agent.shared.sms_pdu.encode_submit` (GSM 7-bit,
one message) and types it after ``AT+CMGS``'s prompt; receiving lists the SIM's messages
with ``AT+CMGL=4`` and leaves the decoding to :func:`agent.shared.sms_pdu.decode_deliver`.
A refused send is a :class:`SendResult` with the ``+CMS ERROR`` code, its meaning and its kind
(:func:`~agent.unit.devices.modem.parse_sms.cms_error_kind`), never an exception: the caller
records it and tries again later.  A modem that does not answer raises, as every command does.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from agent.shared.sms_pdu import SmsPduError, encode_submit
from agent.unit.devices.modem.at import AtChannel, AtResponse
from agent.unit.devices.modem.errors import AtParseError, AtTimeout
from agent.unit.devices.modem.parse_sms import (
    StoredPdu, cms_error_kind, parse_cmgl_pdu, parse_cmgs, parse_cms_error, parse_csca,
)

log = logging.getLogger(__name__)

# TS 27.005 says nothing of how long a network takes; modem manuals give AT+CMGS up to 120 s.
# Longer than a minute holds the channel (and the signal readings behind its lock) too long:
# a send that has not finished by then counts as failed, and is tried again later.
SEND_TIMEOUT_S = 60.0
PROMPT_TIMEOUT_S = 5.0
ALL_MESSAGES = 4  # AT+CMGL=4: every message, read or not (PDU mode's "ALL")


@dataclass(frozen=True)
class SendResult:
    """How one ``AT+CMGS`` ended."""

    ok: bool
    reference: int | None = None  # the network's message reference, when sent
    code: int | None = None  # the +CMS ERROR code
    meaning: str = ""  # in plain words
    kind: str = ""  # cms_error_kind's, or "no_answer" when the send never finished


def use_pdu_mode(channel: AtChannel) -> None:
    """``AT+CMGF=0``: every message below is hex, whatever the last user set."""
    channel.query("AT+CMGF=0")


def send_text(channel: AtChannel, number: str, text: str, *, timeout: float = SEND_TIMEOUT_S) -> SendResult:
    """Send ``text`` (GSM 7-bit, at most 160 characters) to ``number`` as one SMS.

    Raises :class:`SmsPduError` for a text or number that cannot be sent (the caller's bug),
    ModemError subclasses for a port that is gone.
    """
    pdu, octets = encode_submit(number, text)
    use_pdu_mode(channel)
    try:
        response = channel.send_after_prompt(f"AT+CMGS={octets}", pdu, prompt_timeout=PROMPT_TIMEOUT_S,
                                             timeout=timeout)
    except AtTimeout as exc:
        return SendResult(False, meaning=f"no answer: {exc}", kind="no_answer")
    return _result(response)


def _result(response: AtResponse) -> SendResult:
    final = response.final
    if final.ok:
        for line in response.lines:
            try:
                return SendResult(True, reference=parse_cmgs(line))
            except AtParseError:
                continue
        return SendResult(True)  # OK without +CMGS: sent, the reference not told
    if final.kind == "+CMS ERROR":
        try:
            code, meaning = parse_cms_error(f"+CMS ERROR: {final.code if final.code is not None else final.text or ''}")
        except AtParseError:
            code, meaning = final.code, final.text or "unknown"
        return SendResult(False, code=code, meaning=meaning, kind=cms_error_kind(code))
    detail = f"{final.kind}" + (f": {final.text}" if final.text else "")
    return SendResult(False, code=final.code, meaning=detail, kind="other")


def announce_new_messages(channel: AtChannel) -> None:
    """``AT+CNMI=2,1``: the modem sends ``+CMTI: <storage>,<index>`` for each message it stores
    (and keeps the message). Raises AtCommandError when the modem refuses: then only listing
    finds new messages."""
    channel.query("AT+CNMI=2,1")


def list_messages(channel: AtChannel, timeout: float | None = None) -> list[StoredPdu]:
    """Every message in the preferred storage, as ``AT+CMGL=4`` prints them (marks them read);
    ``timeout`` for a full SIM on slow firmware.  PDU mode is set first: a modem reset
    forgets it."""
    use_pdu_mode(channel)
    return parse_cmgl_pdu(channel.query(f"AT+CMGL={ALL_MESSAGES}", timeout).splitlines())


def delete_message(channel: AtChannel, index: int) -> None:
    """``AT+CMGD=<index>``: the message at ``index`` is gone from the SIM."""
    channel.query(f"AT+CMGD={index}")


def service_centre(channel: AtChannel) -> str | None:
    """The SIM's SMS service centre number (``AT+CSCA?``); None when none is set."""
    return parse_csca(channel.query("AT+CSCA?"))


__all__ = ["SendResult", "SmsPduError", "announce_new_messages", "delete_message", "list_messages", "send_text",
           "service_centre", "use_pdu_mode"]
