"""Places in England: postcode districts with their centroids, postcodes, distances.

``gateway/data/postcode_districts.csv`` holds England's active postcode districts.
Contains OS data © Crown copyright and database right; Contains Royal Mail data © Royal
Mail copyright and database right; Source: Office for National Statistics licensed under
the Open Government Licence v3.0.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from gateway.model.vocab import NhsRegion

DISTRICTS_CSV = Path(__file__).parent / "data" / "postcode_districts.csv"
EARTH_RADIUS_KM = 6371.0088

# ONS regions (as in the district table) to NHS England regions.
ONS_TO_NHS_REGION = {
    "East of England": NhsRegion.EAST_OF_ENGLAND,
    "London": NhsRegion.LONDON,
    "East Midlands": NhsRegion.MIDLANDS,
    "West Midlands": NhsRegion.MIDLANDS,
    "North East": NhsRegion.NORTH_EAST_AND_YORKSHIRE,
    "Yorkshire and The Humber": NhsRegion.NORTH_EAST_AND_YORKSHIRE,
    "North West": NhsRegion.NORTH_WEST,
    "South East": NhsRegion.SOUTH_EAST,
    "South West": NhsRegion.SOUTH_WEST,
}

# A UK postcode: outward code (area, district) then inward code (sector, unit).
POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?) ?([0-9][A-Z]{2})$")
DISTRICT = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class District:
    """A postcode district (outward code) and its centroid."""

    code: str
    latitude: float
    longitude: float
    local_authority: str
    ons_region: str
    post_town: str
    population: int

    @property
    def nhs_region(self) -> NhsRegion:
        return ONS_TO_NHS_REGION[self.ons_region]


@cache
def load_districts() -> dict[str, District]:
    """England's active postcode districts by outward code."""
    with DISTRICTS_CSV.open(newline="") as handle:
        return {
            row["district"]: District(
                row["district"],
                float(row["latitude"]),
                float(row["longitude"]),
                row["local_authority"],
                row["ons_region"],
                row["post_town"],
                int(row["population"] or 0),
            )
            for row in csv.DictReader(handle)
        }


@lru_cache(maxsize=65536)  # an ingest asks for each record's postcode several times
def normalise_postcode(text: str) -> str | None:
    """'nw89aa' or ' NW8  9AA ' -> 'NW8 9AA'; None when it is not a postcode's shape."""
    compact = _SPACES.sub("", text or "").upper()
    match = POSTCODE.match(compact)
    return f"{match.group(1)} {match.group(2)}" if match else None


def district_of(postcode: str | None) -> str | None:
    """The outward code of a postcode, or None."""
    normal = normalise_postcode(postcode or "")
    return normal.split(" ")[0] if normal else None


def district_centroid(postcode: str | None) -> tuple[float, float] | None:
    """The centroid of the postcode's district, when England's table has it."""
    code = district_of(postcode)
    found = load_districts().get(code or "")
    return (found.latitude, found.longitude) if found else None


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, a)))


def bounding_box(lat: float, lon: float, radius_km: float) -> tuple[float, float, float, float]:
    """A box around a point that holds every place within ``radius_km`` of it.

    Degrees of latitude are ~111 km; longitude shrinks with the cosine of latitude. The
    box is widened slightly so that homes at the edge are never cut off before the exact
    distance is computed."""
    dlat = math.degrees(radius_km / EARTH_RADIUS_KM) * 1.01
    cos = max(math.cos(math.radians(abs(lat) + dlat)), 0.01)
    dlon = math.degrees(radius_km / (EARTH_RADIUS_KM * cos)) * 1.01
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon
