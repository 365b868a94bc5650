"""Registry rows written by syncs: only what changed is written again."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapters.cqc.mapping import provider_row, registry_row
from gateway.store import registry as registry_queries
from gateway.store.db import transaction
from gateway.store.tables import RegistryGeneration, RegistryLocation, RegistryProvider, utcnow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cqc"


def rows() -> list[dict[str, Any]]:
    records = orjson.loads((FIXTURES / "locations-south-west-2021.json").read_bytes())
    return [registry_row(r) for r in records[:3]]


def held(factory: sessionmaker[Session]) -> dict[str, RegistryLocation]:
    with factory() as session:
        return {r.cqc_location_id: r for r in session.scalars(sa.select(RegistryLocation))}


def generation(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(sa.select(RegistryGeneration.generation)) or 0)


def test_a_row_synced_again_unchanged_is_only_marked_synced(factory: sessionmaker[Session]) -> None:
    first, later = utcnow() - timedelta(hours=1), utcnow()
    fetched = rows()
    with transaction(factory) as session:
        written, unchanged = registry_queries.sync_registry_locations(session, fetched, first)
    assert (written, unchanged) == ([r["cqc_location_id"] for r in fetched], [])
    before, counter = held(factory), generation(factory)

    edited = [dict(fetched[0], registered_beds=(fetched[0]["registered_beds"] or 0) + 5), *fetched[1:]]
    # A derived column alone (the mapping changed, the record did not) is a change too.
    edited[1] = dict(edited[1], nhs_region="london")
    beds, region, same = (r["cqc_location_id"] for r in fetched)
    with transaction(factory) as session:
        assert registry_queries.sync_registry_locations(session, edited, later) == ([beds, region], [same])
    after = held(factory)
    assert generation(factory) == counter + 1  # one write for the batch's changed rows
    assert after[same].generation == before[same].generation and after[same].synced_at == later
    assert after[same].model_dump(exclude={"synced_at"}) == before[same].model_dump(exclude={"synced_at"})
    for changed in (beds, region):
        assert after[changed].generation == counter + 1 and after[changed].synced_at == later
    assert after[beds].registered_beds == edited[0]["registered_beds"]
    assert after[region].nhs_region == "london"


def test_nothing_changed_takes_no_generation(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        registry_queries.sync_registry_locations(session, rows(), utcnow())
    counter = generation(factory)
    with transaction(factory) as session:
        again = registry_queries.sync_registry_locations(session, rows(), utcnow())
        assert again == ([], [r["cqc_location_id"] for r in rows()])
        assert registry_queries.sync_registry_locations(session, [], utcnow()) == ([], [])
    assert generation(factory) == counter


def test_providers_synced_again_are_written_only_when_changed(factory: sessionmaker[Session]) -> None:
    first, later = utcnow() - timedelta(hours=1), utcnow()
    fetched = [
        provider_row({"providerId": "1-101", "name": "Greensleeves Homes Trust", "locationIds": ["1-1"]}),
        provider_row({"providerId": "1-102", "name": "Devon Care Ltd", "ownershipType": "Organisation"}),
    ]
    with transaction(factory) as session:
        assert registry_queries.sync_registry_providers(session, fetched, first) == (["1-101", "1-102"], [])
    renamed = [dict(fetched[0], name="Greensleeves Care"), fetched[1]]
    with transaction(factory) as session:
        assert registry_queries.sync_registry_providers(session, renamed, later) == (["1-101"], ["1-102"])
        assert registry_queries.held_provider_ids(session, ["1-101", "1-102", "1-103"]) == {"1-101", "1-102"}
    with factory() as session:
        held = {p.cqc_provider_id: p for p in session.scalars(sa.select(RegistryProvider))}
    assert held["1-101"].name == "Greensleeves Care" and held["1-101"].synced_at == later
    assert held["1-102"].name == "Devon Care Ltd" and held["1-102"].synced_at == later


def test_a_full_sync_fetches_the_providers_of_the_locations_it_synced(factory: sessionmaker[Session]) -> None:
    started = utcnow()
    before, during = started - timedelta(days=1), started + timedelta(minutes=5)
    fetched = rows()  # three locations of three providers
    with transaction(factory) as session:
        registry_queries.sync_registry_locations(session, fetched[:1], before)  # not synced in this one
        registry_queries.sync_registry_locations(session, fetched[1:], during)
        registry_queries.sync_registry_providers(
            session, [provider_row({"providerId": fetched[2]["cqc_provider_id"], "name": "Done"})], during
        )
    with factory() as session:
        wanted = registry_queries.providers_to_fetch_since(session, started)
    assert wanted == {fetched[1]["cqc_provider_id"]}


def test_tracked_providers_are_those_held_or_named_by_a_registry_location(
    factory: sessionmaker[Session],
) -> None:
    fetched = rows()  # three locations of three providers
    named = fetched[0]["cqc_provider_id"]
    with transaction(factory) as session:
        registry_queries.sync_registry_locations(session, fetched[:1], utcnow())
        registry_queries.sync_registry_providers(
            session, [provider_row({"providerId": "1-101", "name": "Held Care Ltd"})], utcnow()
        )
    with factory() as session:
        found = registry_queries.tracked_provider_ids(session, [named, "1-101", "1-999", named])
        assert found == {named, "1-101"}
        assert registry_queries.tracked_provider_ids(session, []) == set()
