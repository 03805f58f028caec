"""From modem answers to the ``signal`` part of a reading (pure).

Each signal command of a model profile is parsed into :class:`SignalFacts`; the facts are
merged in the profile's order of preference (the first command that knows a field wins),
except registration, where the best state any command reports wins: a unit registered on
GSM while LTE searches is in service.

A command that names the technology the unit is served on (a serving-cell report, +COPS?
with <AcT>, +QNWINFO) is evidence of service on its own, unless another command says there
is no service on that technology: an explicit no service (rat NONE: +QENG SEARCH, +CPSI NO
SERVICE ...), or a registration command of that technology's domain that is not registered
(+CEREG speaks for LTE, +C5GREG for NR standalone, +CREG and +CGREG for GSM and WCDMA).  So
a unit on NR standalone whose +CEREG and +CREG say "not registered", and whose +CSQ says
99 (it measures GSM/WCDMA/LTE only), is served on NR5G-SA with registration ``unknown``
(nothing says home or roaming), not a blank spot.

No service is a normal reading: ``rat`` NONE, ``quality`` none, ``registration`` says why,
and whatever levels the modem still measured are kept as evidence.  Attached for emergency
bearer services or for restricted local operator services only (``emergency_only``,
``rlos_only``) is no service too: the cell is there, but the public cannot use it.
Registered for "SMS only" or "CSFB not preferred" is service: the data bearer is there, only
circuit-switched voice and SMS differ.  A modem that did not
answer, or has no usable SIM, gives a reading with ``error`` set instead: that is not
evidence of a blank spot, and the collector never counts it as one.
"""
from __future__ import annotations

from typing import Callable

from agent.unit.devices.modem.errors import AtParseError
from agent.unit.devices.modem.framing import command_prefix
from agent.shared.operators import operator_name
from agent.unit.devices.modem.parse_3gpp import parse_cesq, parse_cops, parse_csq, parse_registration
from agent.unit.devices.modem.parse_huawei import parse_hcsq, parse_sysinfoex
from agent.unit.devices.modem.parse_quectel import parse_qcsq, parse_qeng_servingcell, parse_qnwinfo, parse_qspn
from agent.unit.devices.modem.parse_sierra import parse_gstatus, parse_lteinfo
from agent.unit.devices.modem.parse_simcom import parse_cpsi
from agent.unit.devices.modem.parse_telit import parse_rfsts
from agent.unit.devices.modem.values import SignalFacts
from agent.shared.quality import signal_quality
from agent.shared.reading import NO_SERVICE_REGISTRATIONS, REGISTRATIONS, SERVED_REGISTRATIONS, Signal

# Which registration a reading keeps when commands differ: the best state any of them
# reports.  Full service first; then registered with circuit-switched voice or SMS
# restricted (the data bearer is there); then attached for emergency or restricted local
# services only; then the states without service.
_REGISTRATION_RANK = {
    "home": 7, "roaming": 7,
    "sms_only_home": 6, "sms_only_roaming": 6, "csfb_not_preferred_home": 6, "csfb_not_preferred_roaming": 6,
    "emergency_only": 5, "rlos_only": 5,
    "denied": 4, "searching": 3, "not_registered": 2, "unknown": 1,
}
assert set(_REGISTRATION_RANK) == set(REGISTRATIONS)

# The technologies a registration domain speaks for (TS 27.007 7.2, 10.1.19, 10.1.22, 10.1.x
# of +C5GREG): "not registered" in one says nothing of the others.  +CREG and +CGREG on LTE
# follow the combined attach, which a data-only LTE unit does not make, so they do not speak
# for LTE; +CEREG speaks for the LTE anchor of EN-DC too.
_DOMAIN_RATS = {
    "cs": frozenset({"GSM", "WCDMA"}),
    "ps": frozenset({"GSM", "WCDMA"}),
    "eps": frozenset({"LTE", "NR5G-NSA"}),
    "5gs": frozenset({"NR5G-SA"}),
}


def _registration(domain: str) -> Callable[[str], SignalFacts]:
    def parse(text: str) -> SignalFacts:
        return parse_registration(text).facts(domain)
    return parse


def _cops(text: str, charset: str | None = None) -> SignalFacts:
    current = parse_cops(text, charset)
    numeric = current.name is not None and current.name.isdigit()
    return SignalFacts(operator=None if numeric else current.name, mcc=current.mcc, mnc=current.mnc, rat=current.rat)


PARSERS: dict[str, Callable[[str], SignalFacts]] = {
    "+CSQ": parse_csq,
    "+CESQ": parse_cesq,
    "+CREG": _registration("cs"),
    "+CGREG": _registration("ps"),
    "+CEREG": _registration("eps"),
    "+C5GREG": _registration("5gs"),
    "+COPS": _cops,
    "+QENG": parse_qeng_servingcell,
    "+QNWINFO": parse_qnwinfo,
    "+QCSQ": parse_qcsq,
    "+QSPN": parse_qspn,
    "+CPSI": parse_cpsi,
    "^HCSQ": parse_hcsq,
    "^SYSINFOEX": parse_sysinfoex,
    "#RFSTS": parse_rfsts,
    "!GSTATUS": parse_gstatus,
    "!LTEINFO": parse_lteinfo,
}


def has_parser(command: str) -> bool:
    return command_prefix(command) in PARSERS


def facts_from_answer(command: str, text: str, charset: str | None = None) -> SignalFacts:
    """Parse the answer to one signal command; AtParseError for anything unexpected.

    ``charset`` is the modem's ``AT+CSCS`` character set, which the operator name of
    ``+COPS?`` is printed in (None when not known).
    """
    prefix = command_prefix(command)
    if prefix == "+COPS":
        return _cops(text, charset)
    parser = PARSERS.get(prefix or "")
    if parser is None:
        raise AtParseError(f"{command}: no signal parser for this command")
    return parser(text)


def _speaks_against(facts: SignalFacts, rat: str) -> bool:
    """Whether ``facts`` say there is no service on ``rat``."""
    if facts.rat == "NONE":
        return True
    if facts.registration in NO_SERVICE_REGISTRATIONS:
        return facts.domain is None or rat in _DOMAIN_RATS.get(facts.domain, frozenset())
    return False


def _served_on(facts: list[SignalFacts]) -> str | None:
    """The first technology a command says the unit is served on that no command denies."""
    for item in facts:
        if item.rat not in (None, "NONE") and item.registration is None and not item.no_service:
            if not any(_speaks_against(other, item.rat) for other in facts):
                return item.rat
    return None


def signal_from_facts(facts: list[SignalFacts]) -> Signal:
    """One ``signal`` part from the facts of several commands, in order of preference."""
    merged = SignalFacts()
    for item in facts:
        merged = merged.merged(item)
    known = [f.registration for f in facts if f.registration]
    registration = max(known, key=lambda r: _REGISTRATION_RANK.get(r, 0)) if known else "unknown"
    levels = (merged.rsrp_dbm, merged.rscp_dbm, merged.rssi_dbm)
    if registration in SERVED_REGISTRATIONS:
        in_service = True
    elif _served_on(facts) is not None:
        in_service, registration = True, "unknown"  # served, but nothing says home or roaming
    elif registration == "unknown":
        in_service = any(v is not None for v in levels) and not merged.no_service
    else:
        in_service = False
    # The codes as a pair, from the first command that gives both: never one command's MCC
    # beside another's MNC.
    mcc, mnc = next(((f.mcc, f.mnc) for f in facts if f.mcc is not None and f.mnc is not None), (None, None))
    operator = merged.operator
    if operator is None:
        operator = operator_name(mcc, mnc)
    if not in_service:
        rat, quality = "NONE", "none"
        if registration == "unknown" and merged.no_service:
            registration = "searching"
    else:
        # The first technology a command names for the service; in service on an unknown
        # technology, or without any level: null, never a guess.
        rat = next((f.rat for f in facts
                    if f.rat not in (None, "NONE") and f.registration not in NO_SERVICE_REGISTRATIONS),
                   None) or _rat_from_levels(merged)
        quality = None if rat is None else signal_quality(
            rat, rsrp_dbm=merged.rsrp_dbm, rscp_dbm=merged.rscp_dbm, rssi_dbm=merged.rssi_dbm)
    return Signal(
        registration=registration, operator=operator, mcc=mcc, mnc=mnc, rat=rat,
        band=merged.band, earfcn=merged.earfcn, pci=merged.pci, cell_id=merged.cell_id, tac=merged.tac,
        lac=merged.lac, rssi_dbm=merged.rssi_dbm, rsrp_dbm=merged.rsrp_dbm, rsrq_db=merged.rsrq_db,
        sinr_db=merged.sinr_db, rscp_dbm=merged.rscp_dbm, ecio_db=merged.ecio_db, csq=merged.csq,
        quality=quality, error=None,
    )


def _rat_from_levels(facts: SignalFacts) -> str | None:
    if facts.rsrp_dbm is not None:
        return "LTE"
    if facts.rscp_dbm is not None:
        return "WCDMA"
    return None


def error_signal(reason: str, registration: str = "unknown") -> Signal:
    """The modem did not answer, or cannot measure (no SIM): not a blank spot."""
    return Signal(registration=registration, rat="NONE", quality=None, error=reason)
