"""A location whose source did not say whether it is accepting admissions is held as not
known, everywhere: never taken as accepting (or as refusing)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient

from adapters.fhir import systems as S
from gateway.auth import Principal
from gateway.ingest.submissions import receive_submission
from gateway.store.db import alembic_config, create_engine, session_factory, upgrade
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location

SAID_YES, SAID_NO, NOT_SAID = "1-7001", "1-7002", "1-7003"


def _push(client: TestClient, token: str, *records: dict[str, Any]) -> dict[str, Any]:
    response = client.post(
        "/api/v1/submissions", content=orjson.dumps(batch(*records)), headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _found(client: TestClient, token: str, **params: Any) -> set[str]:
    response = client.get("/api/v1/vacancies", params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    return {r["cqc_location_id"] for r in response.json()["results"]}


def test_a_status_not_given_is_not_known_in_reads_search_exports_reports_and_fhir(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    unsaid = location(NOT_SAID)
    del unsaid["accepting_admissions"]
    answer = _push(
        client,
        token,
        location(SAID_YES, accepting_admissions=True),
        location(SAID_NO, accepting_admissions=False),
        unsaid,
    )
    assert answer["summary"]["accepted"] == 3

    read = client.get(f"/api/v1/locations/{NOT_SAID}", headers=bearer(token)).json()
    assert read["accepting_admissions"] is None

    assert _found(client, token) == {SAID_YES, SAID_NO, NOT_SAID}
    assert _found(client, token, accepting_today=True) == {SAID_YES}
    assert _found(client, token, accepting_today=False) == {SAID_NO}

    text = client.get("/api/v1/vacancies", params={"format": "csv"}, headers=bearer(token)).text
    rows = list(csv.DictReader(io.StringIO("\n".join(text.splitlines()[3:]))))
    status = {row["CQC location ID"]: row["Admission status"] for row in rows}
    assert status == {
        SAID_YES: "Accepting admissions",
        SAID_NO: "Not accepting admissions",
        NOT_SAID: "Admission status not given",
    }

    def capacity(**params: Any) -> int:
        response = client.get("/api/v1/reports/occupancy", params=params, headers=bearer(token))
        assert response.status_code == 200, response.text
        total: int = response.json()["total"]["maximum_capacity"]
        return total

    line = location(SAID_YES)["vacancies"][0]["maximum_capacity"]
    assert capacity() == 3 * line
    assert capacity(accepting_admissions=True) == capacity(accepting_admissions=False) == line

    resource = client.get(f"/fhir/Location/{NOT_SAID}", headers=bearer(token)).json()
    [admissions] = [e for e in resource["extension"] if e["url"] == S.EXT_ADMISSIONS]
    assert admissions["extension"] == [{"url": "outOfHours", "valueBoolean": False}]


def test_a_later_status_replaces_not_known_as_a_new_version(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    unsaid = location(NOT_SAID, updated_at="2026-11-20T09:00:00Z", accepting_admissions=None)
    assert _push(client, token, unsaid)["records"][0]["status"] == "accepted"
    said = location(NOT_SAID, updated_at="2026-11-20T10:00:00Z", accepting_admissions=True)
    assert _push(client, token, said)["records"][0]["status"] == "accepted"
    assert _found(client, token, accepting_today=True) == {NOT_SAID}
    again = location(NOT_SAID, updated_at="2026-11-20T11:00:00Z", accepting_admissions=None)
    assert _push(client, token, again)["records"][0]["status"] == "accepted"  # a change, not 'unchanged'
    assert _found(client, token, accepting_today=True) == set()


def test_a_status_that_is_not_a_boolean_is_rejected_by_its_field(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    answer = _push(client, token, location(SAID_YES), location(SAID_NO, accepting_admissions="yes"))
    assert [r["status"] for r in answer["records"]] == ["accepted", "rejected"]
    assert [e["pointer"] for e in answer["records"][1]["errors"]] == ["/locations/1/accepting_admissions"]


def test_the_migration_downgrade_holds_not_known_as_not_accepting(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    engine = create_engine(url)
    try:
        principal = Principal("t", "tracker", frozenset({"submit"}), frozenset({"*"}))
        records = [location(SAID_YES), location(SAID_NO, accepting_admissions=False), location(NOT_SAID)]
        records[2]["accepting_admissions"] = None
        receive_submission(session_factory(engine), principal, orjson.dumps(batch(*records)))
        engine.dispose()
        command.downgrade(alembic_config(url), "0013")
        with engine.connect() as connection:
            held = dict(
                connection.execute(
                    sa.text("SELECT cqc_location_id, accepting_admissions FROM location")
                ).all()
            )
            columns = {row[1]: row[3] for row in connection.execute(sa.text("PRAGMA table_info(location)"))}
        assert held == {SAID_YES: 1, SAID_NO: 0, NOT_SAID: 0}
        assert columns["accepting_admissions"] == 1  # NOT NULL again
        command.upgrade(alembic_config(url), "head")
        with engine.connect() as connection:
            columns = {row[1]: row[3] for row in connection.execute(sa.text("PRAGMA table_info(location)"))}
        assert columns["accepting_admissions"] == 0
    finally:
        engine.dispose()
