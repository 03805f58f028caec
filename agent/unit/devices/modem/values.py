"""What the pure parsers return.

Signal-related parsers all return :class:`SignalFacts`: the subset of a ``signal`` reading
that one command reveals, every field None when that command does not tell it.  The probe
merges the facts of several commands (in the model profile's order) into one reading.
Levels are already converted to dBm / dB; "not known" levels are None, never a sentinel.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from agent.shared.operators import operator_name


@dataclass(frozen=True)
class SignalFacts:
    registration: str | None = None  # a word of agent.shared.reading.REGISTRATIONS
    operator: str | None = None      # name as the network or modem gives it
    mcc: str | None = None           # three digits
    mnc: str | None = None           # two or three digits, as the network broadcasts them
    rat: str | None = None           # GSM | WCDMA | LTE | NR5G-NSA | NR5G-SA | NONE
    band: int | None = None
    earfcn: int | None = None        # EARFCN / UARFCN / ARFCN / NR-ARFCN of the serving cell
    pci: int | None = None           # physical cell id (LTE, NR) or PSC (WCDMA) or BSIC (GSM)
    cell_id: int | None = None
    tac: int | None = None
    lac: int | None = None
    rssi_dbm: float | None = None
    rsrp_dbm: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None
    rscp_dbm: float | None = None
    ecio_db: float | None = None
    csq: int | None = None           # raw +CSQ rssi index 0..31, None for 99
    no_service: bool = False         # the command itself says there is no service (SEARCH, NO SERVICE, +CSQ: 99,99)
    domain: str | None = None        # the registration domain ``registration`` speaks for: cs (+CREG), ps (+CGREG),
                                     # eps (+CEREG), 5gs (+C5GREG); None when the command speaks for the whole modem

    def merged(self, other: "SignalFacts") -> "SignalFacts":
        """These facts, with gaps filled from ``other`` (self wins where both know)."""
        updates = {f.name: getattr(other, f.name) for f in fields(self)
                   if f.name != "domain" and getattr(self, f.name) is None and getattr(other, f.name) is not None}
        result = replace(self, **updates)
        return replace(result, no_service=self.no_service or other.no_service, domain=None)


@dataclass(frozen=True)
class Registration:
    """+CREG / +CGREG / +CEREG / +C5GREG, read (``?``) or unsolicited."""

    n: int | None                  # the URC mode, present in read answers only
    stat: int                      # 0..11 as in TS 27.007
    registration: str              # the stat as a word of agent.shared.reading.REGISTRATIONS
    lac: int | None = None         # from <lac> (CREG/CGREG)
    tac: int | None = None         # from <tac> (CEREG/C5GREG)
    cell_id: int | None = None
    act: int | None = None         # access technology number (TS 27.007 <AcT>)
    rat: str | None = None         # <AcT> as GSM | WCDMA | LTE | NR5G-NSA | NR5G-SA

    def facts(self, domain: str | None = None) -> SignalFacts:
        """As signal facts; ``domain`` (cs, ps, eps, 5gs) says which domain the registration is of."""
        return SignalFacts(registration=self.registration, lac=self.lac, tac=self.tac, cell_id=self.cell_id,
                           rat=self.rat, domain=domain)


@dataclass(frozen=True)
class OperatorChoice:
    """One entry of +COPS=? (an operator visible here)."""

    status: str                    # available | current | forbidden | unknown
    long_name: str | None
    short_name: str | None
    mcc: str | None
    mnc: str | None
    rat: str | None                # GSM | WCDMA | LTE | NR5G-NSA | NR5G-SA, None when not given

    @property
    def operator(self) -> str | None:
        """The name to show: the long name the network gives, else the operator table's, else None."""
        return self.long_name or operator_name(self.mcc, self.mnc)


@dataclass(frozen=True)
class CurrentOperator:
    """+COPS? answer."""

    mode: int
    name: str | None               # as given (long, short or numeric per <format>)
    mcc: str | None
    mnc: str | None
    rat: str | None


@dataclass(frozen=True)
class Identity:
    """ATI / +CGMI / +CGMM / +CGMR: who the modem says it is."""

    manufacturer: str | None = None
    model: str | None = None
    revision: str | None = None
