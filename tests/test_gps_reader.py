"""GpsReader on real pseudo-terminals: receiver output goes into the master side from a thread,
the reader opens the slave by its path exactly as it opens /dev/ttyACM0 on a unit.

Every wait is bounded; each test prints the figures it checks (pytest -s).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import random
import threading
import time
import tty
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.shared.clock import boottime
from agent.unit.devices.gps.fix import NO_FIX
from agent.unit.devices.gps.reader import (
    WRONG_BAUD_BYTES,
    GpsError,
    GpsPortGone,
    GpsReader,
    disable_modem_gnss,
    enable_modem_gnss,
)
from agent.unit.devices.modem.at import AtChannel
from agent.unit.devices.modem.errors import AtCommandError
from agent.unit.devices.modem.profiles import load_profile
from agent.unit.devices.modem.transcript import Transcript
from agent.sim.modem import SimulatedModem
from tests.support.data import NMEA


# Three epochs of the MT3339 capture (Adafruit GPS HAT, Bend, Oregon, 2015-04-13), verbatim.
MT3339_EPOCHS = [
    "$GPGGA,202640.000,4404.1306,N,12118.8515,W,2,10,0.98,1127.7,M,-19.6,M,0000,0000*6C",
    "$GPGSA,A,3,20,16,09,03,07,10,23,19,27,30,,,1.64,0.98,1.31*05",
    "$GPRMC,202640.000,A,4404.1306,N,12118.8515,W,0.03,225.97,130415,,,D*73",
    "$GPZDA,202640.000,13,04,2015,,*54",
    "$GPGGA,202641.000,4404.1305,N,12118.8515,W,2,11,0.83,1127.7,M,-19.6,M,0000,0000*65",
    "$GPGSA,A,3,20,16,09,03,07,10,23,19,27,30,05,,1.33,0.83,1.03*09",
    "$GPRMC,202641.000,A,4404.1305,N,12118.8515,W,0.01,201.71,130415,,,D*7D",
    "$GPZDA,202641.000,13,04,2015,,*55",
    "$GPGGA,202642.000,4404.1305,N,12118.8515,W,2,11,0.83,1127.7,M,-19.6,M,0000,0000*66",
    "$GPGSA,A,3,20,16,09,03,07,10,23,19,27,30,05,,1.33,0.83,1.03*09",
    "$GPRMC,202642.000,A,4404.1305,N,12118.8515,W,0.00,0.00,130415,,,D*7A",
    "$GPZDA,202642.000,13,04,2015,,*56",
]
# The capture is replayed as of the day it was made: its dates are the receiver's own then,
# where today's reader would take them for a week rollover (tests/test_nmea.py).
MT3339_RECORDED = dt.date(2015, 4, 13)
LAT_40, LON_40 = 44 + 4.1306 / 60, -(121 + 18.8515 / 60)
LAT_41 = 44 + 4.1305 / 60

# Binary a receiver mixes into its NMEA: a u-blox UBX NAV-PVT frame and a SiRF binary frame.
# Payload bytes are seeded random without '\n' and '$', so where each frame ends up is known
# exactly; the property test below throws arbitrary bytes (those two included) at the reader.
_rng = random.Random(7)
_payload = bytes(b for b in (_rng.randrange(256) for _ in range(200)) if b not in (0x0A, 0x24))
UBX_FRAME = bytes.fromhex("b56201075c00") + _payload[:92] + bytes.fromhex("a1c3")
SIRF_FRAME = bytes.fromhex("a0a20009") + _payload[92:101] + bytes.fromhex("0101b0b3")


def crlf(lines: list[str]) -> bytes:
    return b"".join(line.encode("ascii") + b"\r\n" for line in lines)


class FakeReceiver:
    """The receiver's end of a pseudo-terminal: bytes written here reach whoever opens ``path``."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        # Raw, so the line discipline neither echoes nor rewrites what the "receiver" sends.
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self._threads: list[threading.Thread] = []

    def send(self, data: bytes, chunk: int = 0, pause: float = 0.0) -> threading.Thread:
        """Write ``data`` from a thread (in ``chunk``-byte pieces ``pause`` apart when given)."""
        def run() -> None:
            step = chunk or len(data) or 1
            for i in range(0, len(data), step):
                view = memoryview(data[i:i + step])
                while view:
                    try:
                        written = os.write(self.master, view)
                    except OSError:
                        return  # the test closed the master: the receiver is unplugged
                    view = view[written:]
                if pause:
                    time.sleep(pause)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def unplug(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self.master = self.slave = -1

    def close(self) -> None:
        for thread in self._threads:
            thread.join(timeout=5)
        self.unplug()


@pytest.fixture
def receiver():
    rx = FakeReceiver()
    yield rx
    rx.close()


def collect(reader: GpsReader, want: int, seconds: float) -> list:
    return list(reader.fixes(count=want, seconds=seconds))


# -- fixes from real receiver output -------------------------------------------------------

def test_inline_real_sentences_give_one_fix_per_epoch(receiver: FakeReceiver) -> None:
    """Three epochs of a real MT3339 capture give three fixes with its position, the DGPS 3D
    mode from GSA and the date from RMC; ZDA (valid, but not a type the reader uses) is
    counted as unsupported, not as an error. The last epoch ends when the line falls quiet."""
    with GpsReader(receiver.path, reference_date=MT3339_RECORDED) as reader:
        receiver.send(crlf(MT3339_EPOCHS), chunk=37, pause=0.005)
        started = time.monotonic()
        fixes = collect(reader, 3, seconds=6)
        took = time.monotonic() - started
    s = reader.stats
    print(f"\nfixes={len(fixes)} sentences_ok={s.sentences_ok} unsupported={s.unsupported} "
          f"epochs={s.epochs} noise={s.noise_bytes} took={took:.2f}s")
    assert [f.time for f in fixes] == [
        dt.datetime(2015, 4, 13, 20, 26, 40 + i, tzinfo=dt.timezone.utc) for i in range(3)]
    assert fixes[0].lat == pytest.approx(LAT_40, abs=1e-9)
    assert fixes[0].lon == pytest.approx(LON_40, abs=1e-9)
    assert fixes[1].lat == pytest.approx(LAT_41, abs=1e-9)
    assert all(f.fix == "3d" and f.alt_m == 1127.7 for f in fixes)
    assert fixes[0].sats == 10 and fixes[0].hdop == 0.98
    assert (s.sentences_ok, s.unsupported, s.bad_checksum, s.unparseable, s.noise_bytes) == (9, 3, 0, 0, 0)
    assert s.epochs == 3 and s.fixes_with_position == 3
    assert not reader.likely_wrong_baud


def test_capture_file_replayed_gives_every_fix(receiver: FakeReceiver) -> None:
    """The whole MT3339 capture, replayed through the port, gives gpsd's 30 fix epochs with
    gpsd's first positions, and every sentence is accounted for in the counts."""
    log_lines = [ln for ln in (NMEA / "mt3339.log").read_text().splitlines() if not ln.startswith("#")]
    expected = json.loads((NMEA / "mt3339.expected.json").read_text())
    with GpsReader(receiver.path, reference_date=MT3339_RECORDED) as reader:
        receiver.send(crlf(log_lines), chunk=512, pause=0.002)
        fixes = collect(reader, 30, seconds=15)
    s = reader.stats
    types = expected["log_stats"]["sentence_types"]
    print(f"\nlines={len(log_lines)} fixes={len(fixes)} sentences_ok={s.sentences_ok} "
          f"unsupported={s.unsupported} bytes={s.bytes_read} epochs={s.epochs}")
    assert len(fixes) == expected["gpsd_expected"]["epochs_with_fix"] == 30
    assert all(f.fix == "3d" for f in fixes)
    for got, want in zip(fixes, expected["gpsd_expected"]["first_fix_epochs"]):
        assert got.time.isoformat(timespec="milliseconds").replace("+00:00", "Z") == want["time"]
        assert got.lat == pytest.approx(want["lat"], abs=1e-6)
        assert got.lon == pytest.approx(want["lon"], abs=1e-6)
    assert s.sentences_ok == types["GPGGA"] + types["GPGSA"] + types["GPGSV"] + types["GPRMC"]
    assert s.unsupported == types["GPZDA"]
    assert s.bad_checksum == s.unparseable == s.noise_bytes == 0


# -- noise, corruption, silence ------------------------------------------------------------

def test_binary_noise_and_partial_lines_do_not_stop_fixes(receiver: FakeReceiver) -> None:
    """Binary frames glued to the front of sentences, a sentence cut off and followed by the
    next one on the same line (a receiver reset), and a cut sentence alone on its line cost
    nothing but the cut sentences: every epoch still gives its fix, every noise byte is
    counted, and the lone cut sentence is unparseable."""
    cut_glued = b"$GPRMC,202639.000,A,4404.13"   # the rest never came
    cut_alone = b"$GPGGA,202641.000,4404.1305,N,121"
    lines = [ln.encode() for ln in MT3339_EPOCHS]
    lines[0] = UBX_FRAME + cut_glued + lines[0]
    lines[2] = SIRF_FRAME + lines[2]
    lines.insert(5, cut_alone)
    lines[8] = UBX_FRAME + lines[8]
    stream = b"".join(ln + b"\r\n" for ln in lines)
    with GpsReader(receiver.path) as reader:
        receiver.send(stream, chunk=23, pause=0.002)
        fixes = collect(reader, 3, seconds=6)
    s = reader.stats
    print(f"\nfixes={len(fixes)} noise_bytes={s.noise_bytes} unparseable={s.unparseable} "
          f"sentences_ok={s.sentences_ok} bad_checksum={s.bad_checksum} bytes={s.bytes_read}")
    assert [f.lat for f in fixes] == pytest.approx([LAT_40, LAT_41, LAT_41], abs=1e-9)
    assert all(f.fix == "3d" and f.alt_m == 1127.7 for f in fixes)
    assert s.noise_bytes == 2 * len(UBX_FRAME) + len(SIRF_FRAME) + len(cut_glued)
    assert (s.sentences_ok, s.unsupported, s.unparseable, s.bad_checksum) == (9, 3, 1, 0)
    assert s.bytes_read == len(stream)
    assert not reader.likely_wrong_baud


def test_bad_checksums_are_counted_and_skipped(receiver: FakeReceiver) -> None:
    """A sentence whose checksum does not match is never used, even though its fields read
    fine: with every GGA corrupted, the position comes from RMC alone (2D, no altitude)."""
    corrupted = [ln[:-2] + "00" if ln.startswith("$GPGGA") else ln for ln in MT3339_EPOCHS]
    with GpsReader(receiver.path) as reader:
        receiver.send(crlf(corrupted))
        fixes = collect(reader, 3, seconds=6)
    s = reader.stats
    print(f"\nfixes={len(fixes)} bad_checksum={s.bad_checksum} sentences_ok={s.sentences_ok}")
    assert s.bad_checksum == 3
    assert s.sentences_ok == 6
    assert len(fixes) == 3
    assert all(f.alt_m is None and f.sats is None for f in fixes)  # nothing from the corrupt GGAs
    assert fixes[0].lat == pytest.approx(LAT_40, abs=1e-9)


def test_silence_returns_none_in_time_and_fixes_resume(receiver: FakeReceiver) -> None:
    """A silent receiver (antenna indoors, cold start) is not an error: read_fix returns None
    within its timeout (plus one 0.2 s serial read), again and again; when sentences come
    back, so do fixes."""
    with GpsReader(receiver.path) as reader:
        waits = []
        for _ in range(3):
            started = time.monotonic()
            assert reader.read_fix(0.5) is None
            waits.append(time.monotonic() - started)
        receiver.send(crlf(MT3339_EPOCHS[:8]))
        fix = reader.read_fix(5.0)
    print(f"\nsilent waits={[round(w, 2) for w in waits]} then fix at {fix.time if fix else None}")
    assert all(0.45 <= w <= 0.5 + 0.3 for w in waits)
    assert fix is not None and fix.lat == pytest.approx(LAT_40, abs=1e-9)


def test_current_is_the_latest_fix_until_it_is_stale(receiver: FakeReceiver) -> None:
    """current() gives the last completed fix while it is younger than max_age_s, and a
    "none" fix after that (a position from minutes ago must not be stamped on a reading)."""
    ahead = [0.0]
    with GpsReader(receiver.path, max_age_s=0.6, clock=lambda: boottime() + ahead[0]) as reader:
        assert reader.current() == NO_FIX
        receiver.send(crlf(MT3339_EPOCHS[:8]))
        fix = reader.read_fix(5.0)
        fresh = reader.current()
        ahead[0] = 0.8  # the clock jumps past max_age_s
        stale = reader.current()
    print(f"\nfresh={fresh.fix} stale={stale.fix}")
    assert fix is not None and fresh == fix
    assert stale == NO_FIX


# -- the port -------------------------------------------------------------------------------

def test_vanished_port_raises_port_gone(receiver: FakeReceiver) -> None:
    """Unplugging the receiver (the pty master closed) ends reading with GpsPortGone, promptly,
    not with silence forever or a pyserial exception."""
    reader = GpsReader(receiver.path)
    try:
        receiver.send(crlf(MT3339_EPOCHS[:8])).join(timeout=5)
        assert reader.read_fix(5.0) is not None
        receiver.unplug()
        started = time.monotonic()
        with pytest.raises(GpsPortGone) as caught:
            for _ in range(50):  # bounded: 50 reads of at most 0.3 s each
                reader.read_fix(0.3)
        took = time.monotonic() - started
    finally:
        reader.close()
    print(f"\nraised after {took:.2f}s: {caught.value}")
    assert took < 2.0
    assert isinstance(caught.value, GpsError)
    assert receiver.path in str(caught.value)


def test_unopenable_port_raises_port_gone_with_one_line_reason(tmp_path: Path) -> None:
    """A port that does not exist is GpsPortGone with a one-line reason naming it."""
    missing = str(tmp_path / "ttyGPS0")
    with pytest.raises(GpsPortGone) as caught:
        GpsReader(missing)
    message = str(caught.value)
    print(f"\n{message}")
    assert missing in message and "\n" not in message


def test_garbage_only_means_likely_wrong_baud(receiver: FakeReceiver) -> None:
    """A receiver at another baud rate gives only garbage: no fix, the bytes are counted as
    noise, no sentence is valid, and likely_wrong_baud says so. Once real sentences arrive
    (baud fixed) it clears."""
    rng = random.Random(9600)
    # What 9600-baud NMEA read at 4800 looks like: high-bit bytes, no usable '$' lines.
    garbage = bytes(rng.choice([0x80, 0xf8, 0xfe, 0x1e, 0x78, 0xe0, 0x86, 0x98, 0x0a, 0x24])
                    for _ in range(3 * WRONG_BAUD_BYTES))
    with GpsReader(receiver.path) as reader:
        receiver.send(garbage, chunk=128, pause=0.01)
        fixes = collect(reader, 1, seconds=1.5)
        s = reader.stats
        wrong = reader.likely_wrong_baud
        noise, bad, unparseable, ok = s.noise_bytes, s.bad_checksum, s.unparseable, s.sentences_ok
        receiver.send(crlf(MT3339_EPOCHS[:8]))
        fix = reader.read_fix(5.0)
        right = not reader.likely_wrong_baud
    print(f"\nbytes={len(garbage)} noise={noise} unparseable={unparseable} bad={bad} ok={ok} "
          f"likely_wrong_baud={wrong} then fix={fix is not None} cleared={right}")
    assert fixes == []
    assert wrong
    assert ok == 0
    assert noise > len(garbage) // 2
    assert fix is not None and right


# -- property: noise never becomes a position ----------------------------------------------

VALID = MT3339_EPOCHS + [
    "$GPGGA,191504.01,3645.876678,N,03124.668626,E,1,04,1.1,-14.1,M,32.0,M,,*73",
    "$GNRMC,223746.00,A,3806.62966,N,12237.61384,W,0.061,,110720,,,D,V*0A",
    "$GPGGA,,,,,,0,,,,,,,,*66",
    "$GPRMC,,V,,,,,,,,,,N*53",
]
POSITIONS = {
    (round(44 + 4.1306 / 60, 9), round(LON_40, 9)),
    (round(LAT_41, 9), round(LON_40, 9)),
    (round(36 + 45.876678 / 60, 9), round(31 + 24.668626 / 60, 9)),
    (round(38 + 6.62966 / 60, 9), round(-(122 + 37.61384 / 60), 9)),
}
# The capture's 20:26:42 GGA moved to 23:59:59 (checksum recomputed): a time no other sentence has,
# so the epoch before it ends without waiting for the line to fall quiet.
END = "$GPGGA,235959.000,4404.1305,N,12118.8515,W,2,11,0.83,1127.7,M,-19.6,M,0000,0000*67"

noise = st.one_of(
    st.binary(min_size=1, max_size=120),
    # a sentence cut short, as a reset or a reconnect leaves it
    st.tuples(st.sampled_from(VALID), st.integers(1, 80)).map(lambda t: t[0].encode()[:t[1]]),
    st.sampled_from([b"$", b"\n", b"\r", b"*", b",", b"$GP", UBX_FRAME, SIRF_FRAME]),
)
# Each valid sentence comes whole on its line, with any noise before it.
pieces = st.lists(st.tuples(st.lists(noise, max_size=3), st.sampled_from(VALID)), min_size=1, max_size=15)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces)
def test_random_bytes_never_raise_and_never_invent_a_position(chunks: list[tuple[list[bytes], str]]) -> None:
    """Random bytes interleaved with valid sentences never make the reader raise, never cost
    a sentence that ends its line whole, and every position reported is one a valid
    sentence carried."""
    stream = b"".join(b"".join(junk) + line.encode() + b"\r\n" for junk, line in chunks)
    stream += END.encode() + b"\r\n"
    usable = sum(1 for _, line in chunks if "ZDA" not in line) + 1
    rx = FakeReceiver()
    try:
        with GpsReader(rx.path) as reader:
            rx.send(stream, chunk=64)
            fixes = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                fix = reader.read_fix(0.2)
                if fix is not None:
                    fixes.append(fix)
                elif reader.stats.bytes_read >= len(stream):
                    break
            assert reader.stats.bytes_read == len(stream)
    finally:
        rx.close()
    s = reader.stats
    print(f"bytes={len(stream)} fixes={len(fixes)} ok={s.sentences_ok}/{usable} bad={s.bad_checksum} "
          f"unparseable={s.unparseable} noise={s.noise_bytes}")
    assert s.sentences_ok >= usable
    for fix in fixes:
        if fix.lat is not None:
            assert (round(fix.lat, 9), round(fix.lon, 9)) in POSITIONS


# -- a modem's built-in GNSS ----------------------------------------------------------------

def test_enable_and_disable_modem_gnss_on_simulated_ec25(tmp_path: Path) -> None:
    """On the simulated EC25 the profile's GNSS commands are sent as recorded in its
    transcript, and the recorded answers (OK) are accepted."""
    profile = load_profile("quectel-ec25")
    for command in profile.gnss_on + profile.gnss_off:
        assert profile.transcript.answer(command)[-1] == "OK", command
    with SimulatedModem.for_profile("quectel-ec25", workdir=tmp_path, time_scale=0.01) as modem:
        with AtChannel(modem.port, timeout=3) as channel:
            enable_modem_gnss(channel, profile)
            disable_modem_gnss(channel, profile)
        received = list(modem.received)
    print(f"\nmodem received {received}")
    assert [c for c in received if "QGPS" in c.upper()] == [*profile.gnss_on, *profile.gnss_off]


@pytest.mark.parametrize("on_answer, off_answer", [
    ("+CME ERROR: 504", "+CME ERROR: 505"),                          # AT+CMEE=1
    ("+CME ERROR: Session is ongoing", "+CME ERROR: Session not active"),  # AT+CMEE=2
])
def test_gnss_already_in_the_asked_state_is_success(tmp_path: Path, on_answer: str, off_answer: str) -> None:
    """Quectel answers AT+QGPS=1 with 504 "Session is ongoing" when GNSS already runs (after
    an agent restart) and AT+QGPSEND with 505 "Session not active" when it is off: both
    leave the receiver as asked, so neither is an error. Any other error still raises."""
    profile = load_profile("quectel-ec25")
    transcript = Transcript({**profile.transcript.answers,
                             "AT+QGPS=1": (on_answer,), "AT+QGPSEND": (off_answer,)})
    with SimulatedModem(transcript, "quectel", workdir=tmp_path, time_scale=0.01) as modem:
        with AtChannel(modem.port, timeout=3) as channel:
            enable_modem_gnss(channel, profile)
            disable_modem_gnss(channel, profile)
    print(f"\naccepted {on_answer!r} and {off_answer!r}")

    refusing = Transcript({**profile.transcript.answers, "AT+QGPS=1": ("+CME ERROR: 3",)})
    with SimulatedModem(refusing, "quectel", workdir=tmp_path / "refusing", time_scale=0.01) as modem:
        with AtChannel(modem.port, timeout=3) as channel:
            with pytest.raises(AtCommandError) as caught:
                enable_modem_gnss(channel, profile)
    assert caught.value.code == 3


def test_model_without_gnss_cannot_enable_it() -> None:
    """Asking a model without a built-in receiver to start one is a GpsError, before any command."""
    profile = load_profile("quectel-ec25")
    bare = dataclasses.replace(profile, gnss_on=(), gnss_off=())
    with pytest.raises(GpsError, match="no GNSS"):
        enable_modem_gnss(None, bare)  # type: ignore[arg-type]
    disable_modem_gnss(None, bare)  # type: ignore[arg-type]  # nothing to send
