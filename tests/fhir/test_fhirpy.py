"""An independent FHIR client (fhirpy), unchanged, against the gateway over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome as OperationOutcomeError

from gateway.api.app import create_app
from gateway.places import haversine_km
from gateway.settings import Settings
from simulators.server import run_in_thread
from tests.fhir.conftest import HENLEY

pytestmark = pytest.mark.integration
MANCHESTER = (53.48, -2.24)


def test_fhirpy_near_sorted_paged_with_revincluded_services(
    settings: Settings, read_token: str, national: list[dict[str, Any]]
) -> None:
    with run_in_thread(create_app(settings)) as base:
        client = SyncFHIRClient(f"{base}/fhir", authorization=f"Bearer {read_token}")
        search = (
            client.resources("Location")
            .search(near=f"{MANCHESTER[0]}|{MANCHESTER[1]}|400|km")
            .sort("near")
            .limit(1)
            .include("Location", "organization")
            .revinclude("HealthcareService", "location")
        )
        # fetch_all follows the next links to the end (one location a page here).
        locations = search.fetch_all()
        assert [loc.id for loc in locations] == ["1-101", "1-102", HENLEY]
        distances = [
            haversine_km(*MANCHESTER, loc["position"]["latitude"], loc["position"]["longitude"])
            for loc in locations
        ]
        assert distances == sorted(distances)
        assert search.count() == 3

        first_page = search.fetch_raw()
        included = {
            (e.resource.resourceType, e.resource.id) for e in first_page.entry if e.search.mode == "include"
        }
        assert included == {
            ("HealthcareService", "1-101-general-nursing"),
            ("HealthcareService", "1-101-dementia-nursing"),
            ("Organization", "1-200000001"),
        }
        distance = first_page.entry[0].search.extension[0]
        assert distance.url == "http://hl7.org/fhir/StructureDefinition/location-distance"

        services = client.resources("HealthcareService").search(location=f"Location/{HENLEY}").fetch_all()
        assert [s.id for s in services] == [f"{HENLEY}-general-residential"]
        assert client.reference("Location", "1-102").to_resource()["name"] == "Beech Lodge"

        with pytest.raises(OperationOutcomeError):
            client.resources("Location").search(colour="blue").fetch()
