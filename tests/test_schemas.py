"""The compiled gate and the reference validator agree on what the schemas accept."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.schemas import validator
from tests.factories import location, vacancy

ITEM = validator("tracker-submission.schema.json", "location_update")

# Values of many JSON types, to drop into any field.
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            "1-123",
            "2026-11-20T09:00:00Z",
            "2026-13-40",
            "general-nursing",
            "staffing-absence",
            "london",
            "",
            "1-",
        ]
    ),
    st.lists(st.sampled_from(["English", "phb", "respite-care", 3]), max_size=3),
    st.dictionaries(st.sampled_from(["line1", "postcode", "x"]), st.text(max_size=5), max_size=2),
)
paths = st.sampled_from(
    [
        ("cqc_location_id",),
        ("name",),
        ("updated_at",),
        ("nhs_region",),
        ("provider_type",),
        ("languages",),
        ("funding_sources",),
        ("short_stay_services",),
        ("address",),
        ("address", "postcode"),
        ("provider", "cqc_provider_id"),
        ("accepting_admissions",),
        ("out_of_hours_admissions",),
        ("short_stay_weekly_cost",),
        ("vacancies",),
        ("vacancies", 0, "vacancy_type"),
        ("vacancies", 0, "occupied"),
        ("vacancies", 0, "maximum_capacity"),
        ("vacancies", 0, "flexible"),
        ("vacancies", 0, "unavailable_reasons"),
        ("vacancies", 0, "weekly_price_from"),
        ("surprise",),
        ("vacancies", 0, "surprise"),
    ]
)


def mutate(record: dict[str, Any], path: tuple[Any, ...], value: Any, delete: bool) -> dict[str, Any]:
    out = copy.deepcopy(record)
    target: Any = out
    for key in path[:-1]:
        try:
            target = target[key]
        except (KeyError, IndexError, TypeError):
            return out  # an earlier mutation removed the container
    if not isinstance(target, dict):
        return out
    if delete:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return out


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(mutations=st.lists(st.tuples(paths, junk, st.booleans()), min_size=1, max_size=3))
def test_gate_and_reference_agree(mutations: list[tuple[tuple[Any, ...], Any, bool]]) -> None:
    record = location(vacancies=[vacancy(), vacancy("dementia-residential")])
    for path, value, delete in mutations:
        record = mutate(record, path, value, delete)
    assert ITEM.gate_accepts(record) == (ITEM.reference_problems(record) == [])


def test_problems_point_at_the_field() -> None:
    record = location(vacancies=[vacancy(occupied=-1)], updated_at="yesterday")
    pointers = {p.pointer for p in ITEM.problems(record, "/locations/7")}
    assert pointers == {"/locations/7/vacancies/0/occupied", "/locations/7/updated_at"}
    assert ITEM.problems(location()) == []


def test_a_time_that_is_no_date_time_is_named_by_the_reference_validator() -> None:
    """The schemas' one format, date-time, is checked (by rfc3339-validator, installed for
    it): a month 13 is refused at its field, as the compiled gate refuses it."""
    record = location(updated_at="2026-13-01T09:00:00Z")
    assert not ITEM.gate_accepts(record)
    problems = ITEM.reference_problems(record)
    assert [(p.pointer, p.message) for p in problems] == [
        ("/updated_at", "'2026-13-01T09:00:00Z' is not a 'date-time'")
    ]
