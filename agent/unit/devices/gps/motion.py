"""Motion from successive fixes: distance travelled and speed, for the mobile scheduler.

Receiver noise makes a moored boat wander a few metres per epoch; summing that would count
kilometres on a boat that never moved.  A step counts only when it is longer than the
position's uncertainty (``min_step_m``, or 5 m times HDOP when the fix gives one).
"""
from __future__ import annotations

from dataclasses import dataclass

from agent.unit.devices.gps.fix import Fix
from agent.shared.geo import haversine_m


@dataclass
class Odometer:
    min_step_m: float = 10.0
    distance_m: float = 0.0
    speed_kmh: float | None = None
    _anchor: tuple[float, float, float] | None = None  # lat, lon, monotonic seconds

    def update(self, fix: Fix, monotonic_s: float) -> float:
        """Add a fix taken at ``monotonic_s``; returns metres added (0 for a fix without position)."""
        if fix.lat is None or fix.lon is None or fix.fix == "none":
            return 0.0
        if self._anchor is None:
            self._anchor = (fix.lat, fix.lon, monotonic_s)
            self.speed_kmh = fix.speed_kmh
            return 0.0
        lat, lon, t0 = self._anchor
        step = haversine_m(lat, lon, fix.lat, fix.lon)
        threshold = max(self.min_step_m, 5.0 * fix.hdop) if fix.hdop is not None else self.min_step_m
        if step < threshold:
            self.speed_kmh = fix.speed_kmh if fix.speed_kmh is not None else 0.0
            return 0.0
        elapsed = monotonic_s - t0
        self.speed_kmh = fix.speed_kmh if fix.speed_kmh is not None else (step / elapsed * 3.6 if elapsed > 0 else None)
        self.distance_m += step
        self._anchor = (fix.lat, fix.lon, monotonic_s)
        return step
