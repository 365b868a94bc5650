"""FHIR in, the pure mapping: a Bundle in the gateway's profile -> native push records,
and every way an entry can be wrong, each named by a FHIRPath expression."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.fhir import systems as S
from adapters.fhir.inbound.transaction import (
    SCHEMA_NAME,
    MappedBundle,
    envelope_issues,
    fhirpath,
    map_bundle,
)
from adapters.fhir.outbound.render import LocationSnapshot, render_location, render_services
from gateway.ingest.submissions import validate_records
from gateway.model.capacity import LocationUpdate
from gateway.model.vocab import FundingSource, NhsRegion, ShortStayService, UnavailableReason, VacancyType
from gateway.schemas import load_schema, validator
from tests.factories import location, vacancy


def published(record: dict[str, Any], **snapshot: Any) -> list[dict[str, Any]]:
    """What the gateway publishes for ``record`` (with a registry-free snapshot), as a
    tracker would send it back: meta.lastUpdated the provider's time."""
    model = LocationUpdate.model_validate(record).model_dump(mode="json")
    rendered = LocationSnapshot(7, datetime(2026, 11, 22, tzinfo=UTC), "tracker", model, **snapshot)
    out = [render_location(rendered), *render_services(rendered)]
    for resource in out:
        resource["meta"] = {**resource["meta"], "lastUpdated": record["updated_at"]}
    return out


def bundle(*resources: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [{"resource": r, "request": request(r)} for r in resources],
    }


def request(resource: dict[str, Any]) -> dict[str, str]:
    if "id" in resource:
        return {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
    return {"method": "POST", "url": resource["resourceType"]}


def issues(mapped: MappedBundle) -> list[tuple[str, str]]:
    found = [(i.expression, i.message) for group in mapped.locations for i in group.issues]
    return found + [(i.expression, i.message) for stray in mapped.strays.values() for i in stray]


def only_record(mapped: MappedBundle) -> dict[str, Any]:
    assert issues(mapped) == []
    [group] = mapped.locations
    assert group.record is not None
    return group.record


RECORDS = [
    location(),
    location(
        vacancies=[
            vacancy("dementia-nursing", admittable=3, unavailable=0, unavailable_reasons=[], flexible=True),
            vacancy(
                "general-nursing",
                unavailable=2,
                admittable=1,
                unavailable_reasons=["outbreak-covid", "other"],
            ),
            vacancy("transitional", weekly_price_from=None),
        ],
        short_stay_services=["discharge-to-assess", "respite-care"],
        languages=["English", "Polish", "Klingon"],
        notes="Ground floor rooms",
        phone="0161 496 0000",
        contracts_with_local_authorities=["Manchester", "Salford"],
        contracts_with_sub_icbs=["Greater Manchester"],
        short_stay_weekly_cost=850.25,
        accepting_admissions=False,
        out_of_hours_admissions=None,
    ),
    # Admission status not known: no admissions extension; only out-of-hours known: one part.
    location(accepting_admissions=None, out_of_hours_admissions=None),
    location(accepting_admissions=None, out_of_hours_admissions=True),
    location(
        active=False,
        provider_type="community-rehab",
        vacancies=[vacancy("community-rehab-private", unavailable=0, admittable=3, unavailable_reasons=[])],
    ),
    # Languages and funding sources are carried by services: a location without any has none.
    location(
        vacancies=[],
        languages=[],
        funding_sources=[],
        address={
            "line1": "1 High Street",
            "line2": "Ancoats",
            "town": "Manchester",
            "county": "Greater Manchester",
            "postcode": "M4 6DE",
        },
    ),
]


@pytest.mark.parametrize("record", RECORDS)
def test_what_the_gateway_publishes_maps_back_to_the_same_record(record: dict[str, Any]) -> None:
    mapped = only_record(map_bundle(bundle(*published(record))))
    assert LocationUpdate.model_validate(mapped) == LocationUpdate.model_validate(record)
    valid, rejected = validate_records([mapped])  # the native rules, as a native record
    assert rejected == [] and len(valid) == 1


def test_registry_facts_and_flags_published_by_the_gateway_are_ignored() -> None:
    record = location(vacancies=[vacancy(occupied=30)])  # capacity-invariant-broken
    resources = published(record)
    resources[0]["extension"].append({"url": S.EXT_REGISTERED_BEDS, "valueUnsignedInt": 12})
    resources[0]["extension"].append({"url": "https://example.org/other", "valueString": "ignored"})
    assert any(e["url"] == S.EXT_DATA_QUALITY for e in resources[1]["extension"])
    mapped = only_record(map_bundle(bundle(*resources)))
    assert LocationUpdate.model_validate(mapped) == LocationUpdate.model_validate(record)


def test_services_in_any_order_with_fullurl_references_and_a_cqc_identifier() -> None:
    loc, *services = published(location(vacancies=[vacancy("dementia-nursing"), vacancy()]))
    del loc["id"]
    for service in services:
        del service["id"]
        service["location"] = [{"reference": "urn:uuid:6f1c"}]
    entries: list[dict[str, Any]] = [
        {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}} for r in services[::-1]
    ]
    entries.append(
        {"fullUrl": "urn:uuid:6f1c", "resource": loc, "request": {"method": "POST", "url": "Location"}}
    )
    mapped = map_bundle({"resourceType": "Bundle", "type": "batch", "entry": entries})
    record = only_record(mapped)
    assert record["cqc_location_id"] == "1-100000001"
    assert [line["vacancy_type"] for line in record["vacancies"]] == ["dementia-nursing", "general-nursing"]
    assert mapped.locations[0].entries == [2, 0, 1]
    assert mapped.locations[0].service_types == {0: "general-nursing", 1: "dementia-nursing"}
    assert mapped.kind == "batch"


def test_record_problems_are_placed_back_in_the_bundle() -> None:
    mapped = map_bundle(bundle(*published(location(vacancies=[vacancy("dementia-nursing"), vacancy()]))))
    group = mapped.locations[0]
    assert group.place("/vacancies/1/occupied") == (
        2,
        "Bundle.entry[2].resource.extension[0].extension[1].valueUnsignedInt",
    )
    assert group.place("/vacancies/0/unavailable_reasons/0") == (
        1,
        "Bundle.entry[1].resource.extension[0].extension[6].valueCoding",
    )
    assert group.place("/address/postcode") == (0, "Bundle.entry[0].resource.address.postalCode")
    assert group.place("/nhs_region")[1].startswith("Bundle.entry[0].resource.extension[")
    assert group.place("/no/such/thing") == (0, "Bundle.entry[0].resource")


def broken(change: Any, record: dict[str, Any] | None = None) -> MappedBundle:
    resources = published(record or location())
    change(resources)
    return map_bundle(bundle(*resources))


def test_unknown_codes_are_problems() -> None:
    def sea_view(r: list[dict[str, Any]]) -> None:
        r[1]["type"][0]["coding"][0]["code"] = "sea-view"

    [(where, why)] = issues(broken(sea_view))
    assert where == "Bundle.entry[1].resource.type[0].coding[0].code"
    assert why.startswith("'sea-view' is not one of")

    def bad_reason(r: list[dict[str, Any]]) -> None:
        r[1]["extension"][0]["extension"][6]["valueCoding"]["code"] = "weather"

    [(where, why)] = issues(broken(bad_reason))
    assert where == "Bundle.entry[1].resource.extension[0].extension[6].valueCoding.code"

    def bad_region(r: list[dict[str, Any]]) -> None:
        next(e for e in r[0]["extension"] if e["url"] == S.EXT_NHS_REGION)["valueCoding"]["code"] = "wales"

    [(where, why)] = issues(broken(bad_region))
    assert where.endswith(".valueCoding.code") and "'wales' is not one of" in why


def test_missing_parts_are_named() -> None:
    def no_occupied(r: list[dict[str, Any]]) -> None:
        parts = r[1]["extension"][0]["extension"]
        parts[:] = [p for p in parts if p["url"] not in ("occupied", "admittable")]

    assert issues(broken(no_occupied)) == [
        (
            "Bundle.entry[1].resource.extension[0].extension",
            f"{S.EXT_BED_AVAILABILITY} lacks occupied, admittable",
        )
    ]
    # reserved is required of care homes only: the line's own check names it (the FHIR
    # transaction tests show it), not the extension's.

    def no_beds(r: list[dict[str, Any]]) -> None:
        r[1]["extension"] = [e for e in r[1]["extension"] if e["url"] != S.EXT_BED_AVAILABILITY]

    [(where, why)] = issues(broken(no_beds))
    assert where == "Bundle.entry[1].resource.extension" and S.EXT_BED_AVAILABILITY in why

    def no_id(r: list[dict[str, Any]]) -> None:
        del r[0]["id"]
        r[0]["identifier"] = []

    mapped = broken(no_id)
    [(where, why)] = [(i.expression, i.message) for i in mapped.locations[0].issues]
    assert where == "Bundle.entry[0].resource.identifier" and "CQC location ID" in why
    assert list(mapped.strays) == [1]  # its service names Location/1-100000001, which is not there

    def no_time(r: list[dict[str, Any]]) -> None:
        del r[0]["meta"]["lastUpdated"]

    assert issues(broken(no_time)) == [
        ("Bundle.entry[0].resource.meta", "'lastUpdated' is a required property")
    ]

    def offset_free(r: list[dict[str, Any]]) -> None:
        r[0]["meta"]["lastUpdated"] = "2026-11-20T09:00:00"

    [(where, why)] = issues(broken(offset_free))
    assert where == "Bundle.entry[0].resource.meta.lastUpdated" and "date-time" in why


def test_an_admission_status_not_known_is_left_out_and_an_empty_admissions_extension_refused() -> None:
    [resource, *_] = published(location(accepting_admissions=None, out_of_hours_admissions=None))
    assert S.EXT_ADMISSIONS not in [e["url"] for e in resource.get("extension", [])]
    [resource, *_] = published(location(accepting_admissions=None, out_of_hours_admissions=False))
    [admissions] = [e for e in resource["extension"] if e["url"] == S.EXT_ADMISSIONS]
    assert admissions["extension"] == [{"url": "outOfHours", "valueBoolean": False}]

    def emptied(r: list[dict[str, Any]]) -> None:
        [admissions] = [e for e in r[0]["extension"] if e["url"] == S.EXT_ADMISSIONS]
        admissions["extension"] = []

    [(where, why)] = issues(broken(emptied))
    assert where.startswith("Bundle.entry[0].resource.extension[") and where.endswith("].extension")
    assert why == f"{S.EXT_ADMISSIONS} has no parts (leave the extension out where nothing is known)"


def test_the_whole_location_is_rejected_with_its_entries() -> None:
    def twice(r: list[dict[str, Any]]) -> None:
        r.append(copy.deepcopy(r[1]))

    mapped = broken(twice)
    [group] = mapped.locations
    assert group.record is None and group.entries == [0, 1, 2]
    assert issues(mapped) == [
        ("Bundle.entry[2].resource.type[0]", "general-nursing is already in Bundle.entry[1]")
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda r: r[0]["identifier"][0].update(value="1-999"),
            (
                "Bundle.entry[0].resource.identifier[0].value",
                "the CQC identifier 1-999 is not the id 1-100000001",
            ),
        ),
        (
            lambda r: r[1].update(id="1-100000001-dementia-nursing"),
            ("Bundle.entry[1].resource.id", "this service's id is 1-100000001-general-nursing"),
        ),
        (
            lambda r: r[0].update(status="suspended"),
            ("Bundle.entry[0].resource.status", "'suspended' is not one of ['active', 'inactive']"),
        ),
        (
            lambda r: r[1].update(modifierExtension=[{"url": "https://example.org/m", "valueBoolean": True}]),
            ("Bundle.entry[1].resource.modifierExtension", None),
        ),
        (
            lambda r: r[0]["address"].update(line=["a", "b", "c"]),
            ("Bundle.entry[0].resource.address.line", None),
        ),
        (
            lambda r: r[0]["managingOrganization"].update(reference="Organization/ACME"),
            ("Bundle.entry[0].resource.managingOrganization.reference", None),
        ),
        (
            lambda r: r[0]["extension"].append(copy.deepcopy(r[0]["extension"][0])),
            (
                "Bundle.entry[0].resource.extension[3]",
                f"{S.EXT_ADMISSIONS} may appear once (first in extension[0])",
            ),
        ),
        (
            lambda r: r[1]["location"][0].update(reference="Location/1-555"),
            (
                "Bundle.entry[1].resource.location[0].reference",
                "Location/1-555 is not a Location in this Bundle: send a location's services with it",
            ),
        ),
    ],
)
def test_entry_problems(change: Any, expected: tuple[str, str | None]) -> None:
    [(where, why)] = issues(broken(change))
    assert where == expected[0]
    if expected[1] is not None:
        assert why == expected[1]


def test_requests_and_other_resources() -> None:
    resources = published(location())
    doc = bundle(*resources)
    doc["entry"][0]["request"] = {"method": "PUT", "url": "Location/1-42"}
    doc["entry"][1]["request"] = {"method": "DELETE", "url": "HealthcareService/x", "ifMatch": 'W/"1"'}
    doc["entry"].append(
        {
            "resource": {"resourceType": "Organization", "id": "1-200000001"},
            "request": {"method": "PUT", "url": "Organization/1-200000001"},
        }
    )
    doc["entry"].append(
        {"resource": published(location("1-100000002"))[0], "request": {"method": "PUT", "url": "Location"}}
    )
    mapped = map_bundle(doc)
    assert issues(mapped) == [
        ("Bundle.entry[0].request.url", "request.url names 1-42, the resource is 1-100000001"),
        ("Bundle.entry[1].request", "Additional properties are not allowed ('ifMatch' was unexpected)"),
        ("Bundle.entry[1].request.method", "'DELETE' is not one of ['POST', 'PUT']"),
        ("Bundle.entry[3].request.url", "PUT needs Location/[id]"),
        (
            "Bundle.entry[2].resource.resourceType",
            "'Organization' is not one of ['Location', 'HealthcareService']",
        ),
    ]
    assert list(mapped.strays) == [2]


CQC_CRITERION = f"identifier={S.CQC_LOCATION_ID}|"


@pytest.mark.parametrize(
    ("entry", "method", "url", "expected"),
    [
        (0, "PUT", f"Location?{CQC_CRITERION}1-100000001", None),
        (0, "PUT", "Location?identifier=" + S.CQC_LOCATION_ID.replace("/", "%2F") + "%7C1-100000001", None),
        (0, "PUT", "Location?_id=1-100000001", None),
        (1, "PUT", "HealthcareService?_id=1-100000001-general-nursing", None),
        # Criteria that select another resource than the one sent: never applied to the one sent.
        (0, "PUT", f"Location?{CQC_CRITERION}1-999", "request.url names 1-999, the resource is 1-100000001"),
        (1, "PUT", "HealthcareService?_id=1-2-x", "request.url names 1-2-x, the resource is 1-100000001-"),
        # Criteria the gateway cannot judge are refused, not ignored.
        (0, "PUT", "Location?name=Test%20Home", "conditional update criterion name='Test Home' is not"),
        (0, "PUT", "Location?identifier=https://fhir.nhs.uk/Id/ods-site-code|VNH4N", "criterion identifier="),
        (0, "PUT", f"Location?{CQC_CRITERION}1-100000001&address-city=Leeds", "criterion address-city="),
        (0, "PUT", f"Location?{CQC_CRITERION}1-100000001&_id=1-5", "criteria must name one Location"),
        (0, "PUT", "Location?", "criteria must name one Location"),
        (1, "PUT", f"HealthcareService?{CQC_CRITERION}1-100000001", "criterion identifier="),
        (0, "POST", f"Location?{CQC_CRITERION}1-100000001", "taken on PUT Location?... only"),
        (0, "PUT", "Location/1-100000001?_id=1-100000001", "taken on PUT Location?... only"),
    ],
)
def test_conditional_request_urls_are_judged_not_ignored(
    entry: int, method: str, url: str, expected: str | None
) -> None:
    doc = bundle(*published(location()))
    doc["entry"][entry]["request"] = {"method": method, "url": url}
    mapped = map_bundle(doc)
    if expected is None:
        assert only_record(mapped)["cqc_location_id"] == "1-100000001"
        return
    [(where, why)] = issues(mapped)
    assert where == f"Bundle.entry[{entry}].request.url"
    assert expected in why
    assert mapped.locations[0].record is None


def test_a_location_twice_is_a_problem_and_locations_are_judged_apart() -> None:
    first = published(location("1-100000001"))
    other = published(location("1-100000002"))
    other[1]["extension"][0]["extension"][1]["valueUnsignedInt"] = "many"
    mapped = map_bundle(bundle(*first, first[0], *other))
    records = [group.record is not None for group in mapped.locations]
    assert records == [True, False, False]
    assert ("Bundle.entry[2].resource", "Location/1-100000001 is already in Bundle.entry[0]") in issues(
        mapped
    )
    assert mapped.locations[2].issues[0].expression.startswith("Bundle.entry[4].resource.extension[0]")


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], [("Bundle", "[] is not of type 'object'")]),
        ({"resourceType": "Patient"}, None),
        (
            {"resourceType": "Bundle", "type": "searchset", "entry": [{}]},
            [("Bundle.type", "'searchset' is not one of ['transaction', 'batch']")],
        ),
        (
            {"resourceType": "Bundle", "type": "batch", "entry": []},
            [("Bundle.entry", "[] should be non-empty")],
        ),
        (
            {"resourceType": "Bundle", "type": "batch", "entry": [5]},
            [("Bundle.entry[0]", "5 is not of type 'object'")],
        ),
    ],
)
def test_envelope(document: Any, expected: list[tuple[str, str]] | None) -> None:
    found = [(issue.expression, issue.message) for issue in envelope_issues(document)]
    assert found if expected is None else found == expected


def test_at_most_5000_locations() -> None:
    entry = {"resource": {"resourceType": "Location"}, "request": {"method": "POST", "url": "Location"}}
    document = {"resourceType": "Bundle", "type": "batch", "entry": [entry] * 5001}
    [issue] = envelope_issues(document)
    assert issue.expression == "Bundle.entry" and "at most 5,000 Locations" in issue.message
    assert envelope_issues({**document, "entry": [entry] * 5000}) == []


def test_fhirpath() -> None:
    assert (
        fhirpath("/entry/3/resource/extension/0/valueMoney")
        == "Bundle.entry[3].resource.extension[0].valueMoney"
    )
    assert fhirpath("") == "Bundle"
    assert fhirpath("/a~1b/c~0d") == "Bundle.a/b.c~d"


def test_the_schema_names_the_vocabularies_and_systems_of_the_gateway() -> None:
    defs = load_schema(SCHEMA_NAME)["$defs"]
    for name, system, vocabulary in [
        ("vacancy_type_coding", S.VACANCY_TYPE, VacancyType),
        ("short_stay_service_coding", S.SHORT_STAY_SERVICE, ShortStayService),
        ("unavailable_reason_coding", S.UNAVAILABLE_REASON, UnavailableReason),
        ("funding_source_coding", S.FUNDING_SOURCE, FundingSource),
        ("nhs_region_coding", S.NHS_REGION, NhsRegion),
    ]:
        assert defs[name]["if"]["properties"]["system"]["const"] == system
        assert defs[name]["then"]["properties"]["code"]["enum"] == [member.value for member in vocabulary]
    urls = {branch["if"]["properties"]["url"]["const"] for branch in defs["location_extension"]["allOf"]}
    assert urls == {
        S.EXT_ADMISSIONS,
        S.EXT_NHS_REGION,
        S.EXT_LOCAL_AUTHORITY,
        S.EXT_SHORT_STAY_WEEKLY_COST,
        S.EXT_CONTRACT_LOCAL_AUTHORITY,
        S.EXT_CONTRACT_SUB_ICB,
    }
    parts = defs["service_extension"]["allOf"][0]["then"]["properties"]["extension"]["items"]["properties"]
    assert parts["url"]["enum"] == list(S.BED_AVAILABILITY_PARTS)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON document (to break it anywhere)."""
    out = [prefix] if prefix else []
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, child in children:
        out.extend(_paths(child, (*prefix, key)))
    return out


SAMPLE = bundle(*published(RECORDS[1]))
SAMPLE_PATHS = _paths(SAMPLE["entry"])
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(
        [
            "1-123",
            "2026-11-20T09:00:00Z",
            "2026-13-40",
            "general-nursing",
            "occupied",
            "PUT",
            S.EXT_BED_AVAILABILITY,
            S.VACANCY_TYPE,
            "Location/1-100000001",
            "",
            [],
        ]
    ),
    st.lists(st.sampled_from([{"url": "occupied", "valueUnsignedInt": 1}, {}, 3]), max_size=2),
    st.dictionaries(
        st.sampled_from(["url", "reference", "valueUnsignedInt"]), st.text(max_size=5), max_size=2
    ),
)


def _broken(mutations: list[tuple[tuple[Any, ...], Any, bool]]) -> list[Any]:
    entries = copy.deepcopy(SAMPLE["entry"])
    for path, value, delete in mutations:
        target: Any = entries
        try:
            for key in path[:-1]:
                target = target[key]
            if delete and isinstance(target, dict):
                target.pop(path[-1], None)
            elif delete and isinstance(target, list) and path[-1] < len(target):
                del target[path[-1]]
            else:
                target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation changed the container
    return entries


mutations = st.lists(st.tuples(st.sampled_from(SAMPLE_PATHS), junk, st.booleans()), min_size=1, max_size=3)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(mutations=mutations)
def test_gate_and_reference_agree_on_broken_entries(
    mutations: list[tuple[tuple[Any, ...], Any, bool]],
) -> None:
    entry_schema = validator(SCHEMA_NAME, "entry")
    for entry in _broken(mutations):
        assert entry_schema.gate_accepts(entry) == (entry_schema.reference_problems(entry) == [])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(mutations=mutations)
def test_any_broken_bundle_maps_to_records_or_issues(
    mutations: list[tuple[tuple[Any, ...], Any, bool]],
) -> None:
    document = {**SAMPLE, "entry": _broken(mutations)}
    if envelope_issues(document):
        return
    mapped = map_bundle(document)
    placed = {i for group in mapped.locations for i in group.entries} | set(mapped.strays)
    assert placed == set(range(len(document["entry"])))
    for group in mapped.locations:
        assert (group.record is None) == bool(group.issues)
        if group.record is not None:
            validate_records([group.record])  # never raises, whatever it finds


def test_an_entry_repeating_another_s_full_url_is_refused_naming_the_first() -> None:
    """R4 bdl-7: two entries with one fullUrl (not different versions) are refused, as a
    service referring to it would reach one of them by chance."""
    first = published(location("1-100000001"))
    second = published(location("1-100000002"))
    sent = bundle(*first, *second)
    for n, entry in enumerate(sent["entry"]):
        entry["fullUrl"] = f"urn:uuid:00000000-0000-4000-8000-00000000000{n}"
    sent["entry"][len(first)]["fullUrl"] = sent["entry"][0]["fullUrl"]  # the second Location
    mapped = map_bundle(sent)
    repeated = sent["entry"][0]["fullUrl"]
    assert issues(mapped) == [
        (
            f"Bundle.entry[{len(first)}].fullUrl",
            f"{repeated} is already the fullUrl of Bundle.entry[0] (each entry's is its own)",
        )
    ]
    first_location, second_location = mapped.locations
    assert first_location.record is not None and second_location.record is None


def test_an_inactive_service_with_bed_counts_of_an_active_location_is_refused_naming_it() -> None:
    def retire_with_counts(r: list[dict[str, Any]]) -> None:
        r[1]["active"] = False  # its bed-availability extension stays

    [(where, why)] = issues(broken(retire_with_counts))
    assert where == "Bundle.entry[1].resource.active"
    assert "withdraws general-nursing" in why and S.EXT_BED_AVAILABILITY in why and "active: true" in why
    [group] = broken(retire_with_counts).locations
    assert group.record is None  # neither kept as an open line nor silently dropped

    # Without counts it withdraws the type; a closed location's services are all inactive
    # with their counts (as the gateway publishes them) and keep them.
    def withdraw(r: list[dict[str, Any]]) -> None:
        r[1]["active"] = False
        del r[1]["extension"][0]

    two = location(vacancies=[vacancy(), vacancy("general-residential")])
    assert [ln["vacancy_type"] for ln in only_record(broken(withdraw, two))["vacancies"]] == [
        "general-residential"
    ]
    closed = published(location(active=False))
    assert closed[1]["active"] is False and closed[1]["extension"][0]["url"] == S.EXT_BED_AVAILABILITY
    assert [ln["vacancy_type"] for ln in only_record(map_bundle(bundle(*closed)))["vacancies"]] == [
        "general-nursing"
    ]
