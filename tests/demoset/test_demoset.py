"""The national demo set: deterministic, valid in each source's format, and faithful to the
reference table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.demoset import generate
from gateway.demoset.figures import REFERENCE
from gateway.model.vocab import NhsRegion
from gateway.schemas import validator

SUBMISSION = validator("tracker-submission.schema.json")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    generate(out, seed=7)
    return out


def load(path: Path) -> Any:
    return json.loads(path.read_bytes())


def test_same_seed_same_bytes(demo: Path, tmp_path: Path) -> None:
    generate(tmp_path, seed=7)
    for path in sorted(demo.rglob("*.json")):
        assert path.read_bytes() == (tmp_path / path.relative_to(demo)).read_bytes(), path.name
    other = tmp_path / "other"
    generate(other, seed=8)
    assert (other / "london" / "homes.json").read_bytes() != (demo / "london" / "homes.json").read_bytes()


def test_push_batches_are_valid_submissions(demo: Path) -> None:
    files = sorted((demo / "push").glob("*.json"))
    assert {f.stem for f in files} == {r.value for r in NhsRegion if r is not NhsRegion.LONDON}
    for path in files:
        assert SUBMISSION.problems(load(path)) == [], path.name


def _figures_from_files(demo: Path) -> dict[str, list[int]]:
    """Per region: locations, capacity, admittable, unavailable, reserved, occupied — read
    back from the written files, care homes only, as the gateway would map them."""
    out: dict[str, list[int]] = {}
    for path in (demo / "push").glob("*.json"):
        for record in load(path)["locations"]:
            if record["provider_type"] != "care-home":
                continue
            row = out.setdefault(record["nhs_region"], [0] * 6)
            row[0] += 1
            for line in record["vacancies"]:
                for i, key in enumerate(
                    ["maximum_capacity", "admittable", "unavailable", "reserved", "occupied"], start=1
                ):
                    row[i] += line[key]
    manifest = load(demo / "manifest.json")
    border = {h for h in manifest["planted"]["reported_by_two_trackers"]}
    row = out.setdefault("london", [0] * 6)
    for home in load(demo / "london" / "homes.json"):
        if home["home_type"] == "REHAB" or home["status"] == "CLOSED" or home["cqc_location_id"] in border:
            continue
        row[0] += 1
        for bed in home["beds"]:
            if bed["category"] == "HOSPICE_STEP":
                continue
            for i, key in enumerate(["commissioned", "free_now", "closed", "on_hold", "occupied"], start=1):
                row[i] += bed[key]
    return out


def test_regions_reproduce_the_reference_table_within_one_percent(demo: Path) -> None:
    figures = _figures_from_files(demo)
    for region, (locations, capacity, admittable, unavailable, reserved, occupied) in REFERENCE.items():
        got = figures[region.value]
        for name, want, have in zip(
            ["locations", "capacity", "admittable", "unavailable", "reserved", "occupied"],
            [locations, capacity, admittable, unavailable, reserved, occupied],
            got,
            strict=True,
        ):
            assert abs(have - want) <= 0.01 * want, (region.value, name, have, want)


def test_london_homes_follow_the_tracker_contract(demo: Path) -> None:
    homes = load(demo / "london" / "homes.json")
    refs = [h["home_ref"] for h in homes]
    assert len(refs) == len(set(refs))
    assert all(r.startswith("LDN-") and len(r) == 10 for r in refs)
    assert {h["status"] for h in homes} == {"OPEN", "SUSPENDED", "CLOSED"}
    assert {h["home_type"] for h in homes} >= {"NURSING", "RESIDENTIAL", "REHAB"}
    offsets = {h["updated_at"][-6:] for h in homes} | {h["updated_at"][-1] for h in homes}
    assert {"Z", "+00:00", "+01:00"} <= offsets
    without = [h for h in homes if h["cqc_location_id"] is None]
    assert 0.015 <= len(without) / len(homes) <= 0.025
    broken = [
        b
        for h in homes
        for b in h["beds"]
        if b["commissioned"] != b["occupied"] + b["free_now"] + b["on_hold"] + b["closed"]
    ]
    assert broken, "some lines break the invariant, as the upstream's do"


def test_registry_covers_the_trackers_with_planted_discrepancies(demo: Path) -> None:
    manifest = load(demo / "manifest.json")
    registry = {r["locationId"]: r for r in load(demo / "cqc" / "locations.json")}
    planted = manifest["planted"]
    pushed = {r["cqc_location_id"] for p in (demo / "push").glob("*.json") for r in load(p)["locations"]}
    assert set(planted["unknown_to_cqc"]) <= pushed and not set(planted["unknown_to_cqc"]) & set(registry)
    assert all(registry[i]["registrationStatus"] == "Deregistered" for i in planted["deregistered_reporting"])
    assert all(registry[i]["dormancy"] == "Y" for i in planted["dormant_reporting"])
    assert not set(planted["registered_not_reported"]) & pushed
    total_care_homes = sum(r[0] for r in REFERENCE.values())
    assert abs(len(planted["capacity_above_registered"]) - total_care_homes * 0.01) < 10
    assert abs(len(planted["deregistered_reporting"]) - 0.005 * total_care_homes) < 10
    record = registry[next(iter(sorted(pushed - set(planted["unknown_to_cqc"]))))]
    for key in [
        "locationId",
        "providerId",
        "name",
        "registrationStatus",
        "numberOfBeds",
        "careHome",
        "postalCode",
        "onspdLatitude",
        "onspdLongitude",
        "region",
        "localAuthority",
        "onspdIcbCode",
        "regulatedActivities",
        "gacServiceTypes",
        "specialisms",
        "inspectionCategories",
    ]:
        assert key in record, key
    assert record["inspectionCategories"][0]["primary"] == "true"
    assert manifest["community_rehab_providers"] == 260
    # The CQC registers no beds for a community rehabilitation provider (0 where none).
    rehab = [r for r in registry.values() if r["careHome"] == "N"]
    assert len(rehab) > 200 and all(r["numberOfBeds"] == 0 for r in rehab)
    assert all(r["numberOfBeds"] > 0 for r in registry.values() if r["careHome"] == "Y")
