"""Sierra Wireless's AT!GSTATUS? and AT!LTEINFO?, as the EM7455/MC7455/EM7565 print them.

Neither is a comma-separated answer.  ``!GSTATUS?`` is a status screen: ``Label: value``
pairs, two to a line, the columns separated by tabs or runs of spaces, with blanks left
after values::

    !GSTATUS:
    Current Time:  1373		Temperature: 53
    Reset Counter: 3		Mode:        ONLINE
    System mode:   LTE        	PS state:    Attached
    LTE band:      B8     		LTE bw:      5 MHz
    LTE Rx chan:   3764		LTE Tx chan: 21764
    EMM state:     Registered     	Normal Service
    PCC RxM RSSI:  -84		RSRP (dBm):  -110
    PCC RxD RSSI:  -85		RSRP (dBm):  -118
    Tx Power:      --		TAC:         E2EA (58090)
    RSRQ (dB):     -12.7		Cell ID:     02C3484A (46352458)
    SINR (dB):      1.0

``!LTEINFO?`` is a table: a ``Serving:`` header row of column names and, under it, the
serving cell's values in fixed-width columns (TAC decimal, CID hex, ``--`` for unknown),
then intra- and inter-frequency neighbours, which are not read.

Choices, from the captures in tests/data/at:

- ``Mode`` other than ONLINE (``LOW POWER MODE``: the screen stops after that line) means
  the radio is off: no measurement at all, so :class:`AtParseError`, never a blank spot.
- The levels are the main receiver's (``PCC RxM``); the diversity branch (``RxD``) is a second
  antenna's view of the same cell and reads -140 dBm when that antenna is not fitted.
- TAC and cell id are printed in hex with the decimal after them; when the two disagree (an
  edited paste) neither is believed.
- Registration is left to +CREG/+CEREG: the screen cannot tell home from roaming.  A cell is
  named as serving (rat LTE) only while ``EMM state`` says ``Registered``.
- ``System mode`` WCDMA or GSM gives the rat only: no capture shows those screens' levels.
  A system mode none of the captures shows is an :class:`AtParseError`.
"""
from __future__ import annotations

import re

from agent.unit.devices.modem.errors import AtParseError
from agent.unit.devices.modem.fields import printed_codes
from agent.unit.devices.modem.values import SignalFacts

__all__ = ["parse_gstatus", "parse_lteinfo"]

_DEC = re.compile(r"[+-]?[0-9]{1,7}(?:\.[0-9]{1,3})?", re.ASCII)
_INT = re.compile(r"[0-9]{1,9}", re.ASCII)
_HEX = re.compile(r"[0-9A-Fa-f]{1,9}", re.ASCII)
_HEX_AND_DECIMAL = re.compile(r"([0-9A-Fa-f]{1,9})(?:\s*\(\s*([0-9]{1,11})\s*\))?", re.ASCII)
_BAND = re.compile(r"B\s*([0-9]{1,3})", re.ASCII | re.IGNORECASE)


def _text_lines(text: str, prefix: str) -> list[str]:
    """The lines after the one that starts with ``prefix`` (a blank after it allowed)."""
    if not isinstance(text, str):
        raise AtParseError(f"response must be text, got {type(text).__name__}")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for index, line in enumerate(lines):
        if line.strip().upper().startswith(prefix):
            return lines[index + 1:]
    raise AtParseError(f"no {prefix} line in {text[:80]!r}")


def _number(text: str | None, low: float, high: float) -> float | None:
    if text is None or not _DEC.fullmatch(text):
        return None
    value = float(text)
    return value if low <= value <= high else None


def _integer(text: str | None, low: int, high: int) -> int | None:
    if text is None or not _INT.fullmatch(text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def _identity(value: int | None, bits: int) -> int | None:
    # All ones, and 0xFFFE for an area code ("deleted", TS 23.003 4.1), name nothing.
    if value is None or value >= (1 << bits) or value == (1 << bits) - 1 or (bits == 16 and value in (0, 0xFFFE)):
        return None
    return value


# ---------------------------------------------------------------- AT!GSTATUS?

# Every label the captured screens print.  Labels are found by name, so two on one line and
# values of several words ("Registered     <TAB>Normal Service") need no column positions.
_LABELS = (
    "Current Time", "Temperature", "Reset Counter", "Mode", "System mode", "PS state", "LTE band", "LTE bw",
    "LTE Rx chan", "LTE Tx chan", "LTE CA state", "LTE Scell band", "LTE Scell bw", "LTE Scell chan", "EMM state",
    "RRC state", "IMS reg state", "PCC RxM RSSI", "PCC RxD RSSI", "SCC RxM RSSI", "SCC RxD RSSI", "RSRP (dBm)",
    "Tx Power", "TAC", "RSRQ (dB)", "Cell ID", "SINR (dB)",
)
_LABEL = re.compile(
    r"(?<!\S)(" + "|".join(re.escape(label) for label in sorted(_LABELS, key=len, reverse=True)) + r")\s*:"
)
_SYSTEM_RAT = {"LTE": "LTE", "WCDMA": "WCDMA", "GSM": "GSM"}


def _screen(lines: list[str]) -> dict[str, str]:
    """``{label: value}``; an ``RSRP (dBm)`` is keyed by its line's RSSI label (``PCC RxM RSRP``)."""
    found: dict[str, str] = {}
    for line in lines:
        matches = list(_LABEL.finditer(line))
        for index, m in enumerate(matches):
            end = matches[index + 1].start() if index + 1 < len(matches) else len(line)
            value = " ".join(line[m.end():end].split())
            label = m.group(1)
            if label == "RSRP (dBm)" and matches[0].group(1).endswith("RSSI"):
                label = matches[0].group(1)[: -len("RSSI")] + "RSRP"
            found.setdefault(label, value)
    return found


def _hex_checked(text: str | None, bits: int) -> int | None:
    """``D5AC (54700)``: the hex value, when the decimal beside it (if any) agrees."""
    m = _HEX_AND_DECIMAL.fullmatch(text or "")
    if m is None:
        return None
    value = int(m.group(1), 16)
    if m.group(2) is not None and int(m.group(2)) != value:
        return None
    return _identity(value, bits)


def parse_gstatus(text: str) -> SignalFacts:
    """``!GSTATUS:`` status screen -> rat, band, channel, TAC, cell id and levels of the serving cell."""
    screen = _screen(_text_lines(text, "!GSTATUS:"))
    mode = screen.get("Mode")
    if mode is None:
        raise AtParseError(f"!GSTATUS without Mode: {text[:80]!r}")
    if mode.upper() != "ONLINE":
        raise AtParseError(f"radio is not online ({mode!r}): no measurement")
    system = screen.get("System mode")
    if system is None:
        return SignalFacts()  # online, but no serving system on the screen: nothing to claim
    rat = _SYSTEM_RAT.get(system.upper())
    if rat is None:
        raise AtParseError(f"unknown !GSTATUS system mode {system!r}")
    registered = screen.get("EMM state", "Registered").upper().startswith("REGISTERED")
    if rat != "LTE":
        return SignalFacts(rat=rat if registered else None)
    band = _BAND.fullmatch(screen.get("LTE band", ""))
    return SignalFacts(
        rat="LTE" if registered else None,
        band=_integer(band.group(1), 1, 255) if band else None,
        earfcn=_integer(screen.get("LTE Rx chan"), 0, 262143),
        tac=_hex_checked(screen.get("TAC"), 16),
        cell_id=_hex_checked(screen.get("Cell ID"), 28),
        rssi_dbm=_number(screen.get("PCC RxM RSSI"), -130, -1),
        rsrp_dbm=_number(screen.get("PCC RxM RSRP"), -156, -31),
        rsrq_db=_number(screen.get("RSRQ (dB)"), -43, 3),
        sinr_db=_number(screen.get("SINR (dB)"), -23, 40),
    )


# ---------------------------------------------------------------- AT!LTEINFO?

_SECTION = re.compile(r"^\s*[A-Za-z][A-Za-z ]*:")


def parse_lteinfo(text: str) -> SignalFacts:
    """``!LTEINFO:`` -> the serving LTE cell: PLMN, TAC, cell id, band, EARFCN, PCI, levels."""
    lines = _text_lines(text, "!LTEINFO:")
    header_at = next((i for i, line in enumerate(lines) if line.strip().upper().startswith("SERVING:")), None)
    if header_at is None:
        raise AtParseError(f"!LTEINFO without a Serving: table in {text[:80]!r}")
    names = [name.upper() for name in lines[header_at].split()[1:]]
    if "EARFCN" not in names or "RSRP" not in names:
        raise AtParseError(f"!LTEINFO Serving: header is not the serving cell's columns: {lines[header_at]!r}")
    row = next((line for line in lines[header_at + 1:] if line.strip()), "")
    if not row.strip() or _SECTION.match(row):
        return SignalFacts()  # no serving cell listed (an unseen screen): nothing to claim
    values = row.split()
    if len(values) != len(names):
        raise AtParseError(f"!LTEINFO serving row has {len(values)} values for {len(names)} columns: {row!r}")
    cell = dict(zip(names, values))
    # The columns are right-aligned numbers: an MNC's zeros are not printed, its country's rule restores them.
    mcc, mnc = printed_codes(cell.get("MCC", ""), cell.get("MNC", ""))
    cid = cell.get("CID")
    return SignalFacts(
        rat="LTE",
        mcc=mcc,
        mnc=mnc,
        earfcn=_integer(cell.get("EARFCN"), 0, 262143),
        tac=_identity(_integer(cell.get("TAC"), 0, 65535), 16),
        cell_id=_identity(int(cid, 16), 28) if cid is not None and _HEX.fullmatch(cid) else None,
        band=_integer(cell.get("BD"), 1, 255),
        pci=_integer(cell.get("PCI"), 0, 503),
        sinr_db=_number(cell.get("SNR"), -23, 40),
        rsrq_db=_number(cell.get("RSRQ"), -43, 3),
        rsrp_dbm=_number(cell.get("RSRP"), -156, -31),
        rssi_dbm=_number(cell.get("RSSI"), -130, -1),
    )
