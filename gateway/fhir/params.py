"""FHIR search parameters: what each resource type supports, and their parsers.

``SEARCH_PARAMETERS`` is the single declaration of what the gateway's FHIR search
understands; the CapabilityStatement is generated from it, and a parameter not in it is
refused (400) unless the client asks for lenient handling. Values of one parameter
separated by commas are ORed; a repeated parameter is ANDed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from adapters.fhir import systems as S
from gateway.errors import BadRequest
from gateway.folding import fold


class ParamType(StrEnum):
    TOKEN = "token"
    STRING = "string"
    DATE = "date"
    NUMBER = "number"
    REFERENCE = "reference"
    SPECIAL = "special"
    URI = "uri"


@dataclass(frozen=True, slots=True)
class SearchParam:
    name: str
    type: ParamType
    documentation: str
    definition: str | None = None  # canonical URL of the SearchParameter resource


def _base(name: str, resource: str) -> str:
    return f"http://hl7.org/fhir/SearchParameter/{resource}-{name}"


def _common(resource: str) -> list[SearchParam]:
    return [
        SearchParam("_id", ParamType.TOKEN, "Logical id", "http://hl7.org/fhir/SearchParameter/Resource-id"),
        SearchParam(
            "_lastUpdated",
            ParamType.DATE,
            "When the gateway recorded the version (prefixes eq, ne, gt, ge, lt, le, sa, eb)",
            "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
        ),
    ]


NEAR_DOC = (
    "latitude|longitude|distance|units (units km or [mi_us], default km; distance default 50 km, "
    "at most 500 km); great-circle distance; use _sort=near for closest first"
)

SEARCH_PARAMETERS: dict[str, dict[str, SearchParam]] = {
    "Location": {
        p.name: p
        for p in [
            *_common("Location"),
            SearchParam("near", ParamType.SPECIAL, NEAR_DOC, _base("near", "Location")),
            SearchParam(
                "address-postalcode",
                ParamType.STRING,
                "Postcode (starts with)",
                _base("address-postalcode", "Location"),
            ),
            SearchParam(
                "address-city",
                ParamType.STRING,
                "Town (starts with; case and accents ignored)",
                _base("address-city", "Location"),
            ),
            SearchParam(
                "identifier",
                ParamType.TOKEN,
                f"CQC location ID ({S.CQC_LOCATION_ID}) or ODS site code ({S.ODS_SITE_CODE})",
                _base("identifier", "Location"),
            ),
            SearchParam(
                "name",
                ParamType.STRING,
                "Name (starts with, case and accents ignored; :contains, :exact)",
                _base("name", "Location"),
            ),
            SearchParam(
                "organization",
                ParamType.REFERENCE,
                "Managing organization (provider)",
                _base("organization", "Location"),
            ),
            SearchParam("status", ParamType.TOKEN, "active | inactive", _base("status", "Location")),
        ]
    },
    "HealthcareService": {
        p.name: p
        for p in [
            *_common("HealthcareService"),
            SearchParam(
                "location", ParamType.REFERENCE, "The location", _base("location", "HealthcareService")
            ),
            SearchParam(
                "organization",
                ParamType.REFERENCE,
                "The provider",
                _base("organization", "HealthcareService"),
            ),
            SearchParam(
                "service-category",
                ParamType.TOKEN,
                f"long-term | short-stay | community-rehab ({S.SERVICE_CATEGORY})",
                _base("service-category", "HealthcareService"),
            ),
            SearchParam(
                "service-type",
                ParamType.TOKEN,
                f"Vacancy type ({S.VACANCY_TYPE})",
                _base("service-type", "HealthcareService"),
            ),
            SearchParam(
                "characteristic",
                ParamType.TOKEN,
                f"Short-stay service offered ({S.SHORT_STAY_SERVICE})",
                _base("characteristic", "HealthcareService"),
            ),
            SearchParam(
                "active",
                ParamType.TOKEN,
                "true (lines of open locations) | false (lines of closed locations, and vacancy types a "
                "location stopped offering, as a read gives them); without it, search finds the lines "
                "locations hold now, open or closed, not the retired ones",
                _base("active", "HealthcareService"),
            ),
            SearchParam(
                "admittable", ParamType.NUMBER, "Beds vacant and accepting admissions today", S.SP_ADMITTABLE
            ),
            SearchParam("weekly-price", ParamType.NUMBER, "Weekly price from, GBP", S.SP_WEEKLY_PRICE),
            SearchParam(
                "near", ParamType.SPECIAL, "The service's location is near: " + NEAR_DOC, S.SP_SERVICE_NEAR
            ),
        ]
    },
    "Organization": {
        p.name: p
        for p in [
            SearchParam(
                "_id", ParamType.TOKEN, "Logical id (CQC provider ID)", _common("Organization")[0].definition
            ),
            SearchParam(
                "identifier",
                ParamType.TOKEN,
                f"CQC provider ID ({S.CQC_PROVIDER_ID})",
                _base("identifier", "Organization"),
            ),
            SearchParam(
                "name",
                ParamType.STRING,
                "Name (starts with, case and accents ignored; :contains, :exact)",
                _base("name", "Organization"),
            ),
            SearchParam(
                "active",
                ParamType.TOKEN,
                "true (providers a location names now) | false (retired: no location names them any "
                "more); without it, search finds active ones only",
                _base("active", "Organization"),
            ),
        ]
    },
}

# Result parameters every search accepts; ``_cursor`` is the gateway's own paging key;
# ``_totalMethod`` is the spelling of ``_total`` some clients send (fhirpy's count()).
RESULT_PARAMETERS = {
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_total",
    "_totalMethod",
    "_format",
    "_cursor",
}
SORTS = {
    "Location": {"near", "_id", "_lastUpdated"},
    "HealthcareService": {"near", "_id", "_lastUpdated", "admittable", "weekly-price"},
    "Organization": {"_id", "name"},
}
INCLUDES = {
    "Location": {"Location:organization"},
    "HealthcareService": {"HealthcareService:location", "HealthcareService:organization"},
    "Organization": set(),
}
REVINCLUDES = {
    "Location": {"HealthcareService:location"},
    "HealthcareService": set(),
    "Organization": {"Location:organization", "HealthcareService:organization"},
}
# The resource type each reference parameter points to (the same for every type here):
# its only type modifier (``organization:Organization``) and the target an ``_include``
# may name (``Location:organization:Organization``).
REFERENCE_TARGETS = {"organization": "Organization", "location": "Location"}
STRING_MODIFIERS = {"", "contains", "exact"}
DEFAULT_COUNT, MAX_COUNT = 20, 500
DEFAULT_NEAR_KM, MAX_NEAR_KM = 50.0, 500.0
KM_PER_MILE = 1.609344


def bad(parameter: str, message: str) -> BadRequest:
    return BadRequest(f"{parameter}: {message}", parameter=parameter)


# --- tokens, references, strings -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    system: str | None  # None: any system; "": no system
    code: str | None  # None: any code of ``system`` (``system|``)


def parse_token(parameter: str, value: str) -> Token:
    """``code``, ``system|code``, ``|code`` (no system) or ``system|`` (any code in it)."""
    if not value:
        raise bad(parameter, "empty value")
    if "|" not in value:
        return Token(None, value)
    system, _, code = value.partition("|")
    if not system and not code:
        raise bad(parameter, f"{value!r}: a system or a code is needed around '|'")
    return Token(system, code or None)


def parse_reference(parameter: str, value: str, resource_type: str) -> str:
    """The logical id in ``Type/id``, a full URL ending so, or a bare id."""
    found = re.search(rf"(?:^|/){resource_type}/([A-Za-z0-9\-.]{{1,64}})(?:/_history/\d+)?$", value)
    if found:
        return found.group(1)
    if re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", value):
        return value
    raise bad(parameter, f"{value!r} is not a reference to a {resource_type}")


def like_prefix(text: str) -> str:
    """A LIKE pattern matching folded strings (``fold``) that start with ``text``, folded
    likewise (escape character '\\')."""
    escaped = fold(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


# --- dates and numbers with prefixes ---------------------------------------------------

PREFIXES = ("eq", "ne", "gt", "ge", "lt", "le", "sa", "eb")
_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def _split_prefix(value: str) -> tuple[str, str]:
    if value[:2] in PREFIXES and len(value) > 2 and not value[:2].isdigit():
        return value[:2], value[2:]
    return "eq", value


@dataclass(frozen=True, slots=True)
class Range:
    """A comparison: ``prefix`` against the half-open range [low, high) the value denotes."""

    prefix: str
    low: datetime | Decimal
    high: datetime | Decimal


def parse_date(parameter: str, value: str) -> Range:
    prefix, text = _split_prefix(value)
    match = _DATE.match(text)
    if not match:
        raise bad(parameter, f"{value!r} is not a FHIR date (e.g. ge2026-11-20 or lt2026-11-20T10:00:00Z)")
    try:
        year, month, day = int(match["y"]), int(match["m"] or 1), int(match["d"] or 1)
        if match["time"]:
            tz = match["tz"] or "Z"
            low = datetime.fromisoformat(
                f"{match['y']}-{match['m']}-{match['d']}T{match['time']}{'+00:00' if tz == 'Z' else tz}"
            ).astimezone(UTC)
            step = (
                timedelta(microseconds=1)
                if "." in match["time"]
                else (timedelta(seconds=1) if match["time"].count(":") == 2 else timedelta(minutes=1))
            )
            return Range(prefix, low, low + step)
        low = datetime(year, month, day, tzinfo=UTC)
        if match["d"]:
            high = low + timedelta(days=1)
        elif match["m"]:
            high = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
        else:
            high = datetime(year + 1, 1, 1, tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        # Out of range too: an instant at the edge of the calendar (year 1 or 9999) that
        # its offset or its end would take past it.
        raise bad(parameter, f"{value!r}: {exc}") from None
    return Range(prefix, low, high)


def parse_number(parameter: str, value: str) -> Range:
    prefix, text = _split_prefix(value)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise bad(parameter, f"{value!r} is not a number (e.g. ge2 or le900)") from None
    if not number.is_finite():
        raise bad(parameter, f"{value!r} is not a number")
    exponent = number.as_tuple().exponent
    half = Decimal(5) * Decimal(10) ** (int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)
    return (
        Range(prefix, number - half, number + half)
        if prefix in ("eq", "ne")
        else Range(prefix, number, number)
    )


def matches_range(value: datetime | Decimal | float | int | None, r: Range) -> bool:
    """Does a target value (a point) satisfy the comparison?"""
    if value is None:
        return False
    if isinstance(value, int | float):
        value = Decimal(str(value))
    low, high = r.low, r.high
    match r.prefix:
        case "eq":
            return low <= value < high  # type: ignore[operator]
        case "ne":
            return not (low <= value < high)  # type: ignore[operator]
        case "gt" | "sa":
            return value > low if isinstance(value, Decimal) else value >= high  # type: ignore[operator]
        case "ge":
            return value >= low  # type: ignore[operator]
        case "lt" | "eb":
            return value < low  # type: ignore[operator]
        case "le":
            return value <= low if isinstance(value, Decimal) else value < high  # type: ignore[operator]
    return False  # pragma: no cover - prefixes are checked when parsed


# --- near -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Near:
    latitude: float
    longitude: float
    radius_km: float


def parse_near(parameter: str, value: str) -> Near:
    parts = value.replace("%7C", "|").replace("%7c", "|").split("|")
    if len(parts) < 2 or len(parts) > 4:
        raise bad(parameter, f"{value!r}: expected latitude|longitude|distance|units")
    try:
        latitude, longitude = float(parts[0]), float(parts[1])
        distance = float(parts[2]) if len(parts) > 2 and parts[2] else DEFAULT_NEAR_KM
    except ValueError:
        raise bad(parameter, f"{value!r}: latitude, longitude and distance must be numbers") from None
    if not all(math.isfinite(number) for number in (latitude, longitude, distance)):
        raise bad(parameter, f"{value!r}: latitude, longitude and distance must be finite numbers")
    if not (-90 <= latitude <= 90) or not (-180 <= longitude <= 180):
        raise bad(parameter, f"{value!r}: latitude comes first (-90..90), then longitude (-180..180)")
    units = parts[3] if len(parts) > 3 and parts[3] else "km"
    if units not in ("km", "[mi_us]", "mi"):
        raise bad(parameter, f"{value!r}: units must be km or [mi_us]")
    radius = distance * (KM_PER_MILE if units != "km" else 1.0)
    if radius <= 0:
        raise bad(parameter, f"{value!r}: the distance must be greater than 0")
    if radius > MAX_NEAR_KM:
        raise bad(parameter, f"{value!r}: the distance may be at most {MAX_NEAR_KM:g} km")
    return Near(latitude, longitude, radius)


def parse_count(value: str | None) -> int:
    if value is None:
        return DEFAULT_COUNT
    if not (value.isascii() and value.isdigit()):  # '²' is a digit to Python, not to int()
        raise bad("_count", f"{value!r} is not a whole number")
    return min(int(value), MAX_COUNT)
