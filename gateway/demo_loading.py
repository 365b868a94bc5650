"""Reading a generated demo data set: push batches per region, London homes, registry."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.orm import Session, sessionmaker

from gateway.model.capacity import LocationUpdate
from gateway.model.vocab import NhsRegion

PUSH_BATCH_LIMIT = 5000


def ensure_demo_data(data_dir: Path, seed: int = 2023, now: datetime | None = None) -> Path:
    """Generate the demo data set into ``data_dir`` unless it is already there.

    ``now`` is the instant the data's update times lead up to (the demo passes the current
    hour, so ages look as they would live; benchmarks and tests keep the fixed default).
    """
    if not (data_dir / "manifest.json").exists():
        from gateway.demoset import generate

        generate(data_dir, seed=seed, now=now)
    return data_dir


def push_files(data_dir: Path) -> dict[NhsRegion, list[Path]]:
    """Each non-London region's batch files, in order."""
    files: dict[NhsRegion, list[Path]] = {}
    for path in sorted((data_dir / "push").glob("*.json")):
        stem = path.stem
        region_code = stem.rsplit("-", 1)[0] if stem.rsplit("-", 1)[-1].isdigit() else stem
        files.setdefault(NhsRegion(region_code), []).append(path)
    return files


def london_homes(data_dir: Path) -> list[dict[str, Any]]:
    homes: list[dict[str, Any]] = orjson.loads((data_dir / "london" / "homes.json").read_bytes())
    return homes


def london_as_push_records(homes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """London homes mapped to the national model, written in the push format.

    Homes the mapping cannot place (malformed, or without a CQC ID) are left out, as are
    lines of unmapped categories (the push format has no place for them).
    """
    from adapters.london_tracker.mapping import map_home

    records: list[dict[str, Any]] = []
    for home in homes:
        update = map_home(home).update
        if update is None:
            continue
        record = update.model_dump(mode="json")
        record["vacancies"] = [
            {k: v for k, v in line.items() if k != "source_code"}
            for line in record["vacancies"]
            if line["vacancy_type"] is not None
        ]
        records.append(record)
    return records


def national_push_bodies(data_dir: Path) -> list[bytes]:
    """The whole national demo set as push bodies: every region's batches, and London's
    homes mapped and packed into batches of the push format."""
    ensure_demo_data(data_dir)
    bodies = [path.read_bytes() for paths in push_files(data_dir).values() for path in paths]
    records = london_as_push_records(london_homes(data_dir))
    for start in range(0, len(records), PUSH_BATCH_LIMIT):
        bodies.append(orjson.dumps({"locations": records[start : start + PUSH_BATCH_LIMIT]}))
    return bodies


def load_national_demo(data: Path, factory: sessionmaker[Session]) -> dict[str, Any]:
    """Load a demo set straight into a store (no HTTP): the registry (locations and
    providers, as a full CQC sync leaves them), every region's push
    batches through the push path, and London through its mapping, homes without a CQC
    ID held for matching. Returns the manifest. For tests and benchmarks."""
    from adapters.cqc.mapping import provider_row, registry_row
    from adapters.london_tracker.mapping import map_home
    from gateway.auth import Principal
    from gateway.ingest.service import apply_updates
    from gateway.ingest.submissions import receive_submission
    from gateway.store.db import transaction
    from gateway.store.registry import replace_registry_locations, replace_registry_providers
    from gateway.store.tables import HeldRecord, utcnow

    now = utcnow()
    rows = [
        {**registry_row(r), "synced_at": now}
        for r in json.loads((data / "cqc" / "locations.json").read_bytes())
    ]
    providers = [
        {**provider_row(r), "synced_at": now}
        for r in json.loads((data / "cqc" / "providers.json").read_bytes())
    ]
    with transaction(factory) as session:
        replace_registry_locations(session, rows)
        replace_registry_providers(session, providers)
    for region, files in push_files(data).items():
        principal = Principal(
            f"token-{region.value}",
            f"tracker-{region.value}",
            frozenset({"submit"}),
            frozenset({region.value}),
        )
        for path in files:
            outcome = receive_submission(factory, principal, path.read_bytes())
            if outcome.body["summary"]["rejected"]:
                raise ValueError(f"{path.name}: records rejected")
    with transaction(factory) as session:
        updates: list[tuple[int, LocationUpdate]] = []
        for home in london_homes(data):
            mapped = map_home(home)
            if mapped.update is not None:
                updates.append((len(updates), mapped.update))
            elif mapped.unmatched is not None:
                held = mapped.unmatched
                session.add(
                    HeldRecord(
                        source="london",
                        source_ref=held.home_ref,
                        name=held.name,
                        postcode=held.postcode,
                        local_authority=held.local_authority,
                        record=held.record,
                        first_seen=now,
                        last_seen=now,
                    )
                )
        apply_updates(session, source="london", updates=updates, received_at=now)
    return json.loads((data / "manifest.json").read_bytes())
