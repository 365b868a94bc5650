"""The vacancy search's parameters: parsed, checked, and turned into one query object.

Filters combine with AND; several values of one filter with OR. Every bad value is a 422
naming the parameter and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from gateway.errors import Unprocessable
from gateway.model.vocab import (
    LONG_TERM_VACANCY_TYPES,
    CqcRating,
    FundingSource,
    NhsRegion,
    ProviderType,
    ShortStayService,
    VacancyType,
)
from gateway.places import DISTRICT, normalise_postcode

MAX_RADIUS_KM = 500.0
_KEYWORD_SEPARATORS = re.compile(r"[,;]")
# A postcode's district alone ('LS1') or its sector ('LS1 4'): searched from the district.
_PART_OF_POSTCODE = re.compile(rf"^({DISTRICT.pattern.strip('^$')})(?: [0-9])?$")
UPDATED_WITHIN = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
MAX_UPDATED_WITHIN_DAYS = 3650  # ten years: as good as 'any'; a longer one overflows a date


class Sort(StrEnum):
    DISTANCE = "distance"
    ADMITTABLE = "admittable"
    PRICE = "price"
    FRESHNESS = "freshness"


@dataclass
class SearchQuery:
    """A parsed vacancy search."""

    postcode: str | None = None
    radius_km: float | None = None
    local_authorities: list[str] = field(default_factory=list)
    icbs: list[str] = field(default_factory=list)
    sub_icbs: list[str] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    regulated_activities: list[str] = field(default_factory=list)
    specialisms: list[str] = field(default_factory=list)
    service_types: list[str] = field(default_factory=list)
    contract_las: list[str] = field(default_factory=list)
    contract_sub_icbs: list[str] = field(default_factory=list)
    stay: str | None = None  # long-term or short-stay
    short_stay_services: list[str] = field(default_factory=list)
    accepting_today: bool | None = None
    vacancy_types: list[str] = field(default_factory=list)
    ratings: list[str] = field(default_factory=list)
    brands: list[str] = field(default_factory=list)
    max_weekly_price: float | None = None
    languages: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    funding: list[str] = field(default_factory=list)
    updated_within: timedelta | None = None
    out_of_hours: bool | None = None
    provider_types: list[str] = field(default_factory=list)
    sort: Sort = Sort.DISTANCE
    page: int = 1
    page_size: int = 20


def refuse(parameter: str, message: str) -> Unprocessable:
    return Unprocessable(f"{parameter}: {message}", errors=[{"parameter": parameter, "message": message}])


def codes(parameter: str, values: list[str], vocabulary: type[StrEnum]) -> list[str]:
    """Vocabulary codes from codes or display words; an unknown value is refused."""
    out = []
    for value in values:
        try:
            out.append(vocabulary(value).value)
        except ValueError:
            try:
                out.append(vocabulary.from_display(value).value)  # type: ignore[attr-defined]
            except ValueError:
                allowed = ", ".join(m.value for m in vocabulary)
                raise refuse(parameter, f"unknown value {value!r}; allowed: {allowed}") from None
    return sorted(set(out))


def keywords(values: list[str]) -> list[str]:
    """The notes keywords searched for, lower case: each value split at commas and
    semicolons, as a search box is filled in ('Hoist, Bariatric' is two keywords, each
    to be found; 'pets allowed' stays one), spacing made single, blanks left out."""
    found = (" ".join(part.split()).lower() for value in values for part in _KEYWORD_SEPARATORS.split(value))
    return sorted({k for k in found if k})


def parse_duration(parameter: str, value: str | None) -> timedelta | None:
    """'24h', '7d', 'any', or an ISO-like count of hours/days ('36h', '3d')."""
    if value is None or value == "any":
        return None
    if value in UPDATED_WITHIN:
        return UPDATED_WITHIN[value]
    unit, number = value[-1:], value[:-1]
    if unit in ("h", "d") and number.isascii() and number.isdigit() and int(number) > 0:
        days = int(number) / 24 if unit == "h" else int(number)
        if days > MAX_UPDATED_WITHIN_DAYS:
            raise refuse(parameter, f"{value!r} is too long: at most {MAX_UPDATED_WITHIN_DAYS}d (or any)")
        return timedelta(hours=int(number)) if unit == "h" else timedelta(days=int(number))
    raise refuse(
        parameter, f"{value!r} is not a duration: use 24h, 7d, any, or a number of hours (36h) or days (3d)"
    )


def area_code(value: str) -> str:
    """An ICB or sub-ICB code as compared: upper case, as the registry writes them ('qop'
    is 'QOP')."""
    return value.strip().upper()


def area_codes(values: list[str]) -> list[str]:
    """The codes searched for, each as compared (``area_code``), once."""
    return sorted({area_code(v) for v in values})


def text_key(value: str) -> str:
    """A name or list value as the search compares it (a local authority, brand,
    specialism, service type, regulated activity, contract, language): lower case, spacing
    made single."""
    return " ".join(value.lower().split())


# A local authority's name as compared: as any other name.
authority_key = text_key


def district_searched(value: str) -> str | None:
    """The district of a searched postcode district or sector ('ls1', 'LS1 4' -> 'LS1'),
    in any case and spacing; None when ``value`` is neither."""
    match = _PART_OF_POSTCODE.match(" ".join(value.split()).upper())
    return match.group(1) if match else None


def check_postcode(value: str | None, radius_km: float | None) -> tuple[str | None, float | None]:
    """The searched postcode written the standard way (a whole postcode, else its district
    when only the district or sector was given), and the radius; bad ones refused."""
    if radius_km is not None and radius_km <= 0:
        raise refuse("radius_km", "must be greater than 0")
    if radius_km is not None and radius_km > MAX_RADIUS_KM:
        raise refuse("radius_km", f"must be at most {MAX_RADIUS_KM:g} km")
    if value is None:
        if radius_km is not None:
            raise refuse("radius_km", "needs a postcode to measure from")
        return None, None
    normal = normalise_postcode(value) or district_searched(value)
    if normal is None:
        raise refuse("postcode", f"{value!r} is not a UK postcode (e.g. LS1 4AP) or postcode district (LS1)")
    return normal, radius_km


def stay_types(stay: str | None, vacancy_types: list[str]) -> tuple[str | None, list[str]]:
    if stay is None:
        return None, vacancy_types
    if stay not in ("long-term", "short-stay"):
        raise refuse("stay", f"unknown value {stay!r}; allowed: long-term, short-stay")
    long_term = {v.value for v in LONG_TERM_VACANCY_TYPES}
    wrong = [v for v in vacancy_types if v not in long_term]
    if wrong:
        raise refuse("vacancy_type", f"{', '.join(wrong)} is not a long-term vacancy type")
    return stay, vacancy_types


VOCABULARIES = {
    "region": NhsRegion,
    "vacancy_type": VacancyType,
    "rating": CqcRating,
    "funding": FundingSource,
    "short_stay_service": ShortStayService,
    "provider_type": ProviderType,
}
