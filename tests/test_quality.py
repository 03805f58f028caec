"""Signal quality classes compared: one scale, worst first, the schema's five values."""
from __future__ import annotations

import pytest

from agent.shared.quality import QUALITY_ORDER, quality_at_least
from agent.shared.reading import QUALITIES


def test_the_scale_is_the_schemas_qualities_worst_first() -> None:
    assert QUALITY_ORDER == ("none", "poor", "fair", "good", "excellent")
    assert set(QUALITY_ORDER) == set(QUALITIES)


# (quality of a reading, the floor, whether it is at least the floor)
AT_LEAST = [
    ("excellent", "fair", True),
    ("fair", "fair", True),
    ("poor", "fair", False),
    ("none", "poor", False),
    ("none", "none", True),
    (None, "poor", False),       # unknown (no level, or the modem did not answer) is never enough
    ("bogus", "poor", False),
]


@pytest.mark.parametrize("quality, floor, expected", AT_LEAST)
def test_quality_at_least(quality: str | None, floor: str, expected: bool) -> None:
    assert quality_at_least(quality, floor) is expected
