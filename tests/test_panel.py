"""The front panel: what each light shows, what the button and the power input do.

The rules are pure tables (agent/unit/devices/panel_policy.py); the panel itself is driven through
gpiozero's MockFactory, whose pins record every change with its time, so a blink pattern is
checked from the pin's history exactly as a light on a Pi would show it.
"""
from __future__ import annotations

import logging
import re
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pytest
from gpiozero import LED, Device
from gpiozero.pins.mock import MockFactory, MockPin
from hypothesis import given
from hypothesis import strategies as st

from agent.commands.main import main
from agent.unit.config import Config, ConfigError, PanelConfig, parse_config
from agent.unit.devices.panel import Panel, PanelError
from agent.unit.devices.panel_policy import (
    FAST, FLASH, GPS_FIXES, LIGHTS, OFF, ON, SHUTDOWN, SLOW, TAG, UPLINK_STATES, WINK,
    PanelState, Pattern, PressTracker, led_patterns, press_action,
)
from agent.shared.polling import wait_until
from agent.shared.reading import QUALITIES, Event
from tests.support.unit_config import write_config

PANEL_DOC = Path(__file__).resolve().parent.parent / "docs" / "panel.md"
PINS = {"gps": 5, "signal": 6, "uplink": 13, "backlog": 19}
BUTTON, POWER = 26, 21
SCALE = 0.2  # light patterns run five times faster than on a unit


# -- the rules ------------------------------------------------------------------------------

LIGHT_TABLE = [
    ("gps", {"gps_fix": "absent"}, OFF),
    ("gps", {"gps_fix": "none"}, SLOW),
    ("gps", {"gps_fix": "2d"}, WINK),
    ("gps", {"gps_fix": "3d"}, ON),
    ("signal", {"signal_quality": None}, OFF),
    ("signal", {"signal_quality": "none"}, FLASH),
    ("signal", {"signal_quality": "poor"}, FAST),
    ("signal", {"signal_quality": "fair"}, SLOW),
    ("signal", {"signal_quality": "good"}, WINK),
    ("signal", {"signal_quality": "excellent"}, ON),
    ("uplink", {"uplink": "disabled"}, OFF),
    ("uplink", {"uplink": "connecting"}, SLOW),
    ("uplink", {"uplink": "connected"}, ON),
    ("backlog", {"backlog": 0}, OFF),
    ("backlog", {"backlog": 1}, ON),
    ("backlog", {"backlog": 250_000}, ON),
    ("backlog", {"backlog": 250_000, "backlog_full": True}, FAST),
    ("backlog", {"backlog": 0, "backlog_full": True}, FAST),  # everything waiting was dropped
]


@pytest.mark.parametrize("light,fields,pattern", LIGHT_TABLE, ids=[f"{l}-{f}" for l, f, _ in LIGHT_TABLE])
def test_each_state_has_its_pattern(light: str, fields: dict, pattern: Pattern) -> None:
    assert led_patterns(PanelState(**fields))[light] == pattern


def test_the_table_covers_every_value_and_the_doc_shows_it() -> None:
    """Every GPS fix, quality, uplink state appears above, and docs/panel.md's table for each
    light names the same pattern for each value."""
    values = {(light, next(iter(fields.values()))) for light, fields, _ in LIGHT_TABLE if len(fields) == 1}
    assert {("gps", v) for v in GPS_FIXES} | {("signal", v) for v in (*QUALITIES, None)} | {
        ("uplink", v) for v in UPLINK_STATES} <= values
    text = PANEL_DOC.read_text()
    for light, fields, pattern in LIGHT_TABLE:
        if len(fields) != 1 or light == "backlog":
            continue
        value = next(iter(fields.values()))
        section = re.search(rf"^### .*\(`panel\.{light}_led`\)$(.*?)(?=^#)", text, re.M | re.S)
        assert section, f"panel.md has no section for the {light} light"
        shown = "`null`" if value is None else f"`{value}`"
        row = next((r for r in section.group(1).splitlines() if r.startswith("|") and shown in r), None)
        assert row and f"**{pattern.name}**" in row, f"panel.md: {light} {shown} should be **{pattern.name}**"


def test_patterns_can_be_told_apart_within_two_seconds() -> None:
    """Distinct rhythms, each repeating within 2 s, none faster than a person can count."""
    shown = [OFF, FLASH, SLOW, FAST, WINK, ON]
    assert len({(p.on_s, p.off_s) for p in shown}) == len({p.name for p in shown}) == 6
    for p in (FLASH, SLOW, FAST, WINK):
        assert p.on_s + p.off_s <= 2.0 and min(p.on_s, p.off_s) >= 0.1, p
    assert OFF.is_off and ON.is_on and not any(p.is_on or p.is_off for p in (FLASH, SLOW, FAST, WINK))


@pytest.mark.parametrize("fields", [
    {"gps_fix": "3D"}, {"gps_fix": None}, {"signal_quality": "bad"}, {"uplink": "online"},
    {"backlog": -1}, {"backlog": True}, {"backlog": 1.5},
])
def test_impossible_states_are_refused(fields: dict) -> None:
    with pytest.raises(ValueError):
        PanelState(**fields)


PRESSES = [  # held for (s), hold 3 s, bounce 50 ms
    (0.0, None), (0.01, None), (0.049, None),       # chatter, a spike on the wire
    (0.05, TAG), (0.3, TAG), (2.99, TAG),
    (3.0, SHUTDOWN), (10.0, SHUTDOWN),
]


@pytest.mark.parametrize("seconds,action", PRESSES)
def test_press_duration_decides_the_action(seconds: float, action: str | None) -> None:
    assert press_action(seconds, hold_s=3.0, bounce_s=0.05) == action


def test_a_held_press_acts_once_while_held_and_not_on_release() -> None:
    presses = PressTracker(hold_s=3.0, bounce_s=0.05)
    presses.pressed(100.0)
    assert presses.held(103.0) == SHUTDOWN
    assert presses.held(106.0) is None
    assert presses.released(110.0) is None
    assert presses.held(110.1) is None, "a hold report arriving after the release is stale"
    presses.pressed(200.0)
    assert presses.released(200.5) == TAG


def test_a_release_that_beats_the_hold_report_still_shuts_down_once() -> None:
    presses = PressTracker(hold_s=3.0, bounce_s=0.05)
    presses.pressed(0.0)
    assert presses.released(3.001) == SHUTDOWN
    assert presses.held(3.002) is None


def test_contact_chatter_gives_one_tag() -> None:
    presses = PressTracker(hold_s=3.0, bounce_s=0.05)
    actions = []
    t = 0.0
    for down_s, up_s in [(0.001, 0.002), (0.002, 0.001), (0.4, 0.001), (0.001, 0.003), (0.002, 1.0)]:
        presses.pressed(t)
        t += down_s
        actions.append(presses.released(t))
        t += up_s
    assert [a for a in actions if a] == [TAG]


@given(st.lists(st.tuples(st.sampled_from(["pressed", "held", "released"]),
                          st.floats(min_value=0, max_value=5, allow_nan=False)), max_size=60))
def test_every_press_yields_at_most_one_action(events: list[tuple[str, float]]) -> None:
    presses = PressTracker(hold_s=3.0, bounce_s=0.05)
    now, per_press = 0.0, [0]
    for name, step in events:
        now += step
        if name == "pressed":
            per_press.append(0)
        action = getattr(presses, name)(now)
        assert action in (None, TAG, SHUTDOWN)
        per_press[-1] += action is not None
    assert max(per_press) <= 1


# -- configuration ---------------------------------------------------------------------------

def test_panel_is_off_and_nothing_fitted_by_default() -> None:
    panel = Config().panel
    assert not panel.enabled
    assert [panel.gps_led, panel.signal_led, panel.uplink_led, panel.backlog_led, panel.button_pin, panel.power_pin] == [0] * 6
    assert (panel.hold_time, panel.bounce_time, panel.power_fail_delay) == (3.0, 0.05, 30.0)
    assert panel.shutdown_command == "systemctl poweroff"


def test_a_full_panel_section_loads() -> None:
    config = parse_config(
        '[panel]\nenabled = true\ngps_led = 5\nsignal_led = 6\nuplink_led = 13\nbacklog_led = 19\n'
        'button_pin = 26\nhold_time = "5s"\nbounce_time = "20ms"\ntag_label = "kantor desa"\n'
        'power_pin = 21\npower_present_level = "low"\npower_fail_delay = "2m"\n'
        'shutdown_command = "/usr/bin/sudo /sbin/shutdown -h now"\n', require_device_id=False)
    assert config.panel == PanelConfig(True, 5, 6, 13, 19, 26, 5.0, 0.02, "kantor desa", 21, "low", 120.0,
                                       "/usr/bin/sudo /sbin/shutdown -h now")


CONFIG_ERRORS = [
    ("[panel]\ngps_led = 17\nbutton_pin = 17\n",
     "<config>:3: panel.button_pin: GPIO 17 is already panel.gps_led; each pin can be used once"),
    ("[panel]\nbacklog_led = 4\n\npower_pin = 4\n",
     "<config>:4: panel.power_pin: GPIO 4 is already panel.backlog_led; each pin can be used once"),
    ("[panel]\ngps_led = 28\n", "<config>:2: panel.gps_led: must be at most 27, got 28"),
    ("[panel]\nbutton_pin = -3\n", "<config>:2: panel.button_pin: must be at least 0, got -3"),
    ('[panel]\nhold_time = "200ms"\n', '<config>:2: panel.hold_time: must be at least "1s", got \'200ms\''),
    ('[panel]\npower_present_level = "hihg"\n',
     "<config>:2: panel.power_present_level: expected one of 'high', 'low', got 'hihg' (did you mean 'high'?)"),
    ('[panel]\nshutdown_command = ""\n',
     '<config>:2: panel.shutdown_command: expected a command such as "systemctl poweroff"'),
    ('[panel]\nshutdown_command = "sh -c \'poweroff"\n',
     "<config>:2: panel.shutdown_command: cannot split into words: No closing quotation"),
    ("[panel]\ngps_leds = 5\n", "<config>:2: panel.gps_leds: unknown key (did you mean 'gps_led'?)"),
]


@pytest.mark.parametrize("text,message", CONFIG_ERRORS, ids=[m.split(": ")[1] for _, m in CONFIG_ERRORS])
def test_panel_config_mistakes_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, require_device_id=False)
    assert str(info.value).startswith(message)


# -- the panel on mock pins ---------------------------------------------------------------------

def full(**changes) -> PanelConfig:
    """Every part fitted; hold and power-fail delay short enough for tests."""
    config = PanelConfig(enabled=True, gps_led=PINS["gps"], signal_led=PINS["signal"], uplink_led=PINS["uplink"],
                         backlog_led=PINS["backlog"], button_pin=BUTTON, power_pin=POWER, hold_time=0.3,
                         bounce_time=0.05, tag_label="kantor desa", power_fail_delay=0.3)
    return replace(config, **changes)


class FakeTimer:
    def __init__(self, due: float, action: Callable[[], None]) -> None:
        self.due, self.action, self.cancelled = due, action, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """The panel's time, moved by the test: what its clock reads, and timers that fire as it passes them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._timers: list[FakeTimer] = []

    def __call__(self) -> float:
        return self.now

    def timer(self, seconds: float, action: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + seconds, action)
        self._timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = sorted((t for t in self._timers if t.due <= self.now), key=lambda t: t.due)
        self._timers = [t for t in self._timers if t not in due]
        for timer in due:
            if not timer.cancelled:
                timer.action()


class Calls:
    """What the panel handed to its callbacks, with the moment of each call."""

    def __init__(self) -> None:
        self.tags: list[Event] = []
        self.shutdowns: list[float] = []
        self.power_fails: list[float] = []

    def kwargs(self) -> dict:
        return {"on_tag": self.tags.append, "on_shutdown": lambda: self.shutdowns.append(time.monotonic()),
                "on_power_fail": lambda: self.power_fails.append(time.monotonic())}


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


@pytest.fixture
def make_panel(factory):
    made: list[Panel] = []

    def make(config: PanelConfig | None = None, calls: Calls | None = None, **kwargs) -> Panel:
        panel = Panel.from_config(config or full(), pin_factory=factory, time_scale=SCALE,
                                  **(calls.kwargs() if calls else {}), **kwargs)
        made.append(panel)
        return panel
    yield make
    for panel in made:
        panel.close()


def phases(pin: MockPin) -> tuple[list[float], list[float]]:
    """Seconds of each complete lit and dark phase in the pin's history."""
    lit, dark = [], []
    for before, after in zip(pin.states[1:], pin.states[2:]):
        (lit if before.state else dark).append(after.timestamp)
    return lit, dark


def cycles(pin: MockPin) -> int:
    return max(0, len(pin.states) - 2) // 2


def assert_pattern(pin: MockPin, pattern: Pattern) -> None:
    """The pin's history is ``pattern`` at SCALE: steady, or blinking at its rhythm."""
    if pattern.is_off or pattern.is_on:
        assert [s.state for s in pin.states][-1] == pattern.is_on and len(pin.states) <= 2, pin.states
        return
    lit, dark = phases(pin)
    for measured, expected in ((lit, pattern.on_s * SCALE), (dark, pattern.off_s * SCALE)):
        median = statistics.median(measured)
        assert abs(median - expected) <= 0.04 + 0.25 * expected, (pattern.name, measured, expected)


def pins(factory: MockFactory) -> dict[str, MockPin]:
    return {light: factory.pin(number) for light, number in PINS.items()}


@pytest.mark.parametrize("state,expected", [
    (PanelState(gps_fix="none", signal_quality="poor", uplink="connected", backlog=0),
     {"gps": SLOW, "signal": FAST, "uplink": ON, "backlog": OFF}),
    (PanelState(gps_fix="2d", signal_quality="none", uplink="disabled", backlog=9, backlog_full=True),
     {"gps": WINK, "signal": FLASH, "uplink": OFF, "backlog": FAST}),
], ids=["slow-fast-on-off", "wink-flash-off-fast"])
def test_lights_show_the_state_on_the_pins(factory, make_panel, state: PanelState, expected: dict) -> None:
    """Each of the six patterns, read back from the pins' recorded histories."""
    panel = make_panel()
    for pin in pins(factory).values():
        pin.clear_states()
    panel.show(state)
    blinking = [pins(factory)[light] for light, p in expected.items() if not (p.is_on or p.is_off)]
    assert wait_until(lambda: all(cycles(pin) >= 4 for pin in blinking), 15)
    for light, pattern in expected.items():
        assert_pattern(pins(factory)[light], pattern)
    assert panel.showing() == {light: p.name for light, p in expected.items()}
    print({light: [round(s.timestamp, 3) for s in pin.states[:6]] for light, pin in pins(factory).items()})


def test_showing_the_same_pattern_again_does_not_restart_it(factory, make_panel) -> None:
    """show() called far more often than the lights blink leaves every pattern undisturbed,
    even when a figure changes that does not change the pattern (backlog 5, 6, 7...)."""
    panel = make_panel()
    state = PanelState(gps_fix="none", signal_quality="fair", uplink="connected", backlog=5)
    panel.show(state)
    for pin in pins(factory).values():
        pin.clear_states()
    shown = 0

    def show_again() -> bool:
        nonlocal shown
        shown += 1
        panel.show(replace(state, backlog=5 + shown))
        return cycles(pins(factory)["gps"]) >= 4 and cycles(pins(factory)["signal"]) >= 4
    assert wait_until(show_again, 15, interval=0.005)
    print(f"show() calls: {shown}, gps phases: {phases(pins(factory)['gps'])}")
    assert shown > 20
    assert_pattern(pins(factory)["gps"], SLOW)
    assert_pattern(pins(factory)["signal"], SLOW)
    for light in ("uplink", "backlog"):
        assert [s.state for s in pins(factory)[light].states] == [True], "a steady light is not touched"


def test_only_the_light_whose_pattern_changes_is_touched(factory, make_panel) -> None:
    panel = make_panel()
    panel.show(PanelState(gps_fix="3d", signal_quality="good", uplink="connected", backlog=3))
    for pin in pins(factory).values():
        pin.clear_states()
    panel.show(PanelState(gps_fix="3d", signal_quality="good", uplink="connecting", backlog=3))
    assert wait_until(lambda: cycles(pins(factory)["uplink"]) >= 3, 15)
    assert_pattern(pins(factory)["uplink"], SLOW)
    assert [s.state for s in pins(factory)["gps"].states] == [True]
    assert [s.state for s in pins(factory)["backlog"].states] == [True]


def test_short_press_tags_the_spot_once(factory, make_panel) -> None:
    """A 0.2 s press: one tag event with the configured label, no shutdown, and every light
    flickers three times before its pattern comes back."""
    clock, calls = FakeClock(), Calls()
    panel = make_panel(calls=calls, clock=clock)
    state = PanelState(gps_fix="3d", signal_quality="excellent", uplink="connected", backlog=0)
    panel.show(state)
    for pin in pins(factory).values():
        pin.clear_states()
    button = factory.pin(BUTTON)
    button.drive_low()
    clock.now += 0.2
    button.drive_high()
    assert calls.tags == [Event(type="tag", message="kantor desa", data={"source": "button"})]
    assert wait_until(lambda: panel.showing() == {"gps": "on", "signal": "on", "uplink": "on", "backlog": "off"}, 10)
    assert calls.shutdowns == [] and calls.power_fails == []
    backlog = [s.state for s in pins(factory)["backlog"].states]
    assert backlog == [False, True, False, True, False, True, False], "dark light: three flickers, dark again"
    gps = [s.state for s in pins(factory)["gps"].states]
    assert gps[-1] is True and gps.count(True) == 4, "lit light: three flickers, then lit again"


def test_chatter_and_spikes_do_not_tag(factory, make_panel) -> None:
    """A bouncing contact gives one tag; a 10 ms spike on the wire gives none."""
    clock, calls = FakeClock(), Calls()
    make_panel(calls=calls, clock=clock)
    button = factory.pin(BUTTON)
    for down_s, up_s in [(0.001, 0.002), (0.002, 0.001), (0.3, 0.001), (0.002, 0.5), (0.01, 0.5)]:
        button.drive_low()
        clock.now += down_s
        button.drive_high()
        clock.now += up_s
    assert len(calls.tags) == 1


def test_long_press_shuts_down_and_its_release_does_not_tag(factory, make_panel) -> None:
    calls = Calls()
    panel = make_panel(calls=calls)
    panel.show(PanelState(gps_fix="none", signal_quality="poor", uplink="connecting", backlog=0))
    button = factory.pin(BUTTON)
    pressed_at = time.monotonic()
    button.drive_low()
    assert wait_until(lambda: calls.shutdowns, 10)
    assert calls.shutdowns[0] - pressed_at >= 0.3 * 0.95, "not before hold_time"
    assert panel.showing() == dict.fromkeys(LIGHTS, "on"), "every light lit: shutting down"
    button.drive_high()
    panel.show(PanelState())
    assert calls.tags == [] and len(calls.shutdowns) == 1
    assert panel.showing() == dict.fromkeys(LIGHTS, "on"), "show() no longer changes the lights"


def test_callback_errors_are_logged_and_the_button_keeps_working(factory, make_panel, caplog) -> None:
    clock, tags = FakeClock(), []

    def fragile(event: Event) -> None:
        tags.append(event)
        raise OSError("disk full")
    make_panel(on_tag=fragile, clock=clock)
    button = factory.pin(BUTTON)
    with caplog.at_level(logging.ERROR, logger="agent.unit.devices.panel"):
        for _ in range(2):
            button.drive_low()
            clock.now += 0.2
            button.drive_high()
    assert len(tags) == 2
    assert "disk full" in caplog.text


def test_power_gone_longer_than_the_delay_calls_power_fail_once(factory, make_panel) -> None:
    """Power leaves, returns after a moment (cancelled), then leaves for good: on_power_fail
    comes once, a full delay after the second loss, and the lights all stay lit."""
    clock, calls = FakeClock(), Calls()
    panel = make_panel(calls=calls, clock=clock, timer=clock.timer)
    power = factory.pin(POWER)
    assert not panel.power_fail_pending
    power.drive_low()
    assert panel.power_fail_pending
    power.drive_high()
    assert not panel.power_fail_pending
    clock.advance(0.15)  # power stays back for half the delay
    power.drive_low()
    clock.advance(0.29)
    assert calls.power_fails == [], "the first loss's delay was cancelled"
    clock.advance(0.01)  # a full delay after the second loss
    assert not panel.power_fail_pending and len(calls.power_fails) == 1
    assert panel.showing() == dict.fromkeys(LIGHTS, "on")
    assert calls.shutdowns == [] and calls.tags == []


def test_power_present_low_and_starting_without_power(factory, make_panel) -> None:
    """With power_present_level "low" the pulled-up input reads high, so power is gone from
    the start and the delay runs; the input going low (power back) cancels it."""
    calls = Calls()
    panel = make_panel(full(power_present_level="low", power_fail_delay=5.0), calls=calls)
    assert panel.power_fail_pending
    factory.pin(POWER).drive_low()
    assert not panel.power_fail_pending
    factory.pin(POWER).drive_high()
    assert panel.power_fail_pending
    panel.close()
    assert not panel.power_fail_pending and calls.power_fails == []


def test_disabled_panel_opens_no_pin(factory, make_panel) -> None:
    panel = make_panel(replace(full(), enabled=False))
    panel.show(PanelState(gps_fix="3d"))
    assert factory.pins == {} and panel.showing() == {}


def test_parts_not_fitted_are_not_opened(factory, make_panel) -> None:
    panel = make_panel(PanelConfig(enabled=True, signal_led=6))
    panel.show(PanelState(signal_quality="excellent", gps_fix="3d", uplink="connected", backlog=4))
    assert panel.showing() == {"signal": "on"}
    assert [pin.info.name for pin in factory.pins.values()] == ["GPIO6"]


def test_a_pin_already_taken_is_a_panel_error_and_nothing_stays_open(factory) -> None:
    blocker = LED(PINS["uplink"], pin_factory=factory)
    with pytest.raises(PanelError, match=r"cannot open GPIO 13 \(panel.uplink_led\)"):
        Panel.from_config(full(), pin_factory=factory)
    blocker.close()
    Panel.from_config(full(), pin_factory=factory).close()  # the lights opened before were released


def test_blankspot_run_with_a_pin_taken_says_which_and_exits_1(factory, tmp_path: Path, monkeypatch,
                                                               capsys) -> None:
    monkeypatch.setattr(Device, "pin_factory", factory)  # what Panel.from_config(..., None) opens pins with
    pins = {f"{light}_led": pin for light, pin in PINS.items()}
    config = write_config(tmp_path / "agent.toml", 1883, tmp_path / "buffer.db", {
        "uplink": {"enabled": False}, "panel": {"enabled": True, **pins}})
    blocker = LED(PINS["uplink"], pin_factory=factory)
    try:
        status = main(["run", "--config", str(config)])
    finally:
        blocker.close()
    err = capsys.readouterr().err
    assert status == 1
    assert re.fullmatch(r"blankspot: panel: cannot open GPIO 13 \(panel.uplink_led\): .+\n", err), err


def test_close_releases_the_pins_and_stops_the_timers(factory) -> None:
    clock, calls = FakeClock(), Calls()
    panel = Panel.from_config(full(power_fail_delay=0.2), pin_factory=factory, time_scale=SCALE, clock=clock,
                              timer=clock.timer, **calls.kwargs())
    panel.show(PanelState(gps_fix="none"))
    factory.pin(POWER).drive_low()
    panel.close()
    panel.close()
    assert all(pin.function == "input" for pin in factory.pins.values())
    clock.advance(0.3)  # past the power-fail delay: the timer was cancelled
    assert calls.power_fails == []
