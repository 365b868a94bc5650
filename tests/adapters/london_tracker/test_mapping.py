"""London homes to the national model: every rule of the mapping."""

from __future__ import annotations

import pytest

from adapters.london_tracker.boroughs import BOROUGHS, borough_code
from adapters.london_tracker.mapping import CATEGORY_MAP, CLOSED_REASON_MAP, map_home
from gateway.model.vocab import QualityFlag, UnavailableReason, VacancyType
from tests.adapters.london_tracker.homes import bed, home


def test_a_full_home_maps_field_by_field() -> None:
    result = map_home(home())
    update = result.update
    assert update is not None and result.skipped is None and result.unmatched is None
    assert update.cqc_location_id == "1-10000302982"
    assert update.name == "Cranberry House Nursing Home"
    assert update.local_authority == "Kensington and Chelsea" and result.local_authority_code == "E09000020"
    assert update.address.postcode == "NW8 9AA"
    assert update.nhs_region is not None and update.nhs_region.value == "london"
    assert update.provider_type.value == "care-home"
    assert update.out_of_hours_admissions is True
    assert [f.value for f in update.funding_sources] == ["local-authority", "phb", "private", "sub-icb"]
    assert update.notes == "Hoist; bariatric bed; passenger lift; pets considered"
    (line,) = update.vacancies
    assert line.vacancy_type is VacancyType.DEMENTIA_NURSING
    assert (line.maximum_capacity, line.occupied, line.admittable, line.reserved, line.unavailable) == (
        20,
        17,
        1,
        1,
        1,
    )
    assert line.unavailable_reasons == (UnavailableReason.STAFFING_ABSENCE,)
    assert line.weekly_price_from == 1450.0 and line.flexible is True
    assert update.short_stay_weekly_cost is None  # no short-stay beds
    assert update.updated_at.utcoffset() is not None


@pytest.mark.parametrize("code", sorted(CATEGORY_MAP))
def test_every_category_maps(code: str) -> None:
    update = map_home(home(beds=[bed(code)])).update
    assert update is not None
    assert update.vacancies[0].vacancy_type is CATEGORY_MAP[code][0]
    service = CATEGORY_MAP[code][1]
    assert [s for s in update.short_stay_services] == ([service] if service else [])


@pytest.mark.parametrize("code", sorted(CLOSED_REASON_MAP))
def test_every_closed_reason_maps(code: str) -> None:
    update = map_home(home(beds=[bed(free_now=1, closed=1, closed_reason=code)])).update
    assert update is not None
    assert update.vacancies[0].unavailable_reasons == (CLOSED_REASON_MAP[code][0],)


@pytest.mark.parametrize(
    ("spelling", "code"),
    [
        ("Kensington & Chelsea", "E09000020"),
        ("Kensington and Chelsea", "E09000020"),
        ("RBKC", "E09000020"),
        ("Barking & Dagenham", "E09000002"),
        ("Hammersmith and Fulham", "E09000013"),
        ("City", "E09000001"),
        ("LBHF", "E09000013"),
        ("  westminster ", "E09000033"),
        ("London Borough of Camden", "E09000007"),
        ("Richmond upon Thames", "E09000027"),
        ("Tower Hamlets", "E09000030"),
        ("Royal Borough of Kensington and Chelsea", "E09000020"),
        ("Royal Borough of Greenwich", "E09000011"),
        ("RB Greenwich", "E09000011"),
        ("Royal Borough of Kingston upon Thames", "E09000021"),
        ("City of Westminster", "E09000033"),
    ],
)
def test_borough_spellings(spelling: str, code: str) -> None:
    assert borough_code(spelling) == code


def test_all_33_codes_are_known() -> None:
    assert sorted(BOROUGHS) == [f"E090000{n:02d}" for n in range(1, 34)]
    assert all(borough_code(name) == code for code, name in BOROUGHS.items())


def test_unknown_borough_is_reported_not_guessed() -> None:
    result = map_home(home(borough="Narnia"))
    assert result.update is not None and result.update.local_authority is None
    assert result.local_authority_code is None
    assert any("Narnia" in warning for warning in result.warnings)


def test_unknown_category_is_kept_reported_and_out_of_totals() -> None:
    result = map_home(
        home(beds=[bed("RES_GEN"), bed("HOSPICE_STEP", commissioned=4, occupied=3, free_now=1)])
    )
    update = result.update
    assert update is not None
    unknown = [v for v in update.vacancies if v.vacancy_type is None]
    assert len(unknown) == 1 and unknown[0].source_code == "HOSPICE_STEP" and unknown[0].maximum_capacity == 4
    assert QualityFlag.UNMAPPED_VACANCY_TYPE in unknown[0].quality_flags()
    assert update.entered_capacity == 10
    assert any("HOSPICE_STEP" in warning for warning in result.warnings)


def test_two_lines_of_one_national_type_are_summed() -> None:
    update = map_home(
        home(
            beds=[
                bed("STEP_DOWN", weekly_fee_pence=100000),
                bed("D2A", weekly_fee_pence=120000, interchangeable=True),
            ]
        )
    ).update
    assert update is not None
    (line,) = update.vacancies
    assert line.vacancy_type is VacancyType.TRANSITIONAL
    assert (line.maximum_capacity, line.occupied, line.admittable) == (20, 16, 4)
    assert line.weekly_price_from == 1000.0 and line.flexible is True  # the price *from*
    assert [s.value for s in update.short_stay_services] == ["discharge-to-assess", "intermediate-care"]
    assert update.short_stay_weekly_cost == 1000.0  # what a short stay here costs, from


def test_the_short_stay_weekly_cost_is_the_short_stay_lines_fee() -> None:
    long_term = bed("NURS_GEN", weekly_fee_pence=110000)
    for beds, cost in (
        ([long_term], None),  # no short stays: no short-stay cost
        ([long_term, bed("RESPITE", weekly_fee_pence=155050)], 1550.5),
        ([long_term, bed("RESPITE", weekly_fee_pence=None)], None),  # offered, fee not given
    ):
        update = map_home(home(beds=beds)).update
        assert update is not None
        assert update.short_stay_weekly_cost == cost


def test_a_merged_line_is_priced_from_its_cheapest_part_with_a_bed_free_now() -> None:
    full = bed("STEP_DOWN", weekly_fee_pence=90000, occupied=10, free_now=0)
    free = bed("RESPITE", weekly_fee_pence=150000)
    dearer_free = bed("D2A", weekly_fee_pence=170000)
    for beds, price in (
        ([full, free, dearer_free], 1500.0),
        ([full, {**free, "occupied": 10, "free_now": 0}], 900.0),
    ):
        update = map_home(home(beds=beds)).update
        assert update is not None
        assert update.vacancies[0].weekly_price_from == price


def test_parts_whose_errors_cancel_out_when_summed_are_flagged_and_reported() -> None:
    """The provider's figures did not add up: the line is flagged as inconsistent (as the
    spec asks of such a line) though its sums do, where it had been published clean."""
    over = bed("D2A", commissioned=5, occupied=3, free_now=3)  # 5 against 6
    under = bed("RESPITE", commissioned=5, occupied=3, free_now=1)  # 5 against 4
    result = map_home(home(beds=[over, under]))
    assert result.update is not None
    (line,) = result.update.vacancies
    assert (line.maximum_capacity, line.occupied, line.admittable) == (10, 6, 4)  # kept as sent, summed
    assert not line.is_consistent and line.parts_inconsistent
    assert QualityFlag.CAPACITY_INVARIANT_BROKEN in line.quality_flags()
    assert result.update.model_dump(mode="json")["vacancies"][0]["parts_inconsistent"] is True
    assert any("D2A, RESPITE break the capacity invariant" in w for w in result.warnings), result.warnings
    # A line whose parts add up carries no such key: no other record's digest moves.
    clean = map_home(home(beds=[bed("D2A"), bed("RESPITE")])).update
    assert clean is not None and "parts_inconsistent" not in clean.model_dump(mode="json")["vacancies"][0]
    # Parts that break it in one direction still break it summed: flagged, nothing to report.
    result = map_home(home(beds=[over, {**under, "free_now": 2}]))
    assert result.update is not None
    assert QualityFlag.CAPACITY_INVARIANT_BROKEN in result.update.vacancies[0].quality_flags()
    assert not [w for w in result.warnings if "capacity invariant" in w]


def test_postcodes_are_normalised() -> None:
    for raw in ["nw89aa", "NW8 9AA", " nw8  9aa "]:
        update = map_home(home(address={"line1": "x", "postcode": raw})).update
        assert update is not None and update.address.postcode == "NW8 9AA"


def test_suspended_home_admits_nobody_and_still_adds_up() -> None:
    update = map_home(home(status="SUSPENDED")).update
    assert update is not None and update.accepting_admissions is False
    (line,) = update.vacancies
    assert line.admittable == 0 and line.unavailable == 2 and line.is_consistent
    assert UnavailableReason.MANAGEMENT_DECISION in line.unavailable_reasons


def test_closed_home_is_a_tombstone() -> None:
    update = map_home(home(status="CLOSED")).update
    assert update is not None and update.active is False


def test_rehab_home_is_a_community_rehab_provider() -> None:
    update = map_home(home(home_type="REHAB", beds=[bed("REHAB_NHS")])).update
    assert update is not None and update.provider_type.value == "community-rehab"


def test_home_without_cqc_id_is_held_for_matching() -> None:
    result = map_home(home(cqc_location_id=None))
    assert result.update is None and result.unmatched is not None
    assert result.unmatched.home_ref == "LDN-004211" and result.unmatched.postcode == "NW8 9AA"
    assert "cqc_location_id" not in result.unmatched.record
    assert result.unmatched.record["vacancies"][0]["vacancy_type"] == "dementia-nursing"


def test_inconsistent_line_is_kept_and_flagged() -> None:
    update = map_home(home(beds=[bed(commissioned=10, occupied=9, free_now=3)])).update
    assert update is not None
    line = update.vacancies[0]
    assert (line.maximum_capacity, line.occupied, line.admittable) == (10, 9, 3)
    assert QualityFlag.CAPACITY_INVARIANT_BROKEN in line.quality_flags()


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        ({"name": None}, "/name"),
        ({"updated_at": "yesterday"}, "/updated_at"),
        ({"beds": [bed(occupied="seventeen")]}, "/beds/0/occupied"),
        ({"home_type": "HOSPICE"}, "/home_type"),
        ({"beds": [bed(commissioned=200_000)]}, "/beds/0/commissioned"),
    ],
)
def test_malformed_home_is_skipped_with_a_pointer(change: dict[str, object], pointer: str) -> None:
    result = map_home(home(**change))
    assert result.update is None and result.skipped is not None
    assert result.skipped.home_ref == "LDN-004211"
    assert pointer in [p.pointer for p in result.skipped.problems]


def test_a_home_the_national_model_refuses_is_skipped_not_raised() -> None:
    """Two lines of one national type within the schema's limits whose sum is past the
    model's: the home is skipped with the model's reason, never an error for the page."""
    big = bed("STEP_DOWN", commissioned=60_000, occupied=20_000, free_now=20_000, on_hold=20_000)
    result = map_home(home(beds=[big, {**big, "category": "D2A"}]))
    assert result.update is None and result.skipped is not None
    (problem,) = result.skipped.problems
    assert problem.pointer == "/beds"
    assert problem.message.startswith("mapped to vacancies.0.maximum_capacity: ")
    assert "100000" in problem.message


def test_missing_field_and_offsetless_time_are_skipped() -> None:
    broken = home()
    del broken["beds"]
    assert map_home(broken).skipped is not None
    assert map_home(home(updated_at="2026-11-22T09:14:00")).skipped is not None
    assert map_home("not a home").skipped is not None
