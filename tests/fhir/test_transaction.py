"""FHIR in over HTTP: POST /fhir with a transaction (or batch) Bundle goes down the native
push path (validation, authorisation, provenance, versions, raw keeping, idempotency)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from adapters.fhir import systems as S
from adapters.fhir.inbound.transaction import map_bundle
from adapters.fhir.outbound.render import LocationSnapshot, render_location, render_services
from gateway.model.capacity import LocationUpdate
from gateway.store.tables import LocationVersion, Submission
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy

FHIR_JSON = "application/fhir+json"


def resources(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A location as a tracker sends it: the gateway's own rendering, with meta.lastUpdated
    the provider's time (the record's updated_at)."""
    snapshot = LocationSnapshot(1, datetime(2026, 11, 22, tzinfo=UTC), "x", record)
    out = [render_location(snapshot), *render_services(snapshot)]
    for resource in out:
        resource["meta"] = {"lastUpdated": record["updated_at"]}
    return out


def transaction(*items: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    """A Bundle of resources (PUT by id) or of ready-made entries."""
    entries = []
    for item in items:
        if "resourceType" in item:
            item = {
                "resource": item,
                "request": {"method": "PUT", "url": f"{item['resourceType']}/{item['id']}"},
            }
        entries.append(item)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def withdrawn_service(cqc_id: str, vacancy_type: str) -> dict[str, Any]:
    """An inactive HealthcareService without bed counts: the location no longer offers
    ``vacancy_type``."""
    return {
        "resourceType": "HealthcareService",
        "id": f"{cqc_id}-{vacancy_type}",
        "active": False,
        "location": [{"reference": f"Location/{cqc_id}"}],
        "type": [{"coding": [{"system": S.VACANCY_TYPE, "code": vacancy_type}]}],
    }


def post(client: TestClient, token: str, body: object, **headers: str) -> Any:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post("/fhir", content=data, headers={"Content-Type": FHIR_JSON, **bearer(token), **headers})


def statuses(response: Any) -> list[str]:
    return [e["response"]["status"] for e in response.json()["entry"]]


def diagnostics(entry: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i["expression"][0], i["diagnostics"]) for i in entry["response"]["outcome"]["issue"]]


def test_rendered_location_posted_back_is_unchanged(client: TestClient, make_token: TokenMaker) -> None:
    pusher, other = make_token(name="tracker-north-west"), make_token(name="tracker-fhir")
    record = location(
        vacancies=[
            vacancy("dementia-nursing", admittable=3, unavailable=0, unavailable_reasons=[]),
            vacancy(),
        ],
        short_stay_services=["respite-care"],
        notes="Hoist",
        phone="0161 496 0000",
        contracts_with_local_authorities=["Manchester"],
        short_stay_weekly_cost=950.0,
    )
    pushed = client.post("/api/v1/submissions", json=batch(record), headers=bearer(pusher)).json()
    version = pushed["records"][0]["version_id"]
    published = [client.get("/fhir/Location/1-100000001", headers=bearer(pusher)).json()]
    for vacancy_type in ("dementia-nursing", "general-nursing"):
        url = f"/fhir/HealthcareService/1-100000001-{vacancy_type}"
        published.append(client.get(url, headers=bearer(pusher)).json())
    published[0]["meta"] = {"lastUpdated": record["updated_at"]}  # the provider's time, not the gateway's
    bundle = transaction(*published)

    mapped = map_bundle(bundle).locations[0].record
    assert LocationUpdate.model_validate(mapped) == LocationUpdate.model_validate(record)
    response = post(client, other, bundle)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == "transaction-response"
    assert [e["response"]["etag"] for e in answer["entry"]] == [f'W/"{version}"'] * 3
    assert [e["response"]["location"] for e in answer["entry"]] == [
        f"Location/1-100000001/_history/{version}",
        f"HealthcareService/1-100000001-dementia-nursing/_history/{version}",
        f"HealthcareService/1-100000001-general-nursing/_history/{version}",
    ]
    assert statuses(response) == ["200 OK"] * 3
    assert diagnostics(answer["entry"][1])[0][1].startswith("unchanged")
    history = client.get("/api/v1/locations/1-100000001/history", headers=bearer(pusher)).json()
    assert len(history) == 1


def test_transaction_shows_in_native_api_fhir_reads_and_history(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token(name="tracker-fhir")
    record = location(vacancies=[vacancy(occupied=12, admittable=6)])
    response = post(client, token, transaction(*resources(record)))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    entries = response.json()["entry"]
    assert statuses(response) == ["201 Created", "201 Created"]
    version = entries[0]["response"]["etag"]

    native = client.get("/api/v1/locations/1-100000001", headers=bearer(token)).json()
    assert native["source"] == "tracker-fhir"
    assert native["source_updated_at"] == "2026-11-20T09:00:00+00:00"
    line = native["vacancies"][0]
    assert (line["maximum_capacity"], line["occupied"], line["reserved"], line["admittable"]) == (
        20,
        12,
        1,
        6,
    )
    assert line["unavailable_reasons"] == ["staffing-absence"]
    assert line["weekly_price_from"] == 1150.0

    service = client.get("/fhir/HealthcareService/1-100000001-general-nursing", headers=bearer(token))
    assert service.headers["etag"] == version
    beds = next(e for e in service.json()["extension"] if e["url"] == S.EXT_BED_AVAILABILITY)
    assert {"url": "admittable", "valueUnsignedInt": 6} in beds["extension"]
    feed = client.get("/fhir/Location/_history", headers=bearer(token)).json()
    [changed] = [e["resource"] for e in feed["entry"]]
    assert changed["id"] == "1-100000001"
    assert changed["meta"]["source"] == S.source_uri("tracker-fhir")


def test_mixed_bundle_keeps_the_good_location_and_names_each_bad_entry(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    good = resources(location("1-100000001"))
    bad = resources(location("1-100000002"))
    parts = bad[1]["extension"][0]["extension"]
    parts[1]["valueUnsignedInt"] = -3  # occupied
    long_postcode = {"line1": "1 High Street", "postcode": "M1 1AA 1AA 1AA"}  # a native rule, after mapping
    too_long = resources(location("1-100000003", address=long_postcode))
    orphan = resources(location("1-100000004"))[1]
    body = orjson.dumps(transaction(*good, *bad, *too_long, orphan))
    response = post(client, token, body)

    assert response.status_code == 200
    entries = response.json()["entry"]
    assert statuses(response) == ["201 Created", "201 Created"] + ["422 Unprocessable Entity"] * 5
    assert diagnostics(entries[3]) == [
        (
            "Bundle.entry[3].resource.extension[0].extension[1].valueUnsignedInt",
            "-3 is less than the minimum of 0",
        )
    ]
    [(where, why)] = diagnostics(entries[2])
    assert (where, why) == (
        "Bundle.entry[2]",
        "not applied: location 1-100000002 was rejected (see Bundle.entry[3])",
    )
    [(where, why)] = diagnostics(entries[4])
    assert where == "Bundle.entry[4].resource.address.postalCode"
    assert why.startswith("'M1 1AA 1AA 1AA' is too long")
    [(where, why)] = diagnostics(entries[6])
    assert where == "Bundle.entry[6].resource.location[0].reference"
    assert "Location/1-100000004 is not a Location in this Bundle" in why
    read = client.get("/api/v1/locations/1-100000001", headers=bearer(token))
    assert read.status_code == 200
    assert client.get("/api/v1/locations/1-100000002", headers=bearer(token)).status_code == 404
    with factory() as session:
        [kept] = session.scalars(sa.select(Submission)).all()
    assert kept.body == body
    assert kept.content_type == FHIR_JSON
    assert (kept.status_code, kept.accepted, kept.rejected) == (200, 1, 3)
    assert kept.response == response.json()


def test_a_location_outside_the_token_regions_refuses_the_bundle(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token(regions=("north-west",))
    london = location("1-100000009", region="london", address={"line1": "1 Strand", "postcode": "WC2N 5DN"})
    response = post(client, token, transaction(*resources(location()), *resources(london)))
    assert response.status_code == 403
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "forbidden"
    assert "1-100000009 (london)" in outcome["issue"][0]["diagnostics"]
    with factory() as session:
        assert session.scalars(sa.select(LocationVersion)).all() == []
        assert [kept.status_code for kept in session.scalars(sa.select(Submission))] == [403]


def test_without_token_or_submit_scope(client: TestClient, make_token: TokenMaker) -> None:
    body = orjson.dumps(transaction(*resources(location())))
    anonymous = client.post("/fhir", content=body, headers={"Content-Type": FHIR_JSON})
    assert anonymous.status_code == 401
    assert anonymous.json()["resourceType"] == "OperationOutcome"
    reader = post(client, make_token(scopes=("read",)), body)
    assert reader.status_code == 403
    assert "submit" in reader.json()["issue"][0]["diagnostics"]


def test_older_update_is_reported_stale(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token()
    first = post(client, token, transaction(*resources(location())))
    etag = first.json()["entry"][0]["response"]["etag"]
    older = location(updated_at="2026-11-19T09:00:00Z", vacancies=[vacancy(occupied=2)])
    response = post(client, token, transaction(*resources(older)))
    assert statuses(response) == ["200 OK", "200 OK"]
    for entry in response.json()["entry"]:
        assert entry["response"]["etag"] == etag
        [issue] = entry["response"]["outcome"]["issue"]
        assert issue["severity"] == "information"
        assert issue["diagnostics"].startswith("stale")
    line = client.get("/api/v1/locations/1-100000001", headers=bearer(token)).json()["vacancies"][0]
    assert line["occupied"] == 16


def test_retry_with_the_same_idempotency_key_is_answered_once(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    body = transaction(*resources(location()))
    first = post(client, token, body, **{"Idempotency-Key": "sync-42"})
    again = post(client, token, body, **{"Idempotency-Key": "sync-42"})
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    other = post(
        client, token, transaction(*resources(location(name="Renamed"))), **{"Idempotency-Key": "sync-42"}
    )
    assert other.status_code == 422
    assert "different body" in other.json()["issue"][0]["diagnostics"]
    with factory() as session:
        assert len(session.scalars(sa.select(LocationVersion)).all()) == 1
    # A refusal answered again from its key says so too, as the native push's does.
    refused = post(client, token, b"{not json", **{"Idempotency-Key": "sync-43"})
    refused_again = post(client, token, b"{not json", **{"Idempotency-Key": "sync-43"})
    assert refused.status_code == refused_again.status_code == 400
    assert "idempotent-replayed" not in refused.headers
    assert refused_again.headers["idempotent-replayed"] == "true"
    assert refused_again.json()["resourceType"] == "OperationOutcome"


def test_malformed_json_and_wrong_bundles_are_operation_outcomes(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    broken = post(client, token, b'{"resourceType": "Bundle", ')
    assert broken.status_code == 400
    assert broken.json()["issue"][0]["diagnostics"].startswith("the body is not JSON")
    searchset = post(client, token, transaction(*resources(location()), kind="searchset"))
    assert searchset.status_code == 422
    [issue] = searchset.json()["issue"]
    assert issue["expression"] == ["Bundle.type"]
    assert "'searchset' is not one of ['transaction', 'batch']" in issue["diagnostics"]
    patient = post(client, token, {"resourceType": "Patient"})
    assert patient.status_code == 422
    assert "Bundle.resourceType" in patient.json()["issue"][0]["diagnostics"]
    with factory() as session:
        kept = sorted(row.status_code or 0 for row in session.scalars(sa.select(Submission)))
    assert kept == [400, 422, 422]
    wrong_type = client.post("/fhir", content=b"x=1", headers={**bearer(token), "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    assert wrong_type.json()["resourceType"] == "OperationOutcome"


def test_batch_gets_a_batch_response_and_can_withdraw_a_vacancy_type(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    two = location(vacancies=[vacancy("dementia-nursing", occupied=19), vacancy()])
    first = post(client, token, transaction(*resources(two))).json()["entry"][0]["response"]
    [issue] = first["outcome"]["issue"]  # accepted, with what the gateway found
    assert (issue["severity"], issue["diagnostics"]) == (
        "warning",
        "accepted with data-quality flags: capacity-invariant-broken",
    )
    one = resources(location(updated_at="2026-11-21T09:00:00Z"))
    withdrawn = withdrawn_service("1-100000001", "dementia-nursing")
    response = post(client, token, transaction(*one, withdrawn, kind="batch"))
    answer = response.json()
    assert answer["type"] == "batch-response"
    assert statuses(response) == ["200 OK"] * 3
    assert answer["entry"][2]["response"]["location"].startswith(
        "HealthcareService/1-100000001-dementia-nursing/"
    )
    native = client.get("/api/v1/locations/1-100000001", headers=bearer(token)).json()
    assert [line["vacancy_type"] for line in native["vacancies"]] == ["general-nursing"]
    service = client.get("/fhir/HealthcareService/1-100000001-dementia-nursing", headers=bearer(token)).json()
    assert service["active"] is False


def test_an_entry_that_creates_its_resource_is_201_and_one_that_updates_it_200(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()

    def send(updated_at: str, *lines: dict[str, Any]) -> list[str]:
        record = location(updated_at=updated_at, vacancies=list(lines))
        response = post(client, token, transaction(*resources(record)))
        assert response.status_code == 200, response.text
        return statuses(response)

    nursing, residential = vacancy(), vacancy("general-residential")
    assert send("2026-11-20T09:00:00Z", nursing) == ["201 Created"] * 2
    # Location and general-nursing updated, general-residential new (services in type order).
    assert send("2026-11-20T10:00:00Z", residential, nursing) == ["200 OK", "200 OK", "201 Created"]
    assert send("2026-11-20T10:00:00Z", residential, nursing) == ["200 OK"] * 3  # unchanged
    assert send("2026-11-20T11:00:00Z", nursing) == ["200 OK"] * 2  # general-residential withdrawn
    residential_read = client.get(
        "/fhir/HealthcareService/1-100000001-general-residential", headers=bearer(token)
    )
    assert residential_read.json()["active"] is False
    # Offered again: the (inactive) service is there, so it is updated, not created.
    assert send("2026-11-20T12:00:00Z", residential, nursing) == ["200 OK"] * 3
    # A type withdrawn by a tracker that never offered it is no resource at all: not created.
    never = resources(location(updated_at="2026-11-20T13:00:00Z", vacancies=[nursing, residential]))
    withdrawn = withdrawn_service("1-100000001", "dementia-nursing")
    assert statuses(post(client, token, transaction(*never, withdrawn))) == ["200 OK"] * 4


def test_a_new_location_without_a_region_is_rejected_at_its_location(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    nowhere = location(region=None, address={"line1": "1 High Street"})
    response = post(client, token, transaction(*resources(nowhere)))
    assert statuses(response) == ["422 Unprocessable Entity"] * 2
    entries = response.json()["entry"]
    assert diagnostics(entries[0]) == [
        ("Bundle.entry[0].resource", "nhs_region is required for a location the gateway does not know yet")
    ]
    assert diagnostics(entries[1])[0][1].startswith("not applied: location 1-100000001 was rejected")


def test_a_compressed_bundle_is_taken_and_size_and_coding_faults_are_outcomes(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    body = orjson.dumps(transaction(*resources(location("1-100000001"))))
    taken = post(client, token, gzip.compress(body), **{"Content-Encoding": "gzip"})
    assert taken.status_code == 200, taken.text
    assert statuses(taken) == ["201 Created"] * len(taken.json()["entry"])
    with factory() as session:
        assert list(session.scalars(sa.select(col(Submission.body)))) == [body]  # kept as JSON

    refused = post(client, token, body, **{"Content-Encoding": "br"})
    assert refused.status_code == 415
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert "'br'" in refused.json()["issue"][0]["diagnostics"]

    padded = gzip.compress(body + b" " * 100_000)
    client.app.state.settings.max_submission_bytes = len(padded) + 100  # type: ignore[attr-defined]
    too_big = post(client, token, padded, **{"Content-Encoding": "gzip"})
    assert too_big.status_code == 413
    assert too_big.json()["resourceType"] == "OperationOutcome"
    assert "once decompressed" in too_big.json()["issue"][0]["diagnostics"]


def test_a_rehab_service_may_leave_reserved_out_and_a_care_home_service_may_not(
    client: TestClient, make_token: TokenMaker
) -> None:
    """As in a push: the national tracker has reserved as NA for community rehabilitation."""
    token = make_token()
    rehab = vacancy("community-rehab-nhs-la", reserved=0, admittable=3)
    care = vacancy("general-nursing")

    def without_reserved(service: dict[str, Any]) -> dict[str, Any]:
        for extension in service["extension"]:
            if extension["url"] == S.EXT_BED_AVAILABILITY:
                extension["extension"] = [p for p in extension["extension"] if p["url"] != "reserved"]
        return service

    rehab_home = resources(location("1-100000001", provider_type="community-rehab", vacancies=[rehab]))
    care_home = resources(location("1-100000002", vacancies=[care]))
    response = post(
        client,
        token,
        transaction(
            rehab_home[0], without_reserved(rehab_home[1]), care_home[0], without_reserved(care_home[1])
        ),
    )
    assert statuses(response)[:2] == ["201 Created", "201 Created"]
    line = client.get("/api/v1/locations/1-100000001", headers=bearer(token)).json()["vacancies"][0]
    assert (line["vacancy_type"], line["reserved"]) == ("community-rehab-nhs-la", 0)
    refused = response.json()["entry"][3]["response"]
    assert refused["status"].startswith("422")
    [(expression, message)] = diagnostics(response.json()["entry"][3])
    assert expression.startswith("Bundle.entry[3]") and "reserved" in message


def test_an_inactive_service_with_bed_counts_is_refused_not_taken_as_open(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    two = location(vacancies=[vacancy("dementia-nursing"), vacancy()])
    assert statuses(post(client, token, transaction(*resources(two)))) == ["201 Created"] * 3
    path = "/fhir/HealthcareService/1-100000001-dementia-nursing"
    before = client.get(path, headers=bearer(token)).json()
    later = resources(
        location(updated_at="2026-11-21T09:00:00Z", vacancies=[vacancy("dementia-nursing"), vacancy()])
    )
    later[1]["active"] = False  # dementia-nursing retired, its counts still sent
    response = post(client, token, transaction(*later))
    assert response.status_code == 200, response.text
    assert statuses(response) == ["422 Unprocessable Entity"] * 3
    [(where, why)] = diagnostics(response.json()["entry"][1])
    assert where == "Bundle.entry[1].resource.active" and "withdraws dementia-nursing" in why
    # Nothing changed: the service is still open, with the counts first sent.
    assert client.get(path, headers=bearer(token)).json() == before
    assert before["active"] is True


def test_the_capability_statement_says_writes_are_transaction_entries_only(
    client: TestClient, make_token: TokenMaker
) -> None:
    """Writes are served only as entries of a transaction or batch Bundle: no resource
    lists create or update (a PUT or POST of its own is a 405), so none claims
    updateCreate; the transaction's documentation says a PUT entry creates what the
    gateway does not hold yet."""
    statement = client.get("/fhir/metadata").json()
    for resource in statement["rest"][0]["resource"]:
        assert not {"create", "update"} & {i["code"] for i in resource["interaction"]}, resource["type"]
        assert resource.get("updateCreate", False) is False
    transaction_doc = {i["code"]: i["documentation"] for i in statement["rest"][0]["interaction"]}
    assert set(transaction_doc) == {"transaction", "batch"}
    assert "creates the resource when the gateway does not hold it yet" in transaction_doc["transaction"]
    assert "not served (405)" in transaction_doc["transaction"]
    # As documented: a PUT entry creates what the gateway does not hold (a conditional one
    # too), and a PUT or POST of its own is not served.
    token = make_token()
    new = resources(location())
    assert statuses(post(client, token, transaction(*new))) == ["201 Created"] * 2
    other = resources(location("1-100000002", address={"line1": "2 High Street", "postcode": "M1 1AA"}))
    entries = [
        {
            "resource": other[0],
            "request": {
                "method": "PUT",
                "url": f"Location?identifier={S.CQC_LOCATION_ID}|1-100000002",
            },
        },
        {
            "resource": other[1],
            "request": {"method": "PUT", "url": f"HealthcareService?_id={other[1]['id']}"},
        },
    ]
    assert statuses(post(client, token, transaction(*entries))) == ["201 Created"] * 2
    alone = client.put(
        "/fhir/Location/1-100000003",
        content=orjson.dumps(new[0]),
        headers={"Content-Type": FHIR_JSON, **bearer(token)},
    )
    assert alone.status_code == 405
    posted = client.post(
        "/fhir/Location", content=orjson.dumps(new[0]), headers={"Content-Type": FHIR_JSON, **bearer(token)}
    )
    assert posted.status_code == 405


def test_a_service_its_locations_provider_does_not_offer_gets_no_link_that_reads_404(
    client: TestClient, make_token: TokenMaker
) -> None:
    """A care home sending a community-rehab HealthcareService: the line is kept on its
    Location, flagged, and no service is published for it, so its entry's answer names no
    HealthcareService (which a read would answer 404) and says why."""
    token = make_token()
    care = location("1-900000001", provider_type="care-home", vacancies=[vacancy("general-nursing")])
    rehab = {**care, "provider_type": "community-rehab", "vacancies": [vacancy("community-rehab-nhs-la")]}
    snapshot = LocationSnapshot(1, datetime(2026, 11, 22, tzinfo=UTC), "x", rehab)
    [place] = resources(care)[:1]
    services = render_services(snapshot)
    for service in services:
        service["meta"] = {"lastUpdated": care["updated_at"]}
    answer = post(client, token, transaction(place, *services))
    assert answer.status_code == 200, answer.text
    place_entry, service_entry = answer.json()["entry"]
    assert place_entry["response"]["location"].startswith("Location/1-900000001/_history/")
    assert "location" not in service_entry["response"] and "etag" not in service_entry["response"]
    [issue] = service_entry["response"]["outcome"]["issue"]
    assert issue["severity"] == "warning" and "type-not-offered-by-provider" in issue["diagnostics"]
    served = client.get("/fhir/Location/1-900000001", headers=bearer(token)).json()
    assert "type-not-offered-by-provider" in orjson.dumps(served).decode()
