"""FHIR string search ignores case and accents ("after both have been normalized by case
and accent"): 'elan' finds 'Élan Court' on SQLite and PostgreSQL alike, by the folded
name and town each location is stored with; ``:exact`` still compares as written."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient

from gateway.folding import fold
from gateway.store.db import alembic_config, upgrade
from tests.factories import location
from tests.fhir.conftest import push
from tests.fhir.helpers import get, ids

ACCENTED = location(
    "1-301",
    name="Élan Court",
    provider={"cqc_provider_id": "1-2301", "name": "Société Générale de Soins"},
    address={"line1": "1 Rue", "town": "Évesham", "postcode": "WR11 1AA"},
)
PLAIN = location(
    "1-302", name="Elm Lodge", address={"line1": "2 Way", "town": "Eversley", "postcode": "RG27 0AA"}
)
SHARP_S = location("1-303", name="STRAßE House")


@pytest.fixture
def homes(client: TestClient, tracker: str) -> None:
    push(client, tracker, ACCENTED, PLAIN, SHARP_S)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"name": "elan"}, ["1-301"]),
        ({"name": "ÉLAN"}, ["1-301"]),
        ({"name": "Elan Court"}, ["1-301"]),
        ({"name": "e"}, ["1-301", "1-302"]),
        ({"name:contains": "COURT"}, ["1-301"]),
        ({"name:contains": "é"}, ["1-301", "1-302", "1-303"]),  # 'e' in every name, folded
        ({"name:exact": "Élan Court"}, ["1-301"]),
        ({"name:exact": "Elan Court"}, []),  # exact compares as written
        ({"name": "strasse"}, ["1-303"]),
        ({"name": "straße"}, ["1-303"]),
        ({"address-city": "eves"}, ["1-301"]),
        ({"address-city": "ÉVE"}, ["1-301", "1-302"]),
        ({"address-city:exact": "Evesham"}, []),
    ],
)
def test_location_string_search_ignores_case_and_accents(
    client: TestClient, read_token: str, homes: None, params: dict[str, str], expected: list[str]
) -> None:
    assert sorted(ids(get(client, read_token, "/fhir/Location", **params))) == expected


def test_organization_name_search_ignores_case_and_accents(
    client: TestClient, read_token: str, homes: None
) -> None:
    assert ids(get(client, read_token, "/fhir/Organization", name="societe generale")) == ["1-2301"]
    assert ids(get(client, read_token, "/fhir/Organization", **{"name:contains": "GENERALE"})) == ["1-2301"]
    assert (
        ids(get(client, read_token, "/fhir/Organization", **{"name:exact": "Societe Generale de Soins"}))
        == []
    )


def test_the_migration_folds_the_names_of_locations_already_held(
    client: TestClient, read_token: str, homes: None, database_url: str, engine: sa.Engine
) -> None:
    command.downgrade(alembic_config(database_url), "0019")  # as stored before: no folded names
    try:
        with engine.connect() as connection:
            columns = {c["name"] for c in sa.inspect(connection).get_columns("location")}
        assert "name_folded" not in columns
    finally:
        upgrade(database_url)
    with engine.connect() as connection:
        folded = connection.execute(
            sa.text("SELECT cqc_location_id, name_folded, town_folded FROM location ORDER BY 1")
        ).all()
    assert [tuple(row) for row in folded] == [
        ("1-301", "elan court", "evesham"),
        ("1-302", "elm lodge", "eversley"),
        ("1-303", "strasse house", "manchester"),
    ]
    assert ids(get(client, read_token, "/fhir/Location", name="elan")) == ["1-301"]


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Ashgrove", "ashgrove"),
        ("Élan", "elan"),
        ("CAFÉ", "cafe"),
        ("Straße", "strasse"),
        ("ﬁeld", "field"),  # a ligature, by its compatibility decomposition
        ("Ørsted", "ørsted"),  # no base letter and mark: kept
        ("", ""),
    ],
)
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded
