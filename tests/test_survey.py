"""The survey of a collector's database, as the map, the report, the export and the demo read it:
a stored row that does not decode is counted once and left out of every figure; an operator
is asked for by its mcc-mnc or its name."""
from __future__ import annotations

import pytest

from agent.centre.coverage import DEFAULT_RESOLUTION, Thresholds
from agent.centre.store import open_store
from agent.centre.survey import Survey, UnknownOperator, map_page
from tests.support.survey_factory import damaged_survey, in_service, survey_db

COVERED = (-0.5030, 117.1460)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    return damaged_survey(tmp_path_factory)


def drawn(survey: Survey) -> dict:
    """The map's data without the moment it was made."""
    _, data = map_page(survey)
    return {key: value for key, value in data.items() if key not in ("generated", "subtitle")}


def test_a_row_that_does_not_decode_is_counted_once_and_left_out_of_every_figure(damaged) -> None:
    db, clean, (year_one, truncated) = damaged
    with open_store(db) as store, open_store(clean) as sound:
        survey = Survey(store, DEFAULT_RESOLUTION, Thresholds())
        expected = Survey(sound, DEFAULT_RESOLUTION, Thresholds())
        assert survey.coverage == expected.coverage
        assert list(survey.attributed()) == list(expected.attributed())
        assert drawn(survey) == drawn(expected)
        assert survey.readings.skipped == 2, "met by every pass above, counted once each"
        assert survey.summary().startswith(f"2 stored readings skipped: unreadable (first: boat-1#{year_one.seq}: ")
        assert survey.summary().endswith(f"; also boat-1#{truncated.seq})")
        assert expected.summary() is None


def test_an_operator_is_found_by_mcc_mnc_or_name_and_an_unknown_one_names_those_known(tmp_path) -> None:
    url = survey_db(tmp_path / "survey.db", [
        in_service("boat-1", 1, *COVERED),
        in_service("probe-2", 1, *COVERED, mnc=1, operator="INDOSAT OOREDOO"),
    ])
    with open_store(url) as store:
        survey = Survey(store, DEFAULT_RESOLUTION, Thresholds())
        assert survey.operator("510-10") == "510-10"
        assert survey.operator(" telkomsel ") == "510-10"
        assert survey.operator(None) is None
        with pytest.raises(UnknownOperator) as raised:
            survey.operator("XL")
    assert raised.value.known == {"510-01": "Indosat", "510-10": "Telkomsel"}
    assert str(raised.value) == "no readings of operator 'XL'; operators: 510-01 (Indosat), 510-10 (Telkomsel)"


def test_an_empty_database_knows_no_operator_yet(tmp_path) -> None:
    with open_store(survey_db(tmp_path / "empty.db", [])) as store:
        with pytest.raises(UnknownOperator, match=r"no readings of operator 'Telkomsel'; operators: none yet$"):
            Survey(store, DEFAULT_RESOLUTION, Thresholds()).operator("Telkomsel")
