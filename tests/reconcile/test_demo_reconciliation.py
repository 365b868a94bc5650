"""Reconciliation on the national demo data finds every planted discrepancy, and matching
links the London homes that lack a CQC ID to the right registry locations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from gateway.demo_loading import load_national_demo
from gateway.demoset import generate
from gateway.reconcile.service import reconcile
from gateway.store import reconciliation as queries
from gateway.store.db import transaction
from gateway.store.tables import RegistryLocation, RegistryProvider


@pytest.fixture
def demo(
    tmp_path_factory: pytest.TempPathFactory, factory: sessionmaker[Session]
) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("demo")
    generate(data)
    yield load_national_demo(data, factory)


def test_every_planted_discrepancy_is_found_and_homes_are_matched(
    demo: dict[str, Any], factory: sessionmaker[Session]
) -> None:
    with transaction(factory) as session:
        summary = reconcile(session)  # as the scheduler and `gateway reconcile` call it
    print("\nreconciliation on the national demo data:", json.dumps(summary.as_dict(), indent=1))
    with factory() as session:
        _, findings = queries.list_findings(session, statuses=["open"])
        held = {h.source_ref: h for h in queries.held_records(session)}
    found: dict[str, set[str]] = {}
    for finding in findings:
        found.setdefault(finding.kind, set()).add(finding.cqc_location_id or finding.source_ref or "")
    planted = demo["planted"]
    expectations = {
        "unknown-to-cqc": planted["unknown_to_cqc"],
        "deregistered-reporting": planted["deregistered_reporting"],
        "dormant-reporting": planted["dormant_reporting"],
        "capacity-above-registered": planted["capacity_above_registered"],
        "postcode-mismatch": planted["postcode_differs"],
        "name-mismatch": planted["name_differs"],
        "conflicting-reports": planted["reported_by_two_trackers"],
        "not-reported": planted["registered_not_reported"],
    }
    for kind, ids in expectations.items():
        missing = set(ids) - found.get(kind, set())
        assert not missing, f"{kind}: {len(missing)} planted not found"
    # Nothing unplanted is reported for the rules with exact plants.
    for kind in (
        "unknown-to-cqc",
        "deregistered-reporting",
        "dormant-reporting",
        "capacity-above-registered",
        "postcode-mismatch",
        "conflicting-reports",
    ):
        assert found.get(kind, set()) == set(expectations[kind]), kind

    truth = planted["london_without_cqc_id"]
    linked = {ref: h.matched_cqc_location_id for ref, h in held.items() if h.status == "linked"}
    wrong = {ref: cqc for ref, cqc in linked.items() if truth[ref] != cqc}
    assert not wrong, f"wrong automatic links: {wrong}"
    assert len(linked) >= 0.95 * len(truth), f"linked {len(linked)} of {len(truth)}"
    # With every source in, the occupancy report by NHS region (care homes) reproduces the
    # national tracker's reference table within 1% per cell.
    from gateway.demoset.figures import REFERENCE
    from gateway.search.reports import occupancy

    with factory() as session:
        report = occupancy(session, group_by="nhs_region", provider_types=["care-home"])
    rows = {row["group"]: row for row in report["rows"]}
    print("occupancy by NHS region:", json.dumps(rows, indent=1))
    for region, (locations, capacity, admittable, unavailable, reserved, occupied) in REFERENCE.items():
        row = rows[region.value]
        got = [
            row["locations_with_vacancy_data"],
            row["maximum_capacity"],
            row["admittable"],
            row["unavailable"],
            row["reserved"],
            row["occupied"],
            row["vacancies_total"],
        ]
        want = [locations, capacity, admittable, unavailable, reserved, occupied, capacity - occupied]
        for name, have, expected in zip(
            ["locations", "capacity", "admittable", "unavailable", "reserved", "occupied", "vacancies"],
            got,
            want,
            strict=True,
        ):
            assert abs(have - expected) <= 0.01 * expected, (region.value, name, have, expected)
    with factory() as session:
        for ref, cqc_id in linked.items():
            assert (
                session.execute(
                    sa.text("SELECT source FROM location WHERE cqc_location_id = :i"), {"i": cqc_id}
                ).scalar()
                == "london"
            ), ref


def test_the_registry_holds_every_provider_its_locations_name(
    demo: dict[str, Any], factory: sessionmaker[Session]
) -> None:
    """As a full CQC sync leaves it: the providers too, so Organizations carry the
    registry's names (benchmarks and tests load the demo this way)."""
    with factory() as session:
        named = set(session.scalars(sa.select(RegistryLocation.cqc_provider_id).distinct()))
        held = dict(session.execute(sa.select(RegistryProvider.cqc_provider_id, RegistryProvider.name)).all())
    named.discard(None)
    assert len(named) > 1_000
    assert named <= set(held) and all(held.values())
