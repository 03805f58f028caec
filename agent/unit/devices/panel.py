"""The front panel through gpiozero: four status lights, a push button, a power-fail input.

Everything is built from a gpiozero pin factory: the Pi's own (lgpio) in the field,
``gpiozero.pins.mock.MockFactory`` in tests.  What the lights show and what a press means
are the pure rules of :mod:`agent.unit.devices.panel_policy`; wiring and the technician's
reading of the lights are in ``docs/panel.md``.

Use::

    panel = Panel.from_config(config.panel, pin_factory=None,
                              on_tag=record_event,          # (Event) -> None
                              on_shutdown=flush_and_halt,   # () -> None
                              on_power_fail=flush_and_halt) # () -> None
    panel.show(PanelState(gps_fix="3d", signal_quality="fair", uplink="connecting",
                          backlog=120, backlog_full=False))
    panel.close()

- ``show`` is cheap and may be called as often as the state is known: a light whose
  pattern does not change is left alone (a blink is never restarted).
- ``on_tag`` gets ``Event(type="tag", message=<tag_label>, data={"source": "button"})``
  after a short press; the caller adds position and time and buffers it.
- ``on_shutdown`` is called once the button has been held ``hold_time`` (the release that
  follows does not tag).  ``on_power_fail`` is called once external power has been gone
  ``power_fail_delay`` without a break; power returning earlier cancels it.  Either one
  lights every light steadily until ``close()``: the caller flushes the buffer and runs
  ``shutdown_command``; the panel itself never shuts anything down.
- Callbacks run on gpiozero's and the panel's own threads: keep them short (hand the work
  to the main loop).  An exception in one is logged, never raised into gpiozero.
- With ``enabled = false`` nothing is opened and ``show`` does nothing.
- Opening a pin that does not exist or is taken raises :class:`PanelError`.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Callable, Protocol

from gpiozero import LED, Button, DigitalInputDevice, Factory
from gpiozero.exc import GPIOZeroError

from agent.unit.config import PanelConfig
from agent.unit.devices.panel_policy import (
    ACKNOWLEDGE, ACKNOWLEDGE_S, HALTING, LIGHTS, SHUTDOWN, TAG, PanelState, Pattern, PressTracker, led_patterns,
)
from agent.shared.reading import Event

__all__ = ["Panel", "PanelError", "PanelState"]

log = logging.getLogger(__name__)

TagCallback = Callable[[Event], None]
Callback = Callable[[], None]


class Cancellable(Protocol):
    def cancel(self) -> None: ...


# Runs the callback once after so many seconds unless cancelled first.
StartTimer = Callable[[float, Callback], Cancellable]


def start_timer(seconds: float, action: Callback) -> threading.Timer:
    """A daemon ``threading.Timer``, started: the panel's timers in the field."""
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()
    return timer


class PanelError(RuntimeError):
    """A panel part could not be opened: the pin does not exist or is taken."""


class Panel:
    """The unit's lights, button and power input; build it with :meth:`from_config`."""

    def __init__(
        self,
        config: PanelConfig,
        leds: dict[str, LED],
        button: Button | None,
        power: DigitalInputDevice | None,
        *,
        on_tag: TagCallback | None = None,
        on_shutdown: Callback | None = None,
        on_power_fail: Callback | None = None,
        clock: Callable[[], float] = time.monotonic,
        timer: StartTimer = start_timer,
        time_scale: float = 1.0,
    ) -> None:
        self.config = config
        self._leds = leds
        self._button = button
        self._power = power
        self._on_tag = on_tag
        self._on_shutdown = on_shutdown
        self._on_power_fail = on_power_fail
        self._clock = clock
        self._start_timer = timer
        self._scale = time_scale
        self._lock = threading.Lock()
        self._closed = False
        self._state = PanelState()
        self._showing: dict[str, Pattern] = {}
        self._acknowledging = 0  # generation of the running acknowledgement; 0 when none
        self._ack_timer: Cancellable | None = None
        self._halting = False
        self._presses = PressTracker(config.hold_time, config.bounce_time)
        self._power_timer: Cancellable | None = None
        self._power_losses = 0  # counts the losses, so a timer knows whether it is the current one
        with self._lock:
            self._apply(led_patterns(self._state))
        if button is not None:
            button.when_pressed = self._pressed
            button.when_held = self._held
            button.when_released = self._released
        if power is not None:
            power.when_activated = self._power_changed
            power.when_deactivated = self._power_changed
            self._power_changed()  # booted without external power: the delay starts now

    @classmethod
    def from_config(
        cls,
        config: PanelConfig,
        pin_factory: Factory | None = None,
        *,
        on_tag: TagCallback | None = None,
        on_shutdown: Callback | None = None,
        on_power_fail: Callback | None = None,
        clock: Callable[[], float] = time.monotonic,
        timer: StartTimer = start_timer,
        time_scale: float = 1.0,
    ) -> Panel:
        """Open the fitted parts (pin 0: not fitted).  ``clock`` times the button's presses and
        ``timer`` runs the panel's delays; tests give their own.  ``time_scale`` multiplies
        every light pattern's times; tests run them faster."""
        opened: list = []
        leds: dict[str, LED] = {}
        button = power = None

        def open_part(key: str, make: Callable[[int], object]) -> object | None:
            pin = getattr(config, key)
            if not pin:
                return None
            try:
                part = make(pin)
            except (GPIOZeroError, OSError) as exc:
                for device in reversed(opened):
                    device.close()
                raise PanelError(f"panel: cannot open GPIO {pin} (panel.{key}): {exc}") from None
            opened.append(part)
            return part

        if config.enabled:
            for light in LIGHTS:
                led = open_part(f"{light}_led", lambda pin: LED(pin, pin_factory=pin_factory))
                if led is not None:
                    leds[light] = led  # type: ignore[assignment]
            # The button closes to ground; chatter is filtered by PressTracker, not by the pin
            # factory, whose bounce handling (RPi.GPIO) can swallow the release edge.
            button = open_part("button_pin", lambda pin: Button(
                pin, pull_up=True, hold_time=config.hold_time, pin_factory=pin_factory))
            # Pulled up: suits an optocoupler or an open-drain power-good output, and a
            # driven divider does not mind.
            power = open_part("power_pin", lambda pin: DigitalInputDevice(
                pin, pull_up=True, pin_factory=pin_factory))
            log.info("panel: lights %s, button %s, power input %s",
                     {light: getattr(config, f"{light}_led") for light in leds} or "none",
                     config.button_pin or "none", config.power_pin or "none")
        return cls(config, leds, button, power, on_tag=on_tag,  # type: ignore[arg-type]
                   on_shutdown=on_shutdown, on_power_fail=on_power_fail, clock=clock, timer=timer,
                   time_scale=time_scale)

    # -- lights -----------------------------------------------------------------------------

    def show(self, state: PanelState) -> None:
        """Show ``state``; lights whose pattern stays the same are not touched."""
        with self._lock:
            self._state = state
            if not (self._closed or self._halting or self._acknowledging):
                self._apply(led_patterns(state))

    def showing(self) -> dict[str, str]:
        """The pattern name each fitted light is showing now."""
        with self._lock:
            return {light: self._showing[light].name for light in self._leds}

    @property
    def power_fail_pending(self) -> bool:
        """External power is gone and the delay before ``on_power_fail`` is running."""
        with self._lock:
            return self._power_timer is not None

    def _apply(self, patterns: dict[str, Pattern], restart: bool = False) -> None:
        for light, led in self._leds.items():
            pattern = patterns[light]
            if self._showing.get(light) == pattern and not restart:
                continue
            self._showing[light] = pattern
            if pattern.is_off:
                led.off()
            elif pattern.is_on:
                led.on()
            else:
                led.blink(pattern.on_s * self._scale, pattern.off_s * self._scale, n=pattern.count, background=True)

    def _acknowledge(self) -> None:
        """Flicker every light together, then go back to the state's patterns."""
        if self._halting or not self._leds:
            return
        self._acknowledging += 1
        generation = self._acknowledging
        self._apply({light: ACKNOWLEDGE for light in LIGHTS}, restart=True)
        if self._ack_timer is not None:
            self._ack_timer.cancel()
        self._ack_timer = self._start_timer(ACKNOWLEDGE_S * self._scale,
                                            functools.partial(self._end_acknowledge, generation))

    def _end_acknowledge(self, generation: int) -> None:
        with self._lock:
            if self._closed or self._halting or generation != self._acknowledging:
                return
            self._acknowledging = 0
            self._ack_timer = None
            self._apply(led_patterns(self._state))

    def _halt(self) -> None:
        self._halting = True
        self._acknowledging = 0
        self._apply({light: HALTING for light in LIGHTS})

    # -- button -------------------------------------------------------------------------------

    def _pressed(self) -> None:
        with self._lock:
            if not self._closed:
                self._presses.pressed(self._clock())

    def _held(self) -> None:
        with self._lock:
            if self._closed:
                return
            action = self._presses.held(self._clock())
        self._act(action)

    def _released(self) -> None:
        with self._lock:
            if self._closed:
                return
            action = self._presses.released(self._clock())
        self._act(action)

    def _act(self, action: str | None) -> None:
        if action == TAG:
            log.info("panel: button pressed, tagging the spot as %r", self.config.tag_label)
            with self._lock:
                self._acknowledge()
            _call(self._on_tag, Event(type="tag", message=self.config.tag_label, data={"source": "button"}))
        elif action == SHUTDOWN:
            log.warning("panel: button held %ss, asking for a safe shutdown", self.config.hold_time)
            with self._lock:
                self._halt()
            _call(self._on_shutdown)

    # -- external power ---------------------------------------------------------------------------

    def _power_lost(self) -> bool:
        assert self._power is not None
        low = self._power.is_active  # pulled up: active means the input reads low
        return not low if self.config.power_present_level == "low" else low

    def _power_changed(self) -> None:
        with self._lock:
            if self._closed:
                return
            lost = self._power_lost()
            if lost and self._power_timer is None:
                log.warning("panel: external power lost; shutting down in %ss unless it returns",
                            self.config.power_fail_delay)
                self._power_losses += 1
                self._power_timer = self._start_timer(self.config.power_fail_delay,
                                                      functools.partial(self._power_timeout, self._power_losses))
            elif not lost and self._power_timer is not None:
                log.info("panel: external power is back; no shutdown")
                self._power_timer.cancel()
                self._power_timer = None

    def _power_timeout(self, loss: int) -> None:
        with self._lock:
            # A timer cancelled just as it fired belongs to an earlier loss.
            if self._closed or self._power_timer is None or loss != self._power_losses:
                return
            self._power_timer = None
            log.warning("panel: external power gone for %ss, asking for a safe shutdown", self.config.power_fail_delay)
            self._halt()
        _call(self._on_power_fail)

    # -- closing ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop timers and release every pin (lights go dark).  Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            timers = [self._ack_timer, self._power_timer]
            self._ack_timer = self._power_timer = None
        for timer in timers:
            if timer is not None:
                timer.cancel()
        # Outside the lock: closing the button joins its hold thread, which may be waiting
        # for the lock in _held.
        for device in [*self._leds.values(), self._button, self._power]:
            if device is not None:
                device.close()

    def __enter__(self) -> Panel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _call(callback: Callable[..., None] | None, *args: object) -> None:
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:
        log.exception("panel: callback %r failed", callback)
