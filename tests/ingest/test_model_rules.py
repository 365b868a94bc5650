"""The model's rules, judged once and the same in every output: entered capacity above the
registered beds, vacancy types a kind of provider offers, and blank text as not given."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from gateway.ingest.service import apply_updates, prepare
from gateway.model.capacity import LocationUpdate, above_registered
from gateway.model.vocab import (
    COMMUNITY_REHAB_VACANCY_TYPES,
    LONG_TERM_VACANCY_TYPES,
    ProviderType,
    QualityFlag,
    VacancyType,
    offers,
)
from gateway.reconcile.service import reconcile
from gateway.search.report_groups import group_key
from gateway.store.db import transaction
from gateway.store.tables import Location, RegistryLocation, table, utcnow
from tests.conftest import TokenMaker, bearer, statements_run
from tests.factories import batch, location, vacancy

ABOVE = QualityFlag.ENTERED_CAPACITY_ABOVE_REGISTERED.value
NOT_OFFERED = QualityFlag.TYPE_NOT_OFFERED_BY_PROVIDER.value
PUSH, CHECK = "/api/v1/submissions", "/api/v1/submissions/check"


def _registry(cqc_id: str, **over: Any) -> RegistryLocation:
    fields: dict[str, Any] = dict(
        cqc_location_id=cqc_id,
        name=f"Test Home {cqc_id}",  # the tracker's name: no name-mismatch
        care_home=True,
        registration_status="Registered",
        dormant=False,
        registered_beds=40,
        postcode="M1 1AA",
        nhs_region="north-west",
        local_authority="Manchester",
        latitude=53.48,
        longitude=-2.24,
        synced_at=utcnow(),
    )
    fields.update(over)
    return RegistryLocation(**fields)


def _rehab_line(**over: Any) -> dict[str, Any]:
    figures = dict(maximum_capacity=30, occupied=25, admittable=4, unavailable=1, reserved=0)
    return vacancy("community-rehab-nhs-la", **{**figures, **over})


def _update(**over: Any) -> LocationUpdate:
    return LocationUpdate.model_validate(location("1-100000001", **over))


def _push(client: TestClient, token: str, *records: dict[str, Any], url: str = PUSH) -> list[dict[str, Any]]:
    response = client.post(url, json=batch(*records), headers=bearer(token))
    assert response.status_code == 200, response.text
    answers: list[dict[str, Any]] = response.json()["records"]
    return answers


# --- entered capacity above registered beds: one rule ------------------------------------


@pytest.mark.parametrize(
    ("entered", "registered", "above"),
    [(30, None, False), (30, 0, False), (30, 30, False), (31, 30, True), (1, 0, False), (0, 0, False)],
)
def test_no_registered_beds_bound_nothing_and_any_bound(
    entered: int, registered: int | None, above: bool
) -> None:
    assert above_registered(entered, registered) is above


@pytest.mark.parametrize(
    ("registered_beds", "care_home", "flagged"),
    [
        (0, False, False),  # a community rehabilitation provider: the CQC's 0 is no beds
        (None, False, False),
        (10, False, True),  # registered for beds, care home or not: compared
        (30, False, False),  # exactly its registered beds
        (10, True, True),
        (0, True, False),
    ],
)
def test_every_output_judges_entered_capacity_above_registered_alike(
    client: TestClient,
    make_token: TokenMaker,
    factory: sessionmaker[Session],
    registered_beds: int | None,
    care_home: bool,
    flagged: bool,
) -> None:
    """The push answer, the native API, the search, FHIR and reconciliation agree on a
    community rehabilitation provider entering 30 beds (FHIR had taken 0 as a bound,
    reconciliation had compared care homes only)."""
    token = make_token(scopes=("submit", "read", "admin"))
    with transaction(factory) as session:
        session.add(_registry("1-100000001", registered_beds=registered_beds, care_home=care_home))
    record = location("1-100000001", provider_type="community-rehab", vacancies=[_rehab_line()])
    [answer] = _push(client, token, record)
    assert answer["status"] == "accepted"
    with transaction(factory) as session:
        reconcile(session)

    headers = bearer(token)
    native = [
        f["code"]
        for f in client.get("/api/v1/locations/1-100000001", headers=headers).json()["quality_flags"]
    ]
    [found] = client.get("/api/v1/vacancies", headers=headers).json()["results"]
    fhir = client.get("/fhir/Location/1-100000001", headers=headers).json()
    fhir_flags = [e["valueCoding"]["code"] for e in fhir.get("extension", []) if "data-quality" in e["url"]]
    findings = client.get(
        "/api/v1/reconciliation/findings", params={"kind": "capacity-above-registered"}, headers=headers
    ).json()["findings"]

    verdicts = {
        "push answer": ABOVE in answer.get("quality_flags", []),
        "native API": ABOVE in native,
        "search": ABOVE in found["quality_flags"],
        "FHIR": ABOVE in fhir_flags,
        "reconciliation": [f["cqc_location_id"] for f in findings] == ["1-100000001"],
    }
    assert verdicts == dict.fromkeys(verdicts, flagged)


# --- the push answer's flags ---------------------------------------------------------------


def test_push_and_check_answers_carry_the_above_registered_flag_the_record_carries(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    with transaction(factory) as session:
        session.add_all(
            [_registry("1-100000001", registered_beds=10), _registry("1-100000002", registered_beds=0)]
        )
    over = location(
        "1-100000001", vacancies=[vacancy(maximum_capacity=25, occupied=20, reserved=1, admittable=3)]
    )
    unbounded = location(
        "1-100000002", vacancies=[vacancy(maximum_capacity=25, occupied=20, reserved=1, admittable=3)]
    )
    unknown = location("1-100000003")  # the registry does not know it: nothing to compare
    checked = _push(client, token, over, unbounded, unknown, url=CHECK)
    pushed = _push(client, token, over, unbounded, unknown)
    for answers in (checked, pushed):
        assert [a["status"] for a in answers] == ["accepted"] * 3
        assert [a.get("quality_flags", []) for a in answers] == [[ABOVE], [], []]
    held = client.get("/api/v1/locations/1-100000001", headers=bearer(token)).json()
    assert [f["code"] for f in held["quality_flags"]] == pushed[0]["quality_flags"]


def test_the_flag_joins_line_flags_in_code_order_and_only_accepted_records_carry_flags(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    with transaction(factory) as session:
        session.add(_registry("1-100000001", registered_beds=10))
    broken = vacancy(maximum_capacity=25, occupied=30)  # breaks the invariant too
    [first] = _push(client, token, location("1-100000001", vacancies=[broken]))
    assert first["quality_flags"] == [QualityFlag.CAPACITY_INVARIANT_BROKEN.value, ABOVE]
    [again] = _push(client, token, location("1-100000001", vacancies=[broken]))
    assert again["status"] == "unchanged" and "quality_flags" not in again


def test_the_registered_beds_are_read_with_the_batch_not_per_record(
    factory: sessionmaker[Session], engine: sa.Engine
) -> None:
    """The push path is benchmarked: the registry's beds come with its places, one read
    for the batch however many records it has."""
    ids = [f"1-10000000{i}" for i in range(1, 7)]
    with transaction(factory) as session:
        session.add_all([_registry(cqc_id, registered_beds=5) for cqc_id in ids])
    updates = [(i, LocationUpdate.model_validate(location(cqc_id))) for i, cqc_id in enumerate(ids)]
    with statements_run(engine, "SELECT") as selects, transaction(factory) as session:
        results = apply_updates(session, source="tracker", updates=updates, received_at=utcnow())
    assert [r.quality_flags for r in results] == [[ABOVE]] * len(ids)
    registry_reads = [sql for sql, _ in selects if "registry_location" in sql]
    assert len(registry_reads) == 1, registry_reads


# --- vacancy types a kind of provider offers -----------------------------------------------


def test_care_homes_offer_the_long_term_types_and_rehab_providers_the_rehab_types() -> None:
    for vacancy_type in VacancyType:
        long_term = vacancy_type in LONG_TERM_VACANCY_TYPES
        assert offers(ProviderType.CARE_HOME, vacancy_type) is long_term
        assert offers(ProviderType.CARE_HOME.value, vacancy_type.value) is long_term
        assert offers(ProviderType.COMMUNITY_REHAB.value, vacancy_type.value) is (
            vacancy_type in COMMUNITY_REHAB_VACANCY_TYPES
        )
        assert offers(None, vacancy_type.value) is long_term  # the model's default: a care home
    assert not offers("care-home", None) and not offers("community-rehab", None)  # unmapped
    assert not offers("hospital", "general-nursing")  # no such kind of provider offers anything


def test_a_line_of_a_type_its_provider_does_not_offer_is_kept_flagged_and_counted_nowhere() -> None:
    update = _update(vacancies=[vacancy("general-nursing"), _rehab_line()])
    good, rehab = sorted(update.vacancies, key=lambda line: line.line_key != "general-nursing")
    assert (
        rehab.vacancy_type is VacancyType.COMMUNITY_REHAB_NHS_LA and rehab.maximum_capacity == 30
    )  # as sent
    assert update.line_quality_flags(rehab) == [QualityFlag.TYPE_NOT_OFFERED_BY_PROVIDER]
    assert rehab.quality_flags() == []  # the line alone is sound: it is its provider's type that is not
    assert update.line_quality_flags(good) == []
    assert (update.counted(good), update.counted(rehab)) == (True, False)
    assert update.entered_capacity == 20  # the care home's general nursing beds only

    provider = _update(
        provider_type="community-rehab", vacancies=[vacancy("dementia-nursing"), _rehab_line()]
    )
    flags = {line.line_key: provider.line_quality_flags(line) for line in provider.vacancies}
    assert flags == {
        "community-rehab-nhs-la": [],
        "dementia-nursing": [QualityFlag.TYPE_NOT_OFFERED_BY_PROVIDER],
    }
    assert provider.entered_capacity == 30


def test_a_push_keeps_the_line_flags_it_and_counts_it_nowhere_while_its_other_lines_count(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    care_home = location("1-100000001", vacancies=[vacancy("general-nursing"), _rehab_line()])
    rehab = location("1-100000002", provider_type="community-rehab", vacancies=[vacancy("dementia-nursing")])
    answers = _push(client, token, care_home, rehab)
    assert [a["status"] for a in answers] == ["accepted", "accepted"]  # never refused for it
    assert [NOT_OFFERED in a["quality_flags"] for a in answers] == [True, True]

    held = client.get("/api/v1/locations/1-100000001", headers=bearer(token)).json()
    assert held["entered_capacity"] == 20
    assert NOT_OFFERED in [f["code"] for f in held["quality_flags"]]
    lines = {line["vacancy_type"]: line for line in held["vacancies"]}
    assert lines["community-rehab-nhs-la"]["maximum_capacity"] == 30  # kept as sent
    assert [f["code"] for f in lines["community-rehab-nhs-la"]["quality_flags"]] == [NOT_OFFERED]
    assert lines["general-nursing"]["quality_flags"] == []
    assert client.get("/api/v1/locations/1-100000002", headers=bearer(token)).json()["entered_capacity"] == 0


def test_the_flag_has_the_users_wording() -> None:
    assert "not one this kind of provider offers" in QualityFlag.TYPE_NOT_OFFERED_BY_PROVIDER.display
    assert QualityFlag(NOT_OFFERED) is QualityFlag.TYPE_NOT_OFFERED_BY_PROVIDER


# --- blank text is not given -----------------------------------------------------------------


def test_blank_optional_text_is_held_as_not_given() -> None:
    update = _update(
        local_authority="   ",
        phone="",
        notes=" \t\n",
        address={"line1": " ", "line2": "Park Row", "town": "", "postcode": "M1 1AA"},
        provider={"cqc_provider_id": "1-200000001", "name": "  "},
    )
    assert (update.local_authority, update.phone, update.notes, update.provider.name) == (
        None,
        None,
        None,
        None,
    )
    assert (update.address.line1, update.address.line2, update.address.town) == (None, "Park Row", None)
    # Text that says something is kept as sent, its spacing too.
    kept = _update(local_authority=" MANCHESTER ", notes=" hoist ")
    assert (kept.local_authority, kept.notes) == (" MANCHESTER ", " hoist ")


def test_a_blank_text_and_null_are_the_same_content() -> None:
    blank = prepare(_update(local_authority="  ", phone=" "))
    null = prepare(_update(local_authority=None, phone=None))
    assert blank.digest == null.digest and blank.location["local_authority"] is None


def test_name_lists_hold_no_blank_and_no_repeat() -> None:
    update = _update(
        languages=["English", "english ", "Polish", "ENGLISH"],
        contracts_with_local_authorities=[" ", "Leeds", "LEEDS", "", "Bradford", "leeds  "],
        contracts_with_sub_icbs=["15F", "15f", " "],
    )
    assert update.languages == ("English", "Polish")  # the first spelling, in the source's order
    assert update.contracts_with_local_authorities == ("Leeds", "Bradford")
    assert update.contracts_with_sub_icbs == ("15F",)
    assert _update(contracts_with_local_authorities=[" "]).contracts_with_local_authorities == ()


def test_a_nul_in_blank_looking_text_is_still_refused() -> None:
    with pytest.raises(ValidationError, match="NUL"):
        _update(local_authority=" \x00 ")
    with pytest.raises(ValidationError, match="NUL"):
        _update(contracts_with_local_authorities=["\x00"])


def test_a_blank_local_authority_is_stored_as_not_known_and_reported_with_the_unknown_area(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    records = [
        location("1-100000001", local_authority="   "),
        location("1-100000002", local_authority=None),
        location("1-100000003", local_authority="Manchester"),
    ]
    answers = _push(client, token, *records)
    assert [a["status"] for a in answers] == ["accepted"] * 3
    assert (
        client.get("/api/v1/locations/1-100000001", headers=bearer(token)).json()["local_authority"] is None
    )
    with factory() as session:
        held = session.scalar(
            sa.select(table(Location).c.local_authority).where(
                table(Location).c.cqc_location_id == "1-100000001"
            )
        )
    assert held is None
    report = client.get(
        "/api/v1/reports/occupancy", params={"group_by": "local_authority"}, headers=bearer(token)
    ).json()
    assert [(row["group"], row["maximum_capacity"]) for row in report["rows"]] == [
        ("Manchester", 20),
        (None, 40),
    ]
    unavailable = client.get(
        "/api/v1/reports/unavailable", params={"group_by": "local_authority"}, headers=bearer(token)
    ).json()
    assert [(row["group"], row["unavailable_beds"]) for row in unavailable["rows"]] == [
        ("Manchester", 1),
        (None, 2),
    ]


def test_a_blank_authority_held_from_before_is_the_unknown_area_in_reports_and_search(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    """Blanks stored before they were taken as not given join 'area not known'."""
    assert group_key("local_authority", "   ") is None and group_key("local_authority", "") is None
    assert group_key("local_authority", " Manchester ") == "manchester"
    token = make_token()
    _push(client, token, location("1-100000001"), location("1-100000002", local_authority=None))
    loc = table(Location)
    with transaction(factory) as session:  # as a push before the fix stored it
        session.execute(
            sa.update(loc).where(loc.c.cqc_location_id == "1-100000001").values(local_authority="  ")
        )
    report = client.get(
        "/api/v1/reports/occupancy", params={"group_by": "local_authority"}, headers=bearer(token)
    ).json()
    assert [(row["group"], row["maximum_capacity"]) for row in report["rows"]] == [(None, 40)]
    found = client.get("/api/v1/vacancies", headers=bearer(token)).json()["results"]
    assert [r["local_authority"] for r in found] == [None, None]
