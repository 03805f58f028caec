"""What the front panel shows and what its button means: pure rules, no GPIO.

``led_patterns(state)`` maps the unit's state to one :class:`Pattern` per light; the same
table is printed for technicians in ``docs/panel.md``.  :class:`PressTracker` turns the
button's press, hold and release moments into at most one action per press.

Six patterns, each told apart by watching a light for two seconds, in daylight too:

    off         dark
    flash       a short blink every 2 s (mostly dark)
    slow blink  1 s on, 1 s off
    fast blink  about three blinks a second
    wink        on, with a short dark gap every 2 s (mostly lit)
    on          lit

On every light, ``on`` is good, blinking means "not there yet", ``fast blink`` asks for
attention and ``off`` means the part is absent or switched off.
"""
from __future__ import annotations

from dataclasses import dataclass

from agent.shared.reading import QUALITIES

GPS_FIXES = ("absent", "none", "2d", "3d")
UPLINK_STATES = ("connected", "connecting", "disabled")
LIGHTS = ("gps", "signal", "uplink", "backlog")

TAG = "tag"
SHUTDOWN = "shutdown"


@dataclass(frozen=True)
class Pattern:
    """One light's behaviour: ``on_s`` lit then ``off_s`` dark, repeated; ``count`` times, or for ever."""

    name: str
    on_s: float
    off_s: float
    count: int | None = None

    @property
    def is_off(self) -> bool:
        return self.on_s == 0

    @property
    def is_on(self) -> bool:
        return self.off_s == 0 and self.on_s > 0


OFF = Pattern("off", 0.0, 1.0)
ON = Pattern("on", 1.0, 0.0)
FLASH = Pattern("flash", 0.2, 1.8)
SLOW = Pattern("slow blink", 1.0, 1.0)
FAST = Pattern("fast blink", 0.15, 0.15)
WINK = Pattern("wink", 1.75, 0.25)

# Shown on every light at once, over the state patterns.
ACKNOWLEDGE = Pattern("acknowledge", 0.1, 0.1, count=3)  # a spot was tagged
ACKNOWLEDGE_S = 0.9  # three flickers, then a dark pause that sets the status patterns apart
HALTING = ON                                              # shutting down: wait until all go dark

GPS_PATTERNS = {"absent": OFF, "none": SLOW, "2d": WINK, "3d": ON}
SIGNAL_PATTERNS = {"excellent": ON, "good": WINK, "fair": SLOW, "poor": FAST, "none": FLASH, None: OFF}
UPLINK_PATTERNS = {"connected": ON, "connecting": SLOW, "disabled": OFF}


@dataclass(frozen=True)
class PanelState:
    """What the unit wants the panel to show.

    ``gps_fix``: ``absent`` (no receiver answering), ``none`` (searching), ``2d``, ``3d``.
    ``signal_quality``: the last signal reading's quality; None when the modem gave no level
    (not answering, no SIM), which is not the same as ``none`` (no service: a blank spot).
    ``uplink``: ``connected``, ``connecting`` (trying, or waiting to retry), ``disabled``.
    ``backlog``: readings in the buffer not yet acknowledged by the broker.
    ``backlog_full``: the buffer is close to its size limit, or has dropped readings.
    """

    gps_fix: str = "absent"
    signal_quality: str | None = None
    uplink: str = "disabled"
    backlog: int = 0
    backlog_full: bool = False

    def __post_init__(self) -> None:
        if self.gps_fix not in GPS_FIXES:
            raise ValueError(f"gps_fix: expected one of {GPS_FIXES}, got {self.gps_fix!r}")
        if self.signal_quality is not None and self.signal_quality not in QUALITIES:
            raise ValueError(f"signal_quality: expected one of {QUALITIES} or None, got {self.signal_quality!r}")
        if self.uplink not in UPLINK_STATES:
            raise ValueError(f"uplink: expected one of {UPLINK_STATES}, got {self.uplink!r}")
        if isinstance(self.backlog, bool) or not isinstance(self.backlog, int) or self.backlog < 0:
            raise ValueError(f"backlog: expected a count of readings, got {self.backlog!r}")


def backlog_pattern(backlog: int, full: bool) -> Pattern:
    if full:
        return FAST
    return ON if backlog > 0 else OFF


def led_patterns(state: PanelState) -> dict[str, Pattern]:
    """The pattern of each light (keys: ``LIGHTS``) for ``state``."""
    return {
        "gps": GPS_PATTERNS[state.gps_fix],
        "signal": SIGNAL_PATTERNS[state.signal_quality],
        "uplink": UPLINK_PATTERNS[state.uplink],
        "backlog": backlog_pattern(state.backlog, state.backlog_full),
    }


def press_action(pressed_s: float, hold_s: float, bounce_s: float) -> str | None:
    """What a press of ``pressed_s`` seconds means once the button is let go.

    Shorter than ``bounce_s`` is contact chatter or a spike on a long wire: nothing.  From
    ``hold_s`` on it is a long press (normally already acted on while still held).
    """
    if pressed_s >= hold_s:
        return SHUTDOWN
    if pressed_s < bounce_s:
        return None
    return TAG


class PressTracker:
    """One button's presses, from the moments it went down, was held and came up.

    Each press yields at most one action: ``SHUTDOWN`` as soon as the button has been held
    ``hold_s`` (the release that follows yields nothing), otherwise ``TAG`` on release.  Times
    are any monotonic clock's seconds; the caller is responsible for serialising calls.
    """

    def __init__(self, hold_s: float, bounce_s: float) -> None:
        if not 0 <= bounce_s < hold_s:
            raise ValueError(f"need 0 <= bounce_s < hold_s, got bounce_s={bounce_s}, hold_s={hold_s}")
        self.hold_s = hold_s
        self.bounce_s = bounce_s
        self._down_at: float | None = None
        self._acted = False

    @property
    def is_down(self) -> bool:
        return self._down_at is not None

    def pressed(self, now: float) -> None:
        self._down_at = now
        self._acted = False

    def held(self, now: float) -> str | None:
        # A hold report racing a release arrives after it: the press is over, nothing to do.
        if self._down_at is None or self._acted:
            return None
        self._acted = True
        return SHUTDOWN

    def released(self, now: float) -> str | None:
        if self._down_at is None:
            return None
        pressed_s, acted = now - self._down_at, self._acted
        self._down_at, self._acted = None, False
        if acted:
            return None
        return press_action(pressed_s, self.hold_s, self.bounce_s)
