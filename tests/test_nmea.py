"""NMEA parsing and fix merging, checked on real sentences and real receiver captures."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.unit.devices.gps.fix import Fix, FixState
from agent.unit.devices.gps.nmea import Gga, Gns, Gsa, Gsv, NmeaError, Rmc, Vtg, parse_sentence
from tests.support.data import NMEA

UTC = dt.timezone.utc


def _t(h: int, m: int, s: int, us: int = 0) -> dt.time:
    return dt.time(h, m, s, us, tzinfo=UTC)


def _with_checksum(body: str) -> str:
    cs = 0
    for ch in body:
        cs ^= ord(ch)
    return f"${body}*{cs:02X}"


# --- bad inputs first ------------------------------------------------------------------

BAD = [
    ("", "no leading"),
    ("hello", "no leading"),
    # valid body, checksum removed: pynmea2 would accept it
    ("$GPGGA,202640.000,4404.1306,N,12118.8515,W,2,10,0.98,1127.7,M,-19.6,M,0000,0000", "no checksum"),
    # firefly-II: every GGA carries a wrong checksum
    ("$GPGGA,005947.00,3715.6616,N,12157.6709,W,,11,0.8,86.0,M,-30.1,M,,*54", "bad checksum"),
    # proprietary sentences (Furuno, Quectel quirk)
    ("$PQGSV,2,1,08,02,20,116,,03,,,,05,34,137,,07,06,045,,0,4*52", "talker not supported"),
    (_with_checksum("PERDCRQ,1,2"), "talker"),
    # unsupported types from the captures
    ("$GPZDA,202640.000,13,04,2015,,*54", "type not supported: GPZDA"),
    ("$GNGLL,3806.62964,N,12237.61382,W,223745.00,A,D*6C", "type not supported"),
    (_with_checksum("XXGGA,202640.000,4404.1306,N,12118.8515,W,2,10,0.98,1127.7,M,-19.6,M,,"), "talker"),
    # truncated: too few fields, checksum recomputed so only the count is wrong
    (_with_checksum("GPGGA,202640.000,4404.1306,N"), "needs at least 9"),
    (_with_checksum("GPGSA,A,3,20,16"), "needs at least 17"),
    # fields that cannot be read
    (_with_checksum("GPGGA,2026x0.000,4404.1306,N,12118.8515,W,2,10,0.98,1127.7,M,,M,,"), "UTC time"),
    (_with_checksum("GPGGA,202640.000,4404.1306,Q,12118.8515,W,2,10,0.98,1127.7,M,,M,,"), "hemisphere"),
    (_with_checksum("GPGGA,202640.000,4404.1306,N,,,2,10,0.98,1127.7,M,,M,,"), "not both"),
    (_with_checksum("GPGGA,202640.000,4474.1306,N,12118.8515,W,2,10,0.98,1127.7,M,,M,,"), "minutes"),
    (_with_checksum("GPGGA,202640.000,4404.1306,N,12118.8515,W,2,ten,0.98,1127.7,M,,M,,"), "satellites"),
    (_with_checksum("GPRMC,202640.000,X,4404.1306,N,12118.8515,W,0.03,225.97,130415,,,D"), "status"),
    (_with_checksum("GPRMC,202640.000,A,4404.1306,N,12118.8515,W,0.03,225.97,321315,,,D"), "date"),
    (_with_checksum("GPGSA,A,7,20,16,09,03,07,10,23,19,27,30,,,1.64,0.98,1.31"), "fix type"),
    (_with_checksum("GPGGA,202640.000,4404.1306,N,12118.8515,W,2,10,nan,1127.7,M,,M,,"), "finite"),
]


@pytest.mark.parametrize("line,why", BAD)
def test_bad_sentences_raise_nmea_error_saying_why(line: str, why: str) -> None:
    """Anything not a checksummed, supported, well-formed sentence raises NmeaError only."""
    with pytest.raises(NmeaError, match=why):
        parse_sentence(line)


GOOD = [
    # mt3339: DGPS fix, GP talker, CRLF as read from the port
    ("$GPGGA,202640.000,4404.1306,N,12118.8515,W,2,10,0.98,1127.7,M,-19.6,M,0000,0000*6C\r\n",
     Gga("GP", _t(20, 26, 40), 44.068843333, -121.314191667, 2, 10, 0.98, 1127.7)),
    ("$GPRMC,202640.000,A,4404.1306,N,12118.8515,W,0.03,225.97,130415,,,D*73",
     Rmc("GP", _t(20, 26, 40), dt.date(2015, 4, 13), True, 44.068843333, -121.314191667,
         0.03 * 1.852, 225.97)),
    ("$GPGSA,A,3,20,16,09,03,07,10,23,19,27,30,,,1.64,0.98,1.31*05", Gsa("GP", 3, 1.64, 0.98, 1.31)),
    # bu353s4: southern/eastern hemisphere
    ("$GPGGA,030719.000,3747.0873,S,17518.8938,E,1,08,1.1,59.9,M,23.7,M,,0000*7D",
     Gga("GP", _t(3, 7, 19), -37.784788333, 175.314896667, 1, 8, 1.1, 59.9)),
    # quectel: no fix, every field empty: no 0,0 position
    ("$GPGGA,,,,,,0,,,,,,,,*66", Gga("GP", None, None, None, 0, None, None, None)),
    ("$GPRMC,,V,,,,,,,,,,N*53", Rmc("GP", None, None, False, None, None, None, None)),
    ("$GNGNS,191434.96,,,,,NNN,,,,,,*36", Gns("GN", _t(19, 14, 34, 960000), None, None, "NNN", None, None, None)),
    ("$GNGNS,191503.01,3645.876324,N,03124.670280,E,AAN,08,1.3,-6.7,32.0,,,V*42",
     Gns("GN", _t(19, 15, 3, 10000), 36.7646054, 31.411171333, "AAN", 8, 1.3, -6.7)),
    ("$GPVTG,300.5,T,296.9,M,1.3,N,2.3,K,A*22", Vtg("GP", 2.3, 300.5)),
    ("$GPVTG,,T,,M,,N,,K,N*2C", Vtg("GP", None, None)),
    ("$GPGSA,A,1,,,,,,,,,,,,,,,,*32", Gsa("GP", 1, None, None, None)),
    # furuno: GLONASS/Galileo talkers, GSA with system id
    ("$GNGSA,A,3,68,69,70,78,84,85,,,,,,,1.5,1.3,1.0,2*3D", Gsa("GN", 3, 1.5, 1.3, 1.0)),
    # ublox: empty course, NMEA 4.10 nav status
    ("$GNRMC,223746.00,A,3806.62966,N,12237.61384,W,0.061,,110720,,,D,V*0A",
     Rmc("GN", _t(22, 37, 46), dt.date(2020, 7, 11), True, 38.110494333, -122.626897333,
         0.061 * 1.852, None)),
    ("$GNVTG,,T,,M,0.061,N,0.114,K,D*3B", Vtg("GN", 0.114, None)),
]


def _close(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) < 1e-6
    return a == b


@pytest.mark.parametrize("line,expected", GOOD)
def test_real_sentences_parse_to_typed_values(line: str, expected: object) -> None:
    """Numbers are numbers, empty fields are None (never 0,0), speeds are km/h."""
    got = parse_sentence(line)
    assert type(got) is type(expected)
    for name in expected.__dataclass_fields__:  # type: ignore[attr-defined]
        assert _close(getattr(got, name), getattr(expected, name)), (name, got)


def test_every_talker_is_accepted() -> None:
    """GSV from GP, GN, GL, GA, GB, BD and GQ is read the same way."""
    for talker in ("GP", "GN", "GL", "GA", "GB", "BD", "GQ"):
        got = parse_sentence(_with_checksum(f"{talker}GSV,3,1,11,03,10,120,22"))
        assert got == Gsv(talker, 11)


# --- FixState --------------------------------------------------------------------------


def _feed(lines: list[str], state: FixState | None = None) -> list[Fix]:
    state = state or FixState()
    out: list[Fix] = []
    for i, line in enumerate(lines):
        try:
            s = parse_sentence(line)
        except NmeaError:
            continue
        done = state.update(s, now_monotonic=float(i))
        if done is not None:
            out.append(done)
    last = state.flush(now_monotonic=float(len(lines)))
    if last is not None:
        out.append(last)
    return out


def test_epoch_ends_when_a_new_time_arrives_and_untimed_sentences_join_it() -> None:
    """GGA+GSA+RMC of one time make one 3D fix with a date; it is returned on the next time."""
    state = FixState()
    lines = [
        "$GPGGA,202640.000,4404.1306,N,12118.8515,W,2,10,0.98,1127.7,M,-19.6,M,0000,0000*6C",
        "$GPGSA,A,3,20,16,09,03,07,10,23,19,27,30,,,1.64,0.98,1.31*05",
        "$GPRMC,202640.000,A,4404.1306,N,12118.8515,W,0.03,225.97,130415,,,D*73",
    ]
    assert [state.update(parse_sentence(x), now_monotonic=0.0) for x in lines] == [None] * 3
    fix = state.update(parse_sentence(
        "$GPGGA,202641.000,4404.1305,N,12118.8515,W,2,11,0.83,1127.7,M,-19.6,M,0000,0000*65"),
        now_monotonic=1.0)
    assert fix is not None and fix.fix == "3d"
    assert fix.time == dt.datetime(2015, 4, 13, 20, 26, 40, tzinfo=UTC)
    assert (fix.sats, fix.hdop, fix.alt_m, fix.course_deg) == (10, 0.98, 1127.7, 225.97)
    assert abs(fix.speed_kmh - 0.03 * 1.852) < 1e-9
    assert state.current(1.5, max_age_s=5.0) == fix
    stale = state.current(100.0, max_age_s=5.0)
    assert stale.fix == "none" and stale.lat is None and stale.lon is None


def test_no_fix_signals_give_none_without_position() -> None:
    """RMC status V or GGA quality 0 means no fix, even when the other sentence has a position."""
    fixes = _feed([
        _with_checksum("GPGGA,101010.00,0000.0000,N,00000.0000,E,0,00,,,M,,M,,"),
        _with_checksum("GPRMC,101010.00,A,0100.0000,N,00100.0000,E,0.0,,010120,,,A"),
        _with_checksum("GPGGA,101011.00,0100.0000,N,00100.0000,E,1,05,1.0,10.0,M,,M,,"),
        _with_checksum("GPRMC,101011.00,V,0100.0000,N,00100.0000,E,0.0,,010120,,,N"),
    ])
    assert [(f.fix, f.lat, f.lon) for f in fixes] == [("none", None, None)] * 2
    assert fixes[0].time == dt.datetime(2020, 1, 1, 10, 10, 10, tzinfo=UTC)


def test_mode_from_gsa_else_from_gga_altitude() -> None:
    """GSA's 2 wins over a GGA altitude; without GSA, a GGA altitude means 3D; RMC alone is 2D."""
    gga = "GPGGA,{t},0100.0000,N,00100.0000,E,1,05,1.0,10.0,M,,M,,"
    fixes = _feed([
        _with_checksum(gga.format(t="000001")),
        _with_checksum("GPGSA,A,2,01,02,03,,,,,,,,,,2.0,1.0,1.7"),
        _with_checksum(gga.format(t="000002")),
        _with_checksum("GPRMC,000003,A,0100.0000,N,00100.0000,E,1.0,90.0,010120,,,A"),
    ])
    assert [f.fix for f in fixes] == ["2d", "3d", "2d"]
    # no RMC date seen before the first two epochs; the third has one
    assert [f.time is None for f in fixes] == [True, True, False]


def test_epochs_without_any_time_still_end() -> None:
    """A receiver with no fix may send empty GGA/RMC only; each repeat starts a new epoch."""
    fixes = _feed(["$GPGGA,,,,,,0,,,,,,,,*66", "$GPRMC,,V,,,,,,,,,,N*53"] * 3)
    assert len(fixes) == 3 and all(f.fix == "none" and f.time is None for f in fixes)


def test_date_rolls_over_midnight() -> None:
    """An epoch just after midnight, before the next RMC, gets the next day's date."""
    fixes = _feed([
        _with_checksum("GPRMC,235959.50,A,0100.0000,N,00100.0000,E,1.0,90.0,311224,,,A"),
        _with_checksum("GPGGA,000000.50,0100.0000,N,00100.0000,E,1,05,1.0,10.0,M,,M,,"),
    ])
    assert [f.time for f in fixes] == [
        dt.datetime(2024, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        dt.datetime(2025, 1, 1, 0, 0, 0, 500000, tzinfo=UTC),
    ]


# --- real captures ---------------------------------------------------------------------


def _capture_names() -> list[str]:
    return sorted(p.name[: -len(".expected.json")] for p in NMEA.glob("*.expected.json"))


def _capture_lines(name: str) -> list[str]:
    text = (NMEA / f"{name}.log").read_text(encoding="ascii", errors="replace")
    return [ln for ln in text.splitlines() if not ln.startswith("#")]


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _runs(fixes: list[Fix]) -> list[dict]:
    runs: list[dict] = []
    for f in fixes:
        state = "nofix" if f.fix == "none" else "fix"
        if runs and runs[-1]["state"] == state:
            runs[-1]["epochs"] += 1
        else:
            runs.append({"state": state, "epochs": 1, "from_time": _iso(f.time)})
    return runs


@pytest.mark.parametrize("name", _capture_names())
def test_real_captures_match_gpsd_expectations(name: str) -> None:
    """Replaying each capture gives gpsd's epochs: the same fix/no-fix stretches, the same
    fix epochs with lat/lon within 1e-6 deg and the same mode.

    No-fix stretches start at the same time, but may hold more epochs than gpsd counts:
    gpsd reports a time only for some no-fix epochs, while here every epoch with a new
    UTC time (GNS sends one even without a fix) is its own epoch.
    """
    expected = json.loads((NMEA / f"{name}.expected.json").read_text())["gpsd_expected"]
    fixes = _feed(_capture_lines(name))
    timed = [f for f in fixes if f.time is not None]
    with_fix = [f for f in timed if f.fix != "none"]
    runs = _runs(timed)
    print(f"\n{name}: epochs={len(fixes)} timed={len(timed)} with_fix={len(with_fix)} "
          f"(gpsd {expected['epochs_with_fix']}) runs={[(r['state'], r['epochs']) for r in runs]}")

    assert len({f.time for f in timed}) == len(timed), "one fix per distinct time"
    assert len(with_fix) == expected["epochs_with_fix"]
    want_runs = expected["fix_state_sequence"]
    assert [(r["state"], r["from_time"]) for r in runs] == [
        (r["state"], r["from_time"]) for r in want_runs]
    for got, want in zip(runs, want_runs):
        if got["state"] == "fix":
            assert got["epochs"] == want["epochs"]
        else:
            assert got["epochs"] >= want["epochs"]

    by_time = {_iso(f.time): f for f in with_fix}
    for want in expected["first_fix_epochs"] + [expected["last_fix_epoch"]]:
        got = by_time[want["time"]]
        assert abs(got.lat - want["lat"]) < 1e-6 and abs(got.lon - want["lon"]) < 1e-6, want["time"]
        assert got.fix == {2: "2d", 3: "3d"}[want["mode"]], want["time"]
    lat_lo, lat_hi = expected["lat_range"]
    lon_lo, lon_hi = expected["lon_range"]
    assert all(lat_lo - 1e-6 <= f.lat <= lat_hi + 1e-6 for f in with_fix)
    assert all(lon_lo - 1e-6 <= f.lon <= lon_hi + 1e-6 for f in with_fix)


# --- robustness ------------------------------------------------------------------------

_SAMPLE = [
    "$GPGGA,202640.000,4404.1306,N,12118.8515,W,2,10,0.98,1127.7,M,-19.6,M,0000,0000*6C",
    "$GPGSA,A,3,20,16,09,03,07,10,23,19,27,30,,,1.64,0.98,1.31*05",
    "$GPRMC,202640.000,A,4404.1306,N,12118.8515,W,0.03,225.97,130415,,,D*73",
    "$GNGNS,191503.01,3645.876324,N,03124.670280,E,AAN,08,1.3,-6.7,32.0,,,V*42",
    "$GPVTG,300.5,T,296.9,M,1.3,N,2.3,K,A*22",
    "$GPRMC,191503.01,A,3645.876324,N,03124.670280,E,1.3,300.5,110922,3.6,E,A,V*4E",
    "$GPGGA,191504.01,3645.876678,N,03124.668626,E,1,04,1.1,-14.1,M,32.0,M,,*73",
    "$GPGGA,,,,,,0,,,,,,,,*66",
    "$GPRMC,,V,,,,,,,,,,N*53",
    "$GLGSV,3,1,11,65,36,040,,71,20,318,16,72,58,002,25,73,26,070,23*61",
    "$GNRMC,223746.00,A,3806.62966,N,12237.61384,W,0.061,,110720,,,D,V*0A",
]

_noise = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
    # truncated valid sentences
    st.tuples(st.sampled_from(_SAMPLE), st.integers(0, 90)).map(lambda p: p[0][: p[1]]),
    # valid framing around corrupted fields: only the content can be wrong
    st.tuples(st.sampled_from(_SAMPLE), st.integers(1, 90), st.text(max_size=8)).map(
        lambda p: _with_checksum(p[0][1:p[0].index("*")][: p[1]] + p[2])),
)


def _positions(lines: list[str]) -> set[tuple[float, float]]:
    out = set()
    for line in lines:
        try:
            s = parse_sentence(line)
        except NmeaError:
            continue
        if getattr(s, "lat", None) is not None:
            out.add((s.lat, s.lon))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_SAMPLE), st.lists(_noise, max_size=3)), max_size=25))
def test_noise_raises_only_nmea_error_and_never_invents_a_position(
    stream: list[tuple[str, list[str]]],
) -> None:
    """Random text, bytes and truncated or corrupted sentences between valid ones raise only
    NmeaError, and every fix position is one a sentence that parsed actually carried."""
    lines: list[str] = []
    for good, noise in stream:
        lines.append(good)
        lines.extend(noise)
    for line in lines:
        try:
            parse_sentence(line)
        except NmeaError:
            pass
    allowed = _positions(lines)
    for fix in _feed(lines):
        if fix.fix == "none":
            assert fix.lat is None and fix.lon is None
        else:
            assert (fix.lat, fix.lon) in allowed
            assert fix.lat is not None and (fix.lat, fix.lon) != (0.0, 0.0)
