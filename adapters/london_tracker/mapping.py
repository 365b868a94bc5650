"""London tracker homes -> the national model. Pure functions, no HTTP, no store.

Rules (see ``shared/specs/london-tracker-api.md``):
- each home is validated against ``schemas/london-tracker-home.schema.json`` first; a
  malformed home becomes a :class:`SkippedHome` with a JSON pointer per problem;
- categories map to national vacancy types (``CATEGORY_MAP``); the short-stay categories
  (STEP_DOWN, D2A, RESPITE) are transitional beds and also declare the matching short-stay
  service; two lines that land on one national type are summed (the price from is the
  lowest among those with a bed free now, flexible if either is, reasons combined; parts
  that break the capacity invariant but add up once summed are reported);
- an unknown category is kept with its counts (vacancy type None, source code kept),
  reported, and left out of national totals until mapped;
- closed reasons map through ``CLOSED_REASON_MAP``; funding through ``FUNDING_MAP``;
- boroughs map to ONS codes (``boroughs.py``); an unknown spelling is reported and the
  local authority left empty, never guessed;
- the short-stay weekly cost is the transitional line's price from (the short-stay
  categories' fees), none without one;
- pence become pounds; postcodes are normalised ('nw89aa' -> 'NW8 9AA');
- ``REHAB`` homes are community-rehabilitation providers;
- ``SUSPENDED``: the home stays, nothing is admittable: admission status off and each
  line's admittable beds counted as unavailable (reason: management decision), so the
  capacity still adds up when it did;
- ``CLOSED``: a tombstone, the location becomes inactive (its history stays);
- a home without a CQC ID becomes an :class:`UnmatchedHome`, held for matching.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from adapters.london_tracker.boroughs import BOROUGHS, borough_code
from gateway.model.capacity import LocationUpdate
from gateway.model.vocab import (
    FundingSource,
    NhsRegion,
    ProviderType,
    ShortStayService,
    UnavailableReason,
    VacancyType,
)
from gateway.places import normalise_postcode
from gateway.schemas import Problem, validator

SOURCE = "london"
HOME_SCHEMA = "london-tracker-home.schema.json"

# London category -> (national vacancy type, short-stay service it implies, London's words)
CATEGORY_MAP: dict[str, tuple[VacancyType, ShortStayService | None, str]] = {
    "NURS_GEN": (VacancyType.GENERAL_NURSING, None, "Nursing, general"),
    "NURS_DEM": (VacancyType.DEMENTIA_NURSING, None, "Nursing, dementia"),
    "RES_GEN": (VacancyType.GENERAL_RESIDENTIAL, None, "Residential, general"),
    "RES_DEM": (VacancyType.DEMENTIA_RESIDENTIAL, None, "Residential, dementia"),
    "LD_NURS": (VacancyType.LEARNING_DISABILITY_NURSING, None, "Learning disability, nursing"),
    "LD_RES": (VacancyType.LEARNING_DISABILITY_RESIDENTIAL, None, "Learning disability, residential"),
    "MH_NURS": (VacancyType.MENTAL_HEALTH_NURSING, None, "Mental health, nursing"),
    "MH_RES": (VacancyType.MENTAL_HEALTH_RESIDENTIAL, None, "Mental health, residential"),
    "YPD": (VacancyType.YOUNG_PHYSICALLY_DISABLED, None, "Young physically disabled"),
    "STEP_DOWN": (VacancyType.TRANSITIONAL, ShortStayService.INTERMEDIATE_CARE, "Step-down (short stay)"),
    "D2A": (
        VacancyType.TRANSITIONAL,
        ShortStayService.DISCHARGE_TO_ASSESS,
        "Discharge to assess (short stay)",
    ),
    "RESPITE": (VacancyType.TRANSITIONAL, ShortStayService.RESPITE_CARE, "Respite (short stay)"),
    "REHAB_NHS": (VacancyType.COMMUNITY_REHAB_NHS_LA, None, "Rehabilitation, NHS funded"),
    "REHAB_PRIVATE": (VacancyType.COMMUNITY_REHAB_PRIVATE, None, "Rehabilitation, privately funded"),
}
CLOSED_REASON_MAP: dict[str, tuple[UnavailableReason, str]] = {
    "STAFF_SICKNESS": (UnavailableReason.STAFFING_ABSENCE, "Staff sickness"),
    "STAFF_VACANCY": (UnavailableReason.STAFFING_VACANCIES, "Staff vacancies"),
    "INFECTION_COVID": (UnavailableReason.OUTBREAK_COVID, "Infection control: Covid-19"),
    "INFECTION_OTHER": (UnavailableReason.OUTBREAK_OTHER, "Infection control: other"),
    "REFURB": (UnavailableReason.REFURBISHMENT, "Refurbishment"),
    "SAFEGUARDING": (UnavailableReason.SAFEGUARDING, "Safeguarding"),
    "FUNDING": (UnavailableReason.FINANCIAL_FUNDING, "Funding"),
    "SURGE": (UnavailableReason.SURGE_CAPACITY, "Surge capacity"),
    "MANAGEMENT": (UnavailableReason.MANAGEMENT_DECISION, "Management decision"),
    "VISITING": (UnavailableReason.VISITING, "Visiting"),
    "SINGLE_OCCUPANCY": (UnavailableReason.SINGLE_BED_OCCUPANCY, "Single occupancy"),
    "OTHER": (UnavailableReason.OTHER, "Other"),
}
FUNDING_MAP: dict[str, FundingSource] = {
    "LA": FundingSource.LOCAL_AUTHORITY,
    "ICB": FundingSource.SUB_ICB,
    "SELF_FUNDED": FundingSource.PRIVATE,
    "PHB": FundingSource.PHB,
}
OUT_OF_HOURS = {"YES": True, "NO": False, "UNKNOWN": None}
_PLACEHOLDER_ID = "1-0"

# The maps above as the plain values the model is built from: an enum member's ``.value``
# is a descriptor call, and a full sync reads these maps a few times per bed line.
_CATEGORY_VALUES: dict[str, str] = {code: mapped[0].value for code, mapped in CATEGORY_MAP.items()}
_CATEGORY_SERVICES: dict[str, str] = {
    code: mapped[1].value for code, mapped in CATEGORY_MAP.items() if mapped[1] is not None
}
_REASON_VALUES: dict[str, str] = {code: mapped[0].value for code, mapped in CLOSED_REASON_MAP.items()}
_FUNDING_VALUES: dict[str, str] = {code: funding.value for code, funding in FUNDING_MAP.items()}
_MANAGEMENT_DECISION = UnavailableReason.MANAGEMENT_DECISION.value
_TRANSITIONAL = VacancyType.TRANSITIONAL.value
_LONDON = NhsRegion.LONDON.value
_REHAB = ProviderType.COMMUNITY_REHAB.value
_CARE_HOME = ProviderType.CARE_HOME.value


@dataclass(frozen=True)
class SkippedHome:
    """A malformed home: skipped, with every problem found."""

    home_ref: str | None
    problems: list[Problem]


@dataclass(frozen=True)
class UnmatchedHome:
    """A home without a CQC ID, held until it is matched to the registry."""

    home_ref: str
    name: str
    postcode: str | None
    local_authority: str | None
    record: dict[str, Any]  # the mapped update (JSON), without its CQC ID


@dataclass(frozen=True)
class MappedHome:
    """What one London home became."""

    home_ref: str | None
    update: LocationUpdate | None = None
    unmatched: UnmatchedHome | None = None
    skipped: SkippedHome | None = None
    local_authority_code: str | None = None
    warnings: list[str] = field(default_factory=list)


def _lines(
    beds: list[dict[str, Any]], suspended: bool, warnings: list[str], ref: str
) -> tuple[list[dict[str, Any]], set[str]]:
    parts: dict[str, list[dict[str, Any]]] = {}
    services: set[str] = set()
    for bed in beds:
        code = bed["category"]
        vacancy_type = _CATEGORY_VALUES.get(code)
        if vacancy_type is None:
            warnings.append(f"{ref}: unknown bed category {code!r} kept, left out of national totals")
        elif code in _CATEGORY_SERVICES:
            services.add(_CATEGORY_SERVICES[code])
        reason = _REASON_VALUES.get(bed.get("closed_reason") or "")
        fee = bed.get("weekly_fee_pence")
        line = {
            "vacancy_type": vacancy_type,
            "source_code": code,
            "weekly_price_from": round(fee / 100, 2) if fee is not None else None,
            "maximum_capacity": bed["commissioned"],
            "occupied": bed["occupied"],
            "reserved": bed["on_hold"],
            "admittable": bed["free_now"],
            "unavailable": bed["closed"],
            "unavailable_reasons": [reason] if reason and bed["closed"] else [],
            "flexible": bool(bed.get("interchangeable", False)),
        }
        if suspended and line["admittable"]:
            line["unavailable"] += line["admittable"]
            line["admittable"] = 0
            line["unavailable_reasons"] = sorted({*line["unavailable_reasons"], _MANAGEMENT_DECISION})
        parts.setdefault(vacancy_type or f"unmapped:{code}", []).append(line)
    lines = [_merged(same, warnings, ref) if len(same) > 1 else same[0] for same in parts.values()]
    return lines, services


_COUNTS = ("maximum_capacity", "occupied", "reserved", "admittable", "unavailable")


def _consistent(line: dict[str, Any]) -> bool:
    return bool(line["maximum_capacity"] == sum(line[count] for count in _COUNTS[1:]))


def _merged(parts: list[dict[str, Any]], warnings: list[str], ref: str) -> dict[str, Any]:
    """Lines of one national type as one: counts summed; the price from is the lowest
    among the parts with a bed free now (else among all); flexible if any part is."""
    line = {**parts[0], **{count: sum(part[count] for part in parts) for count in _COUNTS}}
    free = [part for part in parts if part["admittable"]] or parts
    prices = [part["weekly_price_from"] for part in free if part["weekly_price_from"] is not None]
    line["weekly_price_from"] = min(prices) if prices else None
    line["flexible"] = any(part["flexible"] for part in parts)
    line["unavailable_reasons"] = sorted({reason for part in parts for reason in part["unavailable_reasons"]})
    line["source_code"] = "+".join(part["source_code"] for part in parts)
    broken = [part["source_code"] for part in parts if not _consistent(part)]
    if broken and _consistent(line):
        # Summed, their errors cancel out: the line is flagged all the same (the provider's
        # figures did not add up), and the run says which parts broke it.
        line["parts_inconsistent"] = True
        warnings.append(
            f"{ref}: {', '.join(broken)} break the capacity invariant; summed into "
            f"{line['source_code']} they add up, and the line is flagged as inconsistent"
        )
    return line


def _model_problems(invalid: ValidationError) -> list[Problem]:
    """The national model's objections to a mapped home, each at the part of the home it
    came from (a vacancy line's at ``/beds``: lines may be merged) and naming the mapped
    field."""
    problems = []
    for error in invalid.errors(include_url=False, include_input=False):
        where = [str(part) for part in error["loc"]]
        pointer = "/beds" if where and where[0] == "vacancies" else ""
        problems.append(Problem(pointer, f"mapped to {'.'.join(where) or 'the record'}: {error['msg']}"))
    return problems


def map_home(home: Any) -> MappedHome:
    """Map one London home (as the API sent it) to the national model."""
    ref = home.get("home_ref") if isinstance(home, dict) else None
    ref = ref if isinstance(ref, str) else None
    problems = validator(HOME_SCHEMA).problems(home)
    updated_at: datetime | None = None
    if not problems:
        try:
            updated_at = datetime.fromisoformat(home["updated_at"])
        except ValueError:
            problems = [Problem("/updated_at", f"not an ISO 8601 instant: {home['updated_at']!r}")]
        else:
            if updated_at.tzinfo is None:
                problems = [Problem("/updated_at", "has no UTC offset")]
    if problems:
        return MappedHome(ref, skipped=SkippedHome(ref, problems))
    assert ref is not None and updated_at is not None

    warnings: list[str] = []
    code = borough_code(home["borough"])
    if code is None:
        warnings.append(f"{ref}: unknown borough spelling {home['borough']!r}; local authority left empty")
    status = home["status"]
    suspended = status == "SUSPENDED"
    lines, services = _lines(home["beds"], suspended, warnings, ref)
    # The short-stay categories all land on the transitional line: their fees are what a
    # short stay costs here.
    short_stay_cost = next(
        (line["weekly_price_from"] for line in lines if line["vacancy_type"] == _TRANSITIONAL), None
    )
    address = home["address"]
    postcode = normalise_postcode(address["postcode"]) or address["postcode"].strip().upper()
    fields: dict[str, Any] = {
        "cqc_location_id": home["cqc_location_id"] or _PLACEHOLDER_ID,
        "name": home["name"].strip(),
        "nhs_region": _LONDON,
        "local_authority": BOROUGHS[code] if code else None,
        "address": {
            "line1": address.get("line1"),
            "line2": address.get("line2"),
            "town": address.get("town"),
            "postcode": postcode,
        },
        "phone": home.get("phone"),
        "provider_type": _REHAB if home["home_type"] == "REHAB" else _CARE_HOME,
        "short_stay_services": sorted(services),
        "languages": [language.strip() for language in home["languages"] if language.strip()],
        "notes": home.get("facilities"),
        "funding_sources": sorted({_FUNDING_VALUES[f] for f in home["funding_accepted"]}),
        "short_stay_weekly_cost": short_stay_cost,
        "accepting_admissions": bool(home["accepting_admissions"]) and not suspended,
        "out_of_hours_admissions": OUT_OF_HOURS[home["out_of_hours_admissions"]],
        "active": status != "CLOSED",
        "updated_at": updated_at,
        "vacancies": lines,
    }
    try:
        update = LocationUpdate.model_validate(fields)
    except ValidationError as invalid:
        # The schema let it through, the national model does not (merged lines past the
        # model's limits, say): skipped like any malformed home, never the whole page.
        return MappedHome(ref, skipped=SkippedHome(ref, _model_problems(invalid)), warnings=warnings)
    if home["cqc_location_id"] is None:
        record = update.model_dump(mode="json")
        del record["cqc_location_id"]
        held = UnmatchedHome(ref, fields["name"], postcode, fields["local_authority"], record)
        return MappedHome(ref, unmatched=held, local_authority_code=code, warnings=warnings)
    return MappedHome(ref, update=update, local_authority_code=code, warnings=warnings)
