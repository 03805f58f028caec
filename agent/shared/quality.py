"""Signal quality classes from measured levels, per radio technology.

Thresholds and their sources are in ``docs/signal-quality.md``.  No service is ``none``;
a reading without any usable level is ``none`` only when the modem said so, never because
a level was unknown.
"""
from __future__ import annotations

from agent.shared.reading import QUALITIES

# The quality classes worst first, the scale on which they compare (QUALITIES, the schema's
# list of values, is best first).
QUALITY_ORDER: tuple[str, ...] = tuple(reversed(QUALITIES))

# (excellent, good, fair) lower bounds; anything below "fair" is "poor".
RSRP_LTE = (-80.0, -90.0, -100.0)       # Teltonika Networks wiki, 4G RSRP
SS_RSRP_NR = (-85.0, -95.0, -105.0)     # SOTI XSight legend, 5G NR SS-RSRP (good: midpoint of "average")
RSCP_WCDMA = (-70.0, -85.0, -100.0)     # SOTI XSight legend, 3G RSCP
RSSI_GSM = (-70.0, -85.0, -100.0)       # Teltonika Networks wiki, 2G RSSI


def _classify(value: float, bounds: tuple[float, float, float]) -> str:
    excellent, good, fair = bounds
    if value >= excellent:
        return "excellent"
    if value >= good:
        return "good"
    if value >= fair:
        return "fair"
    return "poor"


def signal_quality(rat: str, rsrp_dbm: float | None = None, rscp_dbm: float | None = None,
                   rssi_dbm: float | None = None) -> str | None:
    """Quality class, or None when no level fit for ``rat`` is known."""
    if rat == "NONE":
        return "none"
    if rat in ("LTE", "NR5G-NSA") and rsrp_dbm is not None:  # NSA: the LTE anchor carries control
        return _classify(rsrp_dbm, RSRP_LTE)
    if rat == "NR5G-SA" and rsrp_dbm is not None:
        return _classify(rsrp_dbm, SS_RSRP_NR)
    if rat == "WCDMA" and rscp_dbm is not None:
        return _classify(rscp_dbm, RSCP_WCDMA)
    if rssi_dbm is not None:
        return _classify(rssi_dbm, RSSI_GSM)
    return None


def quality_at_least(quality: str | None, floor: str) -> bool:
    """Whether ``quality`` is ``floor`` or better; an unknown quality (None) never is."""
    return quality in QUALITY_ORDER and QUALITY_ORDER.index(quality) >= QUALITY_ORDER.index(floor)
