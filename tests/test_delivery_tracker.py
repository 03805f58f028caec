"""DeliveryTracker: which readings the broker acknowledged to send again, from the centre's confirmations.

Time is injected (monotonic seconds), so every scenario below is a script of what happened
and when, with what the tracker must hand back for sending again at each step.  Unless a
scenario says otherwise: ``grace`` 10 s, ``probe_after`` 100 s, ``max_wait`` 10 000 s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.shared import seq_ranges
from agent.unit.delivery import DeliveryTracker
from agent.shared.protocol import Confirmation


@dataclass(frozen=True)
class Ack:
    """The broker acknowledged ``seqs`` at ``at``."""
    at: float
    seqs: tuple[int, ...]


@dataclass(frozen=True)
class Confirm:
    """A confirmation arrived at ``at``; ``back`` is what the tracker must hand back."""
    at: float
    upto: int
    top: int
    holes: tuple[tuple[int, int], ...] = ()
    back: tuple[int, ...] = ()


@dataclass(frozen=True)
class Due:
    """The agent asks at ``at`` whether the centre's silence calls for a probe."""
    at: float
    back: tuple[int, ...] = ()


@dataclass(frozen=True)
class Reopened:
    """The buffer re-opened ``seqs`` by itself (the centre lost them)."""
    seqs: tuple[int, ...]


@dataclass(frozen=True)
class Tracker:
    """The tracker's settings for a scenario, when not the usual ones."""
    grace: float = 10
    probe_after: float = 100
    max_wait: float = 10_000


@dataclass(frozen=True)
class Expect:
    """How many readings wait, and when :meth:`DeliveryTracker.due` may next hand one back."""
    waiting: int
    next_check: float | None


def play(steps: list) -> DeliveryTracker:
    config = steps[0] if isinstance(steps[0], Tracker) else Tracker()
    tracker = DeliveryTracker(config.grace, config.probe_after, config.max_wait, now=0.0)
    now, rev = 0.0, 0
    for number, step in enumerate(steps, 1):
        where = f"step {number}: {step}"
        if isinstance(step, Ack):
            now = step.at
            tracker.acknowledged(step.seqs, step.at)
        elif isinstance(step, Confirm):
            now, rev = step.at, rev + 1
            back = tracker.confirmed(Confirmation("unit-1", rev, step.upto, step.top, step.holes), step.at)
            assert tuple(back) == step.back, where
        elif isinstance(step, Due):
            now = step.at
            assert tuple(tracker.due(step.at)) == step.back, where
        elif isinstance(step, Reopened):
            tracker.reopened(step.seqs)
        elif isinstance(step, Expect):
            assert (tracker.waiting, tracker.next_check(now)) == (step.waiting, step.next_check), where
    return tracker


# -- overtaken: a later batch confirmed, an earlier one not ------------------------------

OVERTAKEN = {
    "a batch overtaken by a confirmed one is given back once grace has passed": [
        Ack(0, (1, 2)), Ack(5, (3, 4)), Ack(11, (5, 6)),
        Confirm(12, upto=0, top=6, holes=((1, 4),), back=(1, 2)),  # 0 < 11 - 10; 5 is not
        Expect(waiting=2, next_check=112),
    ],
    "within grace nothing is given back: a second collector may be a little behind": [
        Ack(0, (1, 2)), Ack(9, (3,)), Ack(10, (4,)), Ack(10.5, (5,)),
        Confirm(12, upto=0, top=3, holes=((1, 2),)),           # 3 was acknowledged 9 s after 1, 2
        Confirm(13, upto=0, top=4, holes=((1, 2),)),           # 4: exactly grace after: not yet
        Confirm(14, upto=0, top=5, holes=((1, 2),), back=(1, 2)),
    ],
    "grace is counted between acknowledgements, not from the confirmation's arrival": [
        Ack(0, (1,)), Ack(1, (2,)),
        Confirm(500, upto=0, top=2, holes=((1, 1),)),          # long after, but 1 was acked only 1 s before 2
    ],
    "a confirmation that covers nothing waiting overtakes nothing": [
        Ack(0, (5, 6)), Ack(50, (7,)),
        Confirm(60, upto=4, top=4),
        Expect(waiting=3, next_check=100),                     # and it was no progress: the probe clock runs on
    ],
    "a partly covered batch keeps only what is not covered": [
        Ack(0, (1, 2, 3)),
        Confirm(1, upto=2, top=2),
        Expect(waiting=1, next_check=101),
        Ack(20, (4,)),
        Confirm(21, upto=2, top=4, holes=((3, 3),), back=(3,)),
        Expect(waiting=0, next_check=None),
    ],
    "everything confirmed: nothing waits and nothing is due": [
        Ack(0, (1, 2)), Ack(1, (3,)),
        Confirm(2, upto=3, top=3),
        Expect(waiting=0, next_check=None),
        Due(10_000),
    ],
    "several overtaken batches come back together, in seq order": [
        Ack(0, (4, 5)), Ack(1, (1, 2, 3)), Ack(30, (9,)),
        Confirm(31, upto=0, top=9, holes=((1, 2), (4, 5)), back=(1, 2, 4, 5)),
    ],
}


@pytest.mark.parametrize("steps", OVERTAKEN.values(), ids=OVERTAKEN.keys())
def test_overtaken(steps: list) -> None:
    play(steps)


BACKING_OFF = {
    "each further give-back of the same readings waits twice as long: grace, 2 x grace, 4 x grace": [
        Ack(0, (1,)), Ack(11, (2,)),
        Confirm(12, upto=0, top=2, holes=((1, 1),), back=(1,)),   # waited > 10
        Ack(13, (1,)),                                            # sent again
        Ack(33, (3,)), Ack(33.5, (4,)),
        Confirm(34, upto=0, top=3, holes=((1, 1),)),           # 3: 20 s after 1: not more than 2 x grace
        Confirm(35, upto=0, top=4, holes=((1, 1),), back=(1,)),
        Ack(36, (1,)),
        Ack(76, (5,)), Ack(76.5, (6,)),
        Confirm(77, upto=0, top=5, holes=((1, 1),)),           # 5: 40 s after 1: not more than 4 x grace
        Confirm(78, upto=0, top=6, holes=((1, 1),), back=(1,)),
    ],
    "the wait is capped at max_wait": [
        Tracker(grace=10, probe_after=20, max_wait=25),
        Ack(0, (1,)), Ack(11, (2,)), Confirm(11, upto=0, top=2, holes=((1, 1),), back=(1,)),
        Ack(12, (1,)), Ack(33, (3,)), Confirm(33, upto=0, top=3, holes=((1, 1),), back=(1,)),
        Ack(34, (1,)), Ack(59.5, (4,)), Confirm(60, upto=0, top=4, holes=((1, 1),), back=(1,)),  # 25, not 40
        Ack(61, (1,)), Ack(86.5, (5,)), Confirm(87, upto=0, top=5, holes=((1, 1),), back=(1,)),  # 25 again
    ],
    "a batch waits as long as the most often sent reading in it": [
        Ack(0, (1,)), Ack(11, (2,)), Confirm(12, upto=0, top=2, holes=((1, 1),), back=(1,)),
        Ack(13, (1, 3)),                                        # re-sent together with a new reading
        Ack(24, (4,)), Confirm(25, upto=0, top=4, holes=((1, 1), (3, 3))),      # 11 > grace, but not > 2 x grace
        Ack(34, (5,)), Confirm(35, upto=0, top=5, holes=((1, 1), (3, 3)), back=(1, 3)),
    ],
    "a confirmed reading starts afresh: a later loss of it waits grace again": [
        Ack(0, (1,)), Ack(11, (2,)), Confirm(12, upto=0, top=2, holes=((1, 1),), back=(1,)),
        Ack(13, (1,)), Confirm(14, upto=2, top=2),
        Reopened((1,)),                                         # the centre's database was restored
        Ack(20, (1,)), Ack(31, (3,)), Confirm(32, upto=0, top=3, holes=((1, 1),), back=(1,)),
    ],
}


@pytest.mark.parametrize("steps", BACKING_OFF.values(), ids=BACKING_OFF.keys())
def test_backing_off(steps: list) -> None:
    play(steps)


# Readings above what a confirmation speaks of (``max(upto, top)``) are not known to be missing:
# the centre said nothing about them.  A collector lowers ``top`` when there are more holes
# than a confirmation can list, so this happens whenever a big loss is being repaired.
ABOVE_TOP = {
    "a batch above top, acknowledged before a re-sent one that is confirmed, is not given back": [
        Ack(0, (70, 71)),                                       # new readings
        Ack(30, (1, 2)),                                        # older ones, sent again
        Confirm(31, upto=2, top=2),                             # says nothing above 2
        Expect(waiting=2, next_check=131),
    ],
    "only the part of a batch a lowered top speaks of is given back": [
        Ack(0, (5, 6, 7, 8)),
        Ack(30, (1,)),
        Confirm(31, upto=1, top=6, holes=((5, 6),), back=(5, 6)),
    ],
}


@pytest.mark.parametrize("steps", ABOVE_TOP.values(), ids=ABOVE_TOP.keys())
def test_readings_above_top_are_not_given_back_by_the_overtaken_rule(steps: list) -> None:
    play(steps)


# -- silence: the centre confirms nothing ------------------------------------------------

SILENCE = {
    "only the oldest waiting batch is sent as a probe, then 2 x, 4 x probe_after": [
        Tracker(grace=60),
        Ack(0, (1, 2)), Ack(10, (3, 4)),
        Expect(waiting=4, next_check=100),
        Due(99.9),
        Due(100, back=(1, 2)),
        Ack(101, (1, 2)),
        Expect(waiting=4, next_check=300),
        Due(299),
        Due(300, back=(3, 4)),                                  # the oldest waiting is now 3, 4
        Ack(301, (3, 4)),
        Expect(waiting=4, next_check=700),
        Due(700, back=(1, 2)),
    ],
    "the probe wait is capped at max_wait": [
        Tracker(grace=60, max_wait=250),
        Ack(0, (1,)),
        Due(100, back=(1,)), Ack(100, (1,)),
        Due(300, back=(1,)), Ack(300, (1,)),
        Expect(waiting=1, next_check=550),                      # 250, not 400
        Due(550, back=(1,)), Ack(550, (1,)),
        Due(800, back=(1,)),
    ],
    "the silence clock starts with the first reading waiting, not at start-up": [
        Due(400),
        Ack(500, (1,)),
        Expect(waiting=1, next_check=600),
        Due(599),
        Due(600, back=(1,)),
    ],
    "progress resets the probe wait": [
        Tracker(grace=60),
        Ack(0, (1,)), Ack(50, (2,)),
        Due(100, back=(1,)),
        Ack(101, (1,)),                                         # the probe, sent
        Confirm(160, upto=0, top=2, holes=((1, 1),)),           # covers 2, acknowledged before the probe
        Expect(waiting=1, next_check=260),                      # probe_after again, not 2 x
        Due(259),
        Due(260, back=(1,)),
    ],
    "an overtaken reading goes again once its grace is over, without waiting for a confirmation": [
        Tracker(grace=60),
        Ack(0, (1,)), Ack(10, (2,)),
        Confirm(20, upto=0, top=2, holes=((1, 1),)),            # 2 is here, 1 is not; 1 is only 20 s old
        Due(59),
        Due(60, back=(1,)),
        Ack(61, (1,)),
        Due(180),                                               # now it waits for the centre: the probe,
        Due(181, back=(1,)),                                    # once its doubled grace is over too
    ],
    "a probe hands back nothing while nothing waits": [
        Ack(0, (1,)), Confirm(1, upto=1, top=1),
        Due(10_000),
        Expect(waiting=0, next_check=None),
    ],
}


@pytest.mark.parametrize("steps", SILENCE.values(), ids=SILENCE.keys())
def test_silence(steps: list) -> None:
    play(steps)


# -- reopened, waiting, next_check ---------------------------------------------------------

def test_reopened_readings_are_forgotten() -> None:
    tracker = play([
        Ack(0, (1, 2, 3)), Ack(1, (4,)),
        Reopened((2,)),
        Expect(waiting=3, next_check=100),
        Reopened((1, 3, 99)),                                   # unknown seqs are no matter
        Expect(waiting=1, next_check=100),
        Ack(20, (5,)),
        Confirm(21, upto=0, top=5, holes=((1, 4),), back=(4,)),  # 1, 2, 3 are the buffer's business now
        Reopened(()),
        Expect(waiting=0, next_check=None),
    ])
    assert tracker.due(10_000) == []


def test_resent_counts_every_reading_handed_back() -> None:
    tracker = play([Ack(0, (1, 2)), Ack(11, (3,)), Confirm(12, upto=0, top=3, holes=((1, 2),), back=(1, 2)),
                    Ack(13, (1, 2)), Due(200, back=(1, 2))])
    assert tracker.resent == 4


def test_an_empty_acknowledgement_changes_nothing() -> None:
    play([Ack(5, ()), Expect(waiting=0, next_check=None), Ack(50, (1,)), Expect(waiting=1, next_check=150)])


def test_max_wait_is_never_below_grace_or_probe_after() -> None:
    assert DeliveryTracker(grace=60, probe_after=900, max_wait=10).max_wait == 900


# -- properties ----------------------------------------------------------------------------
#
# A random history of the unit and the centre.  Moves:
#   ("tick", f)                    the clock moves on f x grace
#   ("ack", fresh, again, lost)    the broker acknowledges `fresh` new readings and `again` of those
#                                  handed back; when `lost`, the broker never passes them on
#   ("confirm",)                   the centre confirms what it holds (as a collector does: upto, top,
#                                  at most 64 holes, top lowered past them)
#   ("confirm_any", bits, cut)     a confirmation of any subset of what was ever sent
#   ("due",)                       the agent asks whether the silence calls for a probe
#   ("reopen", i)                  the buffer re-opens a waiting reading by itself

@dataclass
class Story:
    """The unit's side of a random history, checked against the tracker as it goes."""

    tracker: DeliveryTracker
    waiting: set[int]
    acked_at: dict[int, float]     # first acknowledgement of each seq
    given_back: dict[int, list[float]]
    covered: set[int]
    reopened: set[int]


def _confirmation(rev: int, held: set[int], upto_cut: int | None = None) -> Confirmation:
    upto = 0
    while upto + 1 in held and (upto_cut is None or upto < upto_cut):
        upto += 1
    top = max(held, default=0)
    holes = [h for h in seq_ranges.subtract([(1, top)], seq_ranges.from_seqs(held)) if h[0] > upto]
    if len(holes) > 64:
        top, holes = holes[64][0] - 1, holes[:64]
    return Confirmation("unit-1", rev, upto, top, tuple(holes))


def _play_story(grace: float, probe_after: float, moves: list, use_probe: bool = True,
                use_reopen: bool = True) -> Story:
    tracker = DeliveryTracker(grace, probe_after, max_wait=1e12, now=0.0)
    story = Story(tracker, set(), {}, {}, set(), set())
    now, rev, next_seq = 0.0, 0, 1
    at_centre: set[int] = set()
    resendable: list[int] = []  # handed back, not yet acknowledged again

    def take_back(seqs: list[int]) -> None:
        assert len(seqs) == len(set(seqs)) and set(seqs) <= story.waiting, "only waiting readings come back"
        for seq in seqs:
            story.waiting.discard(seq)
            story.given_back.setdefault(seq, []).append(now)
            resendable.append(seq)

    for move in moves:
        kind = move[0]
        if kind == "tick":
            now += move[1] * grace
        elif kind == "ack":
            _, fresh, again, lost = move
            seqs = list(range(next_seq, next_seq + fresh)) + resendable[:again]
            next_seq += fresh
            del resendable[:again]
            tracker.acknowledged(seqs, now)
            for seq in seqs:
                story.acked_at.setdefault(seq, now)
            story.waiting |= set(seqs)
            if not lost:
                at_centre |= set(seqs)
        elif kind in ("confirm", "confirm_any"):
            rev += 1
            if kind == "confirm":
                confirmation = _confirmation(rev, at_centre)
            else:
                _, bits, cut = move
                confirmation = _confirmation(rev, {seq for i, seq in enumerate(sorted(story.acked_at))
                                                   if bits >> (i % 60) & 1}, cut)
            newly = {seq for seq in story.waiting if confirmation.covers(seq)}
            story.waiting -= newly
            story.covered |= newly
            take_back(tracker.confirmed(confirmation, now))
            resendable[:] = [seq for seq in resendable if not confirmation.covers(seq)]  # the buffer's business
        elif kind == "due" and use_probe:
            take_back(tracker.due(now))
        elif kind == "reopen" and use_reopen and story.waiting:
            seq = sorted(story.waiting)[move[1] % len(story.waiting)]
            tracker.reopened([seq])
            story.waiting.discard(seq)
            story.reopened.add(seq)
        # nothing vanishes: the tracker's count is exactly the readings still waiting
        assert tracker.waiting == len(story.waiting)
    return story


moves = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.floats(0, 3) | st.sampled_from([0.5, 1.0, 1.01, 2.0, 20.0])),
        st.tuples(st.just("ack"), st.integers(0, 4), st.integers(0, 4), st.booleans()),
        st.tuples(st.just("confirm")),
        st.tuples(st.just("confirm_any"), st.integers(0, 2**60 - 1), st.integers(0, 40)),
        st.tuples(st.just("due")),
        st.tuples(st.just("reopen"), st.integers(0, 100)),
    ),
    max_size=60,
)
graces = st.sampled_from([1.0, 10.0, 60.0])


@settings(max_examples=300, deadline=None)
@given(graces, st.sampled_from([1.0, 100.0, 900.0]), moves)
def test_nothing_acknowledged_vanishes(grace: float, probe_after: float, history: list) -> None:
    """Every reading acknowledged is still waiting, or was handed back, or is covered by a confirmation."""
    story = _play_story(grace, probe_after, history)
    for seq in story.acked_at:
        assert (seq in story.waiting or seq in story.given_back or seq in story.covered
                or seq in story.reopened), f"seq {seq} vanished"


def _assert_give_backs_bounded(story: Story, grace: float) -> None:
    for seq, times in story.given_back.items():
        span = times[-1] - story.acked_at[seq]
        assert span > 0, f"seq {seq} handed back at the moment it was first acknowledged"
        assert len(times) <= math.log2(span / grace) + 1, (
            f"seq {seq} handed back {len(times)} times within {span:g} s (grace {grace:g} s): at {times}")


@settings(max_examples=300, deadline=None)
@given(graces, moves)
def test_give_backs_of_a_reading_by_confirmations_are_bounded(grace: float, history: list) -> None:
    """Within T of its first acknowledgement a reading is handed back at most log2(T / grace) + 1 times."""
    _assert_give_backs_bounded(_play_story(grace, 1e12, history, use_probe=False, use_reopen=False), grace)


# Random search rarely hits it; a short history that does: seq 1 is lost each time it is sent,
# while a new reading sent with it each time reaches the centre.
LOST_EACH_TIME = [("ack", 1, 0, True), ("tick", 1.0), ("due",)] + 3 * [
    ("ack", 0, 1, True), ("ack", 1, 0, False), ("confirm",), ("tick", 1.0), ("due",)]


@settings(max_examples=300, deadline=None)
@given(graces, moves)
@example(1.0, LOST_EACH_TIME)
def test_give_backs_of_a_reading_with_probes_are_bounded(grace: float, history: list) -> None:
    """The same bound with the silence rule too, probe_after no shorter than grace (defaults: 60 s and 900 s)."""
    _assert_give_backs_bounded(_play_story(grace, grace, history, use_reopen=False), grace)


def test_a_reading_the_centre_never_gets_is_not_probed_again_and_again() -> None:
    """Defaults (grace 60 s, probe 900 s); seq 1 is lost every time, a new reading every 20 minutes arrives."""
    tracker = DeliveryTracker(grace=60, probe_after=900)
    tracker.acknowledged([1], 0)
    sent_again, now, seq, rev = [], 0.0, 1, 0
    while now < 6 * 3600:
        now += 1200
        if tracker.due(now) == [1]:
            sent_again.append(now)
            tracker.acknowledged([1], now)
        seq, rev = seq + 1, rev + 1
        tracker.acknowledged([seq], now)
        tracker.confirmed(Confirmation("unit-1", rev, 0, seq, ((1, 1),)), now + 1)
    assert len(sent_again) <= math.log2(6 * 3600 / 60) + 1, f"seq 1 sent again at {sent_again}"
