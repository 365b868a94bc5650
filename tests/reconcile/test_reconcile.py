"""Reconciliation finds each kind of discrepancy, keeps ids stable and closes findings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.ingest.service import apply_updates
from gateway.model.capacity import LocationUpdate
from gateway.reconcile import matching
from gateway.reconcile.rules import Kind, RegisteredLocation, TrackedLocation, compare
from gateway.reconcile.service import reconcile
from gateway.store import reconciliation as queries
from gateway.store.db import transaction
from gateway.store.sources import acquire_lease, release_lease
from gateway.store.tables import HeldRecord, LocationVersion, RegistryLocation, table, utcnow
from gateway.sync.runs import RunCounts, finish_run, start_run
from tests.conftest import GatewayCli, TokenMaker, bearer
from tests.factories import batch, location, vacancy


def registry(cqc_id: str, **over: Any) -> RegistryLocation:
    fields: dict[str, Any] = dict(
        cqc_location_id=cqc_id,
        name=f"Test Home {cqc_id}",
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


def held_home(ref: str, name: str, postcode: str, local_authority: str, record: dict[str, Any]) -> HeldRecord:
    """A London home without a CQC ID, held for matching."""
    now = utcnow()
    return HeldRecord(
        source="london",
        source_ref=ref,
        name=name,
        postcode=postcode,
        local_authority=local_authority,
        record=record,
        first_seen=now,
        last_seen=now,
    )


def push(client: TestClient, token: str, *records: dict[str, Any]) -> None:
    response = client.post(
        "/api/v1/submissions", content=orjson.dumps(batch(*records)), headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    assert all(r["status"] == "accepted" for r in response.json()["records"]), response.text


def run(factory: sessionmaker[Session]):  # type: ignore[no-untyped-def]
    with transaction(factory) as session:
        summary = reconcile(session)
    with factory() as session:
        _, findings = queries.list_findings(session, statuses=["open"])
    return summary, {(f.kind, f.cqc_location_id or f.source_ref) for f in findings}, findings


def test_each_kind_is_found_and_findings_close_when_fixed(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    north_west = make_token(name="tracker-north-west")
    neighbour = make_token(name="tracker-neighbour")
    push(
        client,
        north_west,
        location("1-101"),  # clean
        location("1-102"),  # unknown to CQC
        location("1-103"),  # deregistered, reporting
        location("1-104"),  # dormant, reporting
        location("1-105", vacancies=[vacancy(maximum_capacity=50, occupied=46)]),  # above registered
        location("1-106", address={"postcode": "m2 2bb"}),  # postcode differs
        location("1-107", name="Completely Different Manor"),  # name differs
        location("1-108"),
    )
    # Another tracker reports 1-108 later with other figures.
    push(
        client,
        neighbour,
        location("1-108", updated_at="2026-11-21T09:00:00Z", vacancies=[vacancy(occupied=10, admittable=8)]),
    )
    with transaction(factory) as session:
        session.add_all(
            [
                registry("1-101"),
                registry("1-103", registration_status="Deregistered"),
                registry("1-104", dormant=True),
                registry("1-105", registered_beds=30),
                registry("1-106"),
                registry("1-107"),
                registry("1-108"),
                registry("1-199"),
            ]
        )
    summary, found, findings = run(factory)
    assert found == {
        ("unknown-to-cqc", "1-102"),
        ("deregistered-reporting", "1-103"),
        ("dormant-reporting", "1-104"),
        ("capacity-above-registered", "1-105"),
        ("postcode-mismatch", "1-106"),
        ("name-mismatch", "1-107"),
        ("conflicting-reports", "1-108"),
        ("not-reported", "1-199"),
    }
    evidence = {f.kind: f.evidence for f in findings}
    assert evidence["capacity-above-registered"] == {"entered_capacity": 50, "registered_beds": 30}
    assert set(evidence["conflicting-reports"]["sources"]) == {"tracker-north-west", "tracker-neighbour"}
    assert summary.coverage["north-west"] == {"registered": 7, "reported": 6}
    ids_before = {f.kind: (f.id, f.first_seen) for f in findings}

    # Fix two problems upstream; run again: those close, the rest keep id and first_seen.
    push(
        client,
        north_west,
        location("1-105", updated_at="2026-11-22T09:00:00Z", vacancies=[vacancy(maximum_capacity=20)]),
    )
    with transaction(factory) as session:
        session.add(registry("1-102"))
    summary, found, findings = run(factory)
    assert ("capacity-above-registered", "1-105") not in found
    assert ("unknown-to-cqc", "1-102") not in found
    assert summary.closed == 2
    for finding in findings:
        assert (finding.id, finding.first_seen) == ids_before[finding.kind], finding.kind
    with factory() as session:
        _, closed = queries.list_findings(session, statuses=["closed"])
    assert {f.kind for f in closed} == {"capacity-above-registered", "unknown-to-cqc"}


def test_held_homes_are_linked_queued_or_left_unmatched(
    factory: sessionmaker[Session], client: TestClient
) -> None:
    record = location("1-1")
    del record["cqc_location_id"]
    with transaction(factory) as session:
        session.add_all(
            [
                registry(
                    "1-301",
                    name="Cranberry House Nursing Home",
                    postcode="NW8 9AA",
                    latitude=51.532,
                    longitude=-0.175,
                    local_authority="Westminster",
                    nhs_region="london",
                ),
                registry(
                    "1-302",
                    name="Oak Lodge",
                    postcode="NW8 7XY",
                    latitude=51.532,
                    longitude=-0.175,
                    local_authority="Westminster",
                    nhs_region="london",
                ),
                registry(
                    "1-303",
                    name="Oak Lodge Care Centre",
                    postcode="NW8 7XZ",
                    latitude=51.532,
                    longitude=-0.175,
                    local_authority="Westminster",
                    nhs_region="london",
                ),
            ]
        )
        for ref, name, postcode in [
            ("LDN-000001", "THE CRANBERRY HOUSE NURSING HOME LTD  ", "nw89aa"),
            ("LDN-000002", "Oak Lodge Care", "NW8 7XY"),
            ("LDN-000003", "Sunrise Villa", "NW8 1AA"),
        ]:
            session.add(held_home(ref, name, postcode, "Westminster", {**record, "nhs_region": "london"}))
    summary, found, _ = run(factory)
    assert (summary.linked, summary.queued_for_review, summary.unmatched) == (1, 1, 1)
    with factory() as session:
        held = {h.source_ref: h for h in queries.held_records(session)}
    assert held["LDN-000001"].status == "linked"
    assert held["LDN-000001"].matched_cqc_location_id == "1-301"
    assert held["LDN-000002"].status == "review"
    assert held["LDN-000003"].status == "unmatched"
    assert ("unmatched-home", "LDN-000002") in found and ("unmatched-home", "LDN-000003") in found
    token_read = client.get("/api/v1/locations/1-301", headers=bearer(_reader(factory)))
    assert token_read.status_code == 200 and token_read.json()["source"] == "london"


def _reader(factory: sessionmaker[Session]) -> str:
    from gateway.auth import create_token

    with transaction(factory) as session:
        return create_token(session, name="reader", scopes=["read"])[1]


def test_match_scores_prefer_near_and_similar() -> None:
    index = matching.RegistryIndex(
        [
            matching.RegistryCandidate("1-1", "St Anne's Care Home", "B97 4AA", "Redditch", 52.30, -1.95),
            matching.RegistryCandidate("1-2", "St Anne's Care Home", "B97 5ZZ", "Redditch", 52.60, -1.50),
        ]
    )
    decision = matching.match_home("St Annes Care Home", "B97 4AB", "Redditch", (52.30, -1.95), index)
    assert decision.decision == "link" and decision.best is not None
    assert decision.best.cqc_location_id == "1-1"
    assert decision.runner_up is not None and decision.runner_up.distance_km is not None
    assert decision.runner_up.distance_km > 40


@pytest.mark.parametrize(
    ("held_name", "registered_name", "decision"),
    [
        # A kind of place both names share does not make two homes one.
        ("Beech House Nursing Home", "Birch House Nursing Home", "review"),
        ("Ash Lodge Residential Care Home", "Oak Lodge Residential Care Home", "none"),
        # A tracker that leaves the kind of place off still names the same home.
        ("Highfield", "Highfield Care Home", "link"),
        ("Edenmore", "Edenmore Nursing Home", "link"),
    ],
)
def test_matching_compares_names_without_the_kind_of_place(
    held_name: str, registered_name: str, decision: str
) -> None:
    index = matching.RegistryIndex(
        [matching.RegistryCandidate("1-1", registered_name, "M1 1AA", "Manchester", 53.48, -2.24)]
    )
    found = matching.match_home(held_name, "M1 2AB", "Manchester", (53.48, -2.24), index)
    assert found.decision == decision, found


@pytest.mark.parametrize(
    ("held_name", "names", "decision", "linked"),
    [
        # Same core name: the whole name tells them apart.
        (
            "The Heather Gardens Nursing Home",
            ["Heather Gardens Residential Home", "Heather Gardens Nursing Home"],
            "link",
            "1-2",
        ),
        ("Orchard Grange Care Centre", ["Orchard Grange", "Orchard Grange Care Centre"], "link", "1-2"),
        # Naming no kind of place, the tracker does not say which of the two it is.
        (
            "Heather Gardens",
            ["Heather Gardens Nursing Home", "Heather Gardens Residential Home"],
            "review",
            None,
        ),
    ],
)
def test_same_scoring_candidates_are_told_apart_by_their_whole_names(
    held_name: str, names: list[str], decision: str, linked: str | None
) -> None:
    index = matching.RegistryIndex(
        [
            matching.RegistryCandidate(f"1-{n}", name, "M1 1AA", "Manchester", 53.48, -2.24)
            for n, name in enumerate(names, start=1)
        ]
    )
    found = matching.match_home(held_name, "M1 2AB", "Manchester", (53.48, -2.24), index)
    assert found.decision == decision, found
    if linked is not None:
        assert found.best is not None and found.best.cqc_location_id == linked


def test_reconciliation_weighs_distance_when_the_caller_gives_no_points(
    factory: sessionmaker[Session],
) -> None:
    """The scheduler and `gateway reconcile` pass no way to place a postcode: a held home is
    still placed (at its district's centroid), so the nearer of two same-named homes wins."""
    record = {k: v for k, v in location("1-1", region="midlands").items() if k != "cqc_location_id"}
    with transaction(factory) as session:
        session.add_all(
            [
                registry(
                    "1-401",
                    name="St Anne's Care Home",
                    postcode="B98 7AA",
                    local_authority="Redditch",
                    latitude=52.60,
                    longitude=-1.50,
                ),
                registry(
                    "1-402",
                    name="St Anne's Care Home",
                    postcode="B97 4AA",
                    local_authority="Redditch",
                    latitude=52.30,
                    longitude=-1.95,
                ),
            ]
        )
        session.add(held_home("LDN-000009", "St Annes Care Home", "B97 4AB", "Redditch", record))
    summary, _, _ = run(factory)
    assert summary.linked == 1
    with factory() as session:
        held = queries.get_held_record(session, "london", "LDN-000009")
    assert held is not None and (held.status, held.matched_cqc_location_id) == ("linked", "1-402")


def test_findings_api_filters_exports_csv_and_reviews_matches(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token(name="tracker-north-west")
    admin = make_token(name="admin", scopes=("admin",))
    push(
        client,
        token,
        location("1-102"),
        location("1-105", vacancies=[vacancy(maximum_capacity=50, occupied=46)]),
    )
    with transaction(factory) as session:
        session.add_all(
            [
                registry("1-105", registered_beds=30),
                registry(
                    "1-301",
                    name="Oak Lodge",
                    postcode="NW8 7XY",
                    latitude=51.532,
                    longitude=-0.175,
                    local_authority="Westminster",
                    nhs_region="london",
                ),
                registry(
                    "1-302",
                    name="Oak Lodge Care Centre",
                    postcode="NW8 7XZ",
                    latitude=51.532,
                    longitude=-0.175,
                    local_authority="Westminster",
                    nhs_region="london",
                ),
            ]
        )
        record = {k: v for k, v in location("1-1", region="london").items() if k != "cqc_location_id"}
        session.add(held_home("LDN-000002", "Oak Lodge Care", "NW8 7XY", "Westminster", record))
    run(factory)
    response = client.get(
        "/api/v1/reconciliation/findings", params={"kind": "unknown-to-cqc"}, headers=bearer(token)
    )
    assert response.status_code == 200
    assert [f["cqc_location_id"] for f in response.json()["findings"]] == ["1-102"]
    csv_text = client.get(
        "/api/v1/reconciliation/findings",
        headers=bearer(token),
        params={"format": "csv", "region": "north-west"},
    ).text
    assert csv_text.startswith("\ufeff")  # UTF-8 with a byte-order mark, as every export
    lines = csv_text.removeprefix("\ufeff").strip().splitlines()
    assert lines[0].startswith("id,kind,severity")
    assert {line.split(",")[1] for line in lines[1:]} == {"unknown-to-cqc", "capacity-above-registered"}
    # The London home awaiting review is found by its tracker's region too.
    london = client.get(
        "/api/v1/reconciliation/findings",
        params={"kind": "unmatched-home", "region": "london"},
        headers=bearer(token),
    ).json()["findings"]
    assert [(f["source_ref"], f["nhs_region"]) for f in london] == [("LDN-000002", "london")]
    bad = client.get("/api/v1/reconciliation/findings", params={"kind": "bogus"}, headers=bearer(token))
    assert bad.status_code == 422 and "kind" in bad.json()["detail"]
    # A region by its name as by its code; a mistyped region, source or parameter is named,
    # never an empty answer that looks like no findings.
    by_name = client.get(
        "/api/v1/reconciliation/findings",
        params={"kind": "unmatched-home", "region": "London"},
        headers=bearer(token),
    ).json()["findings"]
    assert [f["source_ref"] for f in by_name] == ["LDN-000002"]
    for params, named in (
        ({"region": "Londn"}, "region"),
        ({"source": "tracker-nort-west"}, "source"),
        ({"regoin": "london"}, "regoin"),
    ):
        refused = client.get("/api/v1/reconciliation/findings", params=params, headers=bearer(token))
        assert refused.status_code == 422, params
        assert named in refused.json()["detail"], refused.json()
    sources = {
        f["source"]
        for f in client.get("/api/v1/reconciliation/findings", headers=bearer(token)).json()["findings"]
    }
    assert sources - {None}  # trackers' findings name their source
    for source in sources - {None}:
        found = client.get(
            "/api/v1/reconciliation/findings", params={"source": source}, headers=bearer(token)
        )
        assert found.status_code == 200 and found.json()["total"] >= 1, source
    for offset in (2**63, 10**20, 100_000_001):  # past the database's integer: was a 500
        far = client.get("/api/v1/reconciliation/findings", params={"offset": offset}, headers=bearer(token))
        assert far.status_code == 422 and "offset" in far.json()["detail"], offset
    last = client.get(
        "/api/v1/reconciliation/findings", params={"offset": 100_000_000}, headers=bearer(token)
    )
    assert last.status_code == 200 and last.json()["findings"] == []

    queue = client.get("/api/v1/reconciliation/matches", params={"status": "review"}, headers=bearer(token))
    assert [m["source_ref"] for m in queue.json()] == ["LDN-000002"]
    decision = {"source": "london", "source_ref": "LDN-000002", "decision": "confirm"}
    refused = client.post("/api/v1/reconciliation/matches", json=decision, headers=bearer(token))
    assert refused.status_code == 403
    confirmed = client.post("/api/v1/reconciliation/matches", json=decision, headers=bearer(admin))
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "linked"
    linked_id = confirmed.json()["candidate_cqc_location_id"]
    assert client.get(f"/api/v1/locations/{linked_id}", headers=bearer(admin)).json()["source"] == "london"
    missing = client.post(
        "/api/v1/reconciliation/matches", headers=bearer(admin), json={**decision, "source_ref": "LDN-999999"}
    )
    assert missing.status_code == 404


def test_location_read_is_enriched_from_the_registry(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    push(client, token, location("1-105", vacancies=[vacancy(maximum_capacity=50, occupied=46)]))
    assert client.get("/api/v1/locations/1-105", headers=bearer(token)).json()["registry"] is None
    with transaction(factory) as session:
        session.add(
            registry(
                "1-105",
                registered_beds=30,
                overall_rating="good",
                icb_code="QOP",
                icb_name="NHS Greater Manchester ICB",
                ods_code="VN123",
            )
        )
    body = client.get("/api/v1/locations/1-105", headers=bearer(token)).json()
    assert body["registry"]["registered_beds"] == 30
    assert body["registry"]["icb"] == {"code": "QOP", "name": "NHS Greater Manchester ICB"}
    assert (body["registry"]["latitude"], body["registry"]["longitude"]) == (53.48, -2.24)
    assert "entered-capacity-above-registered" in [f["code"] for f in body["quality_flags"]]
    # No registered beds (a community rehabilitation provider) bounds nothing.
    with transaction(factory) as session:
        reg = session.get(RegistryLocation, "1-105")
        assert reg is not None
        reg.registered_beds = 0
    body = client.get("/api/v1/locations/1-105", headers=bearer(token)).json()
    assert "entered-capacity-above-registered" not in [f["code"] for f in body["quality_flags"]]


def test_the_command_reconciles_once_unless_a_gateway_process_is_reconciling(
    client: TestClient,
    make_token: TokenMaker,
    factory: sessionmaker[Session],
    gateway_cli: GatewayCli,
) -> None:
    push(client, make_token(name="tracker-north-west"), location("1-102"))  # unknown to CQC
    with transaction(factory) as session:
        assert acquire_lease(session, "reconcile", "another-process", utcnow(), timedelta(minutes=5))
    held = gateway_cli("reconcile")
    assert held.exit_code == 1
    assert "reconciliation is running in another gateway process" in held.output
    with factory() as session:
        assert queries.list_findings(session, statuses=["open"])[1] == []

    with transaction(factory) as session:
        release_lease(session, "reconcile", "another-process")
    done = gateway_cli("reconcile")
    assert done.exit_code == 0, done.output
    assert "unknown-to-cqc" in done.output
    with factory() as session:
        _, findings = queries.list_findings(session, statuses=["open"])
    assert ("unknown-to-cqc", "1-102") in {(f.kind, f.cqc_location_id) for f in findings}


def test_registered_beds_bound_every_location_that_has_them() -> None:
    """The rule of the entered-capacity-above-registered flag (``above_registered``): no
    registered beds (None, or the CQC's 0) bound nothing; any registered beds bound, a care
    home's or not, so the finding agrees with the flag the API, search and FHIR show."""

    def registered(cqc_id: str, beds: int | None, care_home: bool) -> RegisteredLocation:
        name = f"Home {cqc_id}"
        return RegisteredLocation(cqc_id, name, "M1 1AA", "Registered", False, beds, care_home, None, None)

    registry_ = {
        "1-1": registered("1-1", 30, True),
        "1-2": registered("1-2", 0, False),  # a community rehabilitation provider
        "1-3": registered("1-3", 0, True),
        "1-4": registered("1-4", None, True),
        "1-5": registered("1-5", 30, False),  # not a care home, but registered for 30 beds
    }
    tracked = [
        TrackedLocation(cqc_id, "tracker", f"Home {cqc_id}", "M1 1AA", 50, None, None, True)
        for cqc_id in registry_
    ]
    above = [o for o in compare(tracked, registry_) if o.kind == Kind.CAPACITY_ABOVE_REGISTERED]
    assert [(o.cqc_location_id, o.evidence) for o in above] == [
        ("1-1", {"entered_capacity": 50, "registered_beds": 30}),
        ("1-5", {"entered_capacity": 50, "registered_beds": 30}),
    ]


def test_conflicting_reports_close_when_one_source_stops_reporting(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    north_west, neighbour = make_token(name="tracker-north-west"), make_token(name="tracker-neighbour")
    push(client, north_west, location("1-108"))
    later = location("1-108", updated_at="2026-11-21T09:00:00Z", vacancies=[vacancy(occupied=10)])
    push(client, neighbour, later)
    with transaction(factory) as session:
        session.add(registry("1-108"))
    _, found, _ = run(factory)
    assert ("conflicting-reports", "1-108") in found

    # The neighbour's last report was two days ago: only one source reports 1-108 now.
    versions = table(LocationVersion)
    with transaction(factory) as session:
        session.execute(
            sa.update(versions)
            .where(versions.c.source == "tracker-neighbour")
            .values(recorded_at=utcnow() - timedelta(days=2))
        )
    summary, found, _ = run(factory)
    assert ("conflicting-reports", "1-108") not in found and summary.closed == 1

    # It reports again, still disagreeing: the finding opens again.
    again = location("1-108", updated_at="2026-11-22T09:00:00Z", vacancies=[vacancy(occupied=11)])
    push(client, neighbour, again)
    _, found, _ = run(factory)
    assert ("conflicting-reports", "1-108") in found


def test_a_rejected_match_leaves_the_home_s_finding_open(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    """Rejecting the queued candidate does not put the home into the national view: its
    finding stays open, saying so, until an admin links it to the right location."""
    admin = make_token(name="admin", scopes=("admin",))
    with transaction(factory) as session:
        session.add(
            registry(
                "1-301",
                name="Oak Lodge",
                postcode="NW8 7XY",
                local_authority="Westminster",
                nhs_region="london",
                latitude=51.532,
                longitude=-0.175,
            )
        )
        record = {k: v for k, v in location("1-1", region="london").items() if k != "cqc_location_id"}
        session.add(held_home("LDN-000002", "Oak Lodge Care", "NW8 7XY", "Westminster", record))
    _, found, _ = run(factory)
    assert ("unmatched-home", "LDN-000002") in found
    decision = {"source": "london", "source_ref": "LDN-000002", "decision": "reject"}
    rejected = client.post("/api/v1/reconciliation/matches", json=decision, headers=bearer(admin))
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"

    summary, found, findings = run(factory)
    assert ("unmatched-home", "LDN-000002") in found and summary.closed == 0
    assert [f.evidence["status"] for f in findings if f.source_ref == "LDN-000002"] == ["rejected"]
    with factory() as session:
        held = queries.get_held_record(session, "london", "LDN-000002")
    assert held is not None and held.status == "rejected"  # not queued again

    # Linked by hand to the right location, the home is reported and the finding closes.
    link = {**decision, "decision": "confirm", "cqc_location_id": "1-301"}
    assert client.post("/api/v1/reconciliation/matches", json=link, headers=bearer(admin)).status_code == 200
    _, found, _ = run(factory)
    assert ("unmatched-home", "LDN-000002") not in found


def test_findings_csv_never_runs_source_text_as_a_formula(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    """A tracker's ref or local authority that starts like a formula is written as text
    (a leading ``'``), as in every other export; the JSON answer keeps it as given."""
    import csv
    import io

    token = make_token(scopes=("read",))
    with transaction(factory) as session:
        record = {k: v for k, v in location("1-1", region="london").items() if k != "cqc_location_id"}
        session.add(
            held_home('=HYPERLINK("http://x.example","ok")', "Ash House", "E1 1AA", "@SUM(1+1)", record)
        )
    run(factory)
    params = {"kind": "unmatched-home", "region": "london"}
    found = client.get("/api/v1/reconciliation/findings", params=params, headers=bearer(token)).json()
    assert [f["source_ref"] for f in found["findings"]] == ['=HYPERLINK("http://x.example","ok")']
    response = client.get(
        "/api/v1/reconciliation/findings", params={**params, "format": "csv"}, headers=bearer(token)
    )
    assert response.status_code == 200
    header, *rows = list(csv.reader(io.StringIO(response.text.removeprefix("\ufeff"))))
    assert len(rows) == 1
    cells = dict(zip(header, rows[0], strict=True))
    assert cells["source_ref"] == '\'=HYPERLINK("http://x.example","ok")'
    assert cells["local_authority"] == "'@SUM(1+1)"
    assert cells["kind"] == "unmatched-home"
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in rows[0])


def test_a_source_without_findings_is_an_empty_answer_not_a_mistyped_one(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    """A tracker whose every record agrees with the registry has no findings: filtering by
    it is an empty answer (that is what it has), not a 422 calling it unknown; a source
    the gateway has never heard of is still refused."""
    north = make_token(name="tracker-north-west")
    clean = make_token(name="tracker-south-west")
    push(client, north, location("1-102"))  # unknown to the CQC: a finding
    with transaction(factory) as session:
        session.add(registry("1-700", nhs_region="south-west"))
    push(client, clean, location("1-700", region="south-west"))
    run(factory)
    url = "/api/v1/reconciliation/findings"
    found = client.get(url, params={"source": "tracker-south-west"}, headers=bearer(north))
    assert found.status_code == 200, found.text
    assert found.json()["total"] == 0
    for source in ("london", "tracker-north-west"):
        assert client.get(url, params={"source": source}, headers=bearer(north)).status_code == 200, source
    refused = client.get(url, params={"source": "tracker-sout-west"}, headers=bearer(north))
    assert refused.status_code == 422 and "tracker-south-west" in refused.json()["detail"]


def _orchard_grange_registered(name: str, cqc_id: str, postcode: str) -> RegistryLocation:
    return registry(
        cqc_id,
        name=name,
        postcode=postcode,
        local_authority="Greenwich",
        nhs_region="london",
        latitude=51.44,
        longitude=0.05,
    )


# The home's own location, not in the registry until a test adds it.
ITS_OWN = ("Orchard Grange Care Centre", "1-502", "SE9 2PD")


def _orchard_grange(factory: sessionmaker[Session]) -> None:
    """A held London home, and the one registry location near it by name: another
    London home's (it reports that CQC ID itself)."""
    record = location("1-1", region="london")
    del record["cqc_location_id"]
    other_home = LocationUpdate.model_validate(location("1-501", region="london", name="Orchard Grange"))
    with transaction(factory) as session:
        session.add(_orchard_grange_registered("Orchard Grange", "1-501", "SE9 7SZ"))
        session.add(held_home("LDN-005212", "Orchard Grange Care Centre", "SE9 2PD", "Greenwich", record))
        apply_updates(session, source="london", updates=[(0, other_home)], received_at=utcnow())


def test_a_location_another_home_of_the_source_feeds_is_no_candidate(factory: sessionmaker[Session]) -> None:
    """A held home is never linked to a location another home of its tracker already
    feeds (the two would overwrite each other's figures there); it waits for its own."""
    _orchard_grange(factory)
    summary, found, _ = run(factory)
    assert summary.linked == 0 and ("unmatched-home", "LDN-005212") in found
    with factory() as session:
        held = queries.get_held_record(session, "london", "LDN-005212")
        assert held is not None and (held.status, held.matched_cqc_location_id) == ("unmatched", None)
    with transaction(factory) as session:  # the registry gains the home's own location
        session.add(_orchard_grange_registered(*ITS_OWN))
    assert run(factory)[0].linked == 1
    with factory() as session:
        held = queries.get_held_record(session, "london", "LDN-005212")
    assert held is not None and (held.status, held.matched_cqc_location_id) == ("linked", "1-502")


def test_nothing_is_linked_on_its_own_while_the_first_cqc_sync_fills_the_registry(
    factory: sessionmaker[Session],
) -> None:
    """While the first full CQC sync runs, the registry holds part of the homes: a clear
    match among them is only queued for review. Once a full sync has succeeded, the next
    reconciliation links it."""
    _orchard_grange(factory)
    with transaction(factory) as session:
        session.add(_orchard_grange_registered(*ITS_OWN))
    first_sync = start_run(factory, "cqc", "full")
    summary, _, _ = run(factory)
    assert (summary.linked, summary.queued_for_review) == (0, 1)
    with factory() as session:
        held = queries.get_held_record(session, "london", "LDN-005212")
        assert held is not None and (held.status, held.matched_cqc_location_id) == ("review", "1-502")
    finish_run(factory, first_sync, RunCounts())
    assert run(factory)[0].linked == 1
