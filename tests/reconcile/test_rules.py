"""Reconciliation rules over plain snapshots: name-mismatch against real registry names."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.cqc.mapping import registry_row
from gateway.reconcile.rules import (
    Kind,
    RegisteredLocation,
    TrackedLocation,
    compare,
    core_name,
    shared_locations,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cqc"


def real_registry() -> dict[str, RegisteredLocation]:
    """The registry rows of the real CQC records kept as fixtures, by location ID."""
    records: list[dict[str, Any]] = orjson.loads((FIXTURES / "locations-south-west-2021.json").read_bytes())
    for name in (
        "location-henley-house.json",
        "location-lucerne-house.json",
        "location-kingswood-house-abridged.json",
    ):
        records.append(orjson.loads((FIXTURES / name).read_bytes()))
    out = {}
    for record in records:
        row = registry_row(record)
        out[row["cqc_location_id"]] = RegisteredLocation(
            row["cqc_location_id"],
            row["name"],
            row["postcode"],
            row["registration_status"],
            row["dormant"],
            row["registered_beds"],
            row["care_home"],
            row["nhs_region"],
            row["local_authority"],
        )
    return out


REGISTRY = real_registry()


def name_findings(tracker_name: str, cqc_id: str) -> list[dict[str, Any]]:
    """The name-mismatch evidence compare() gives for a tracker naming ``cqc_id`` so."""
    reg = REGISTRY[cqc_id]
    tracked = TrackedLocation(
        cqc_id, "tracker", tracker_name, reg.postcode, 10, reg.nhs_region, reg.local_authority, True
    )
    return [o.evidence for o in compare([tracked], REGISTRY) if o.kind == Kind.NAME_MISMATCH]


@pytest.mark.parametrize(
    ("tracker_name", "cqc_id", "cqc_name"),
    [
        ("Kingswood House", "1-1000210669", "Kingswood House Nursing Home"),
        ("Edenmore", "1-2335085897", "Edenmore Nursing Home"),
        ("Park Lane Nursing Home", "1-115908839", "Park Lane Care Home"),
        ("HIGHLANDS BORDERS", "1-1000587219", "Highlands Borders Care Home"),
        ("Henley House Residential Home", "1-10000302982", "Henley House"),
        ("The Meadows Care Home Ltd", "1-120687727", "The Meadows"),
        ("Somerforde", "1-122622007", "Somerforde Limited"),
        ("Southview Nursing & Residential Home", "1-158611920", "Southview"),
        ("Seaton Nursing Home", "1-144214109", "The Seaton"),
        ("Lucerne House (Nursing Home)", "1-125856395", "Lucerne House"),
        ("Tudor Cottage Residential Care Home", "1-137808175", "Tudor Cottage"),
        ("Manor Lodge Rest Home", "1-127057256", "Manor Lodge"),
        ("Bracken Tor House.", "1-133632619", "Bracken Tor House"),
    ],
)
def test_names_that_differ_only_by_kind_of_place_company_suffix_or_punctuation_agree(
    tracker_name: str, cqc_id: str, cqc_name: str
) -> None:
    assert REGISTRY[cqc_id].name == cqc_name  # the real registry's name
    assert name_findings(tracker_name, cqc_id) == []


@pytest.mark.parametrize(
    ("tracker_name", "cqc_id"),
    [
        ("Parkland House", "1-115908839"),  # Park Lane Care Home: another real home's name
        ("Manor Lodge Care Home", "1-133632619"),  # Bracken Tor House
        ("Burridge Farm Nursing Home", "1-137808175"),  # Tudor Cottage
        ("Manor House Nursing Home", "1-127057256"),  # Manor Lodge: one word and the kind shared
        ("Parkland House Care Home", "1-115908839"),  # a shared kind of place does not make them alike
        ("Nursing Home", "1-2335085897"),  # Edenmore Nursing Home: the kind of place alone
    ],
)
def test_different_names_are_still_flagged(tracker_name: str, cqc_id: str) -> None:
    [evidence] = name_findings(tracker_name, cqc_id)
    assert evidence["tracker_name"] == tracker_name
    assert evidence["cqc_name"] == REGISTRY[cqc_id].name
    assert evidence["similarity"] < 80


def test_oak_lodge_is_not_elm_house_nursing_home() -> None:
    reg = dataclasses.replace(REGISTRY["1-2335085897"], name="Elm House Nursing Home")
    renamed = {reg.cqc_location_id: reg}
    tracked = TrackedLocation(reg.cqc_location_id, "t", "Oak Lodge", reg.postcode, 10, None, None, True)
    kinds = [o.kind for o in compare([tracked], renamed)]
    assert kinds == [Kind.NAME_MISMATCH]


@pytest.mark.parametrize(
    ("name", "core"),
    [
        ("Kingswood House Nursing Home Ltd", "kingswood house"),
        ("Southview Nursing & Residential Home", "southview"),
        ("The Meadows, Care Home", "meadows"),
        ("Care Home Nursing Home", "care home"),  # never stripped to nothing
        ("Nursing Home", "nursing home"),
        ("Eldercare Home", "eldercare home"),  # whole words only, not the end of 'eldercare'
        ("St Anne's Care Centre", "st anne s"),
    ],
)
def test_core_name_leaves_off_the_kind_of_place_at_the_end(name: str, core: str) -> None:
    assert core_name(name) == core


def test_a_location_named_by_two_records_of_one_source_is_shared() -> None:
    """Two records of one source naming one CQC ID are found, with every ref naming it; a
    location each of two sources names once is not shared (that is conflicting-reports'
    business), nor is one named once."""
    tracked = {"1-1": TrackedLocation("1-1", "london", "Oak", "E1 1AA", 10, "london", "E09000030", True)}
    links = [
        ("london", "LDN-3", "1-1"),
        ("london", "LDN-1", "1-1"),
        ("london", "LDN-2", "1-1"),
        ("london", "LDN-4", "1-2"),
        ("other", "X-1", "1-2"),
    ]
    (found,) = shared_locations(links, tracked)
    assert (found.kind, found.cqc_location_id, found.source) == (Kind.SHARED_LOCATION, "1-1", "london")
    assert (found.nhs_region, found.local_authority) == ("london", "E09000030")
    assert found.evidence == {"source_refs": ["LDN-1", "LDN-2", "LDN-3"]}
    assert list(shared_locations(links[3:], tracked)) == []
