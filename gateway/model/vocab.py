"""The national vocabularies of the capacity model, as enumerations.

Each member's value is a stable machine code (used in the push format, the store, query
parameters and as FHIR CodeSystem codes); ``display`` gives the users' words, exactly as
the national Capacity Tracker shows them (see ``shared/specs/capacity-model.md``).
"""

from __future__ import annotations

from enum import StrEnum


class _Vocabulary(StrEnum):
    """A coded vocabulary whose members carry the users' wording."""

    @property
    def display(self) -> str:
        return _DISPLAY[self]

    @classmethod
    def from_display(cls, text: str) -> _Vocabulary:
        """Find a member by its display text (case-insensitive), or raise ValueError."""
        wanted = text.strip().casefold()
        for member in cls:
            if member.display.casefold() == wanted or member.value == wanted:
                return member
        raise ValueError(f"{text!r} is not a {cls.__name__}")


class VacancyType(_Vocabulary):
    """One vacancy line per location and vacancy type."""

    COMMUNITY_CARE = "community-care"
    DEMENTIA_NURSING = "dementia-nursing"
    DEMENTIA_RESIDENTIAL = "dementia-residential"
    GENERAL_NURSING = "general-nursing"
    GENERAL_RESIDENTIAL = "general-residential"
    LEARNING_DISABILITY_NURSING = "learning-disability-nursing"
    LEARNING_DISABILITY_RESIDENTIAL = "learning-disability-residential"
    MENTAL_HEALTH_NURSING = "mental-health-nursing"
    MENTAL_HEALTH_RESIDENTIAL = "mental-health-residential"
    TRANSITIONAL = "transitional"
    YOUNG_PHYSICALLY_DISABLED = "young-physically-disabled"
    COMMUNITY_REHAB_NHS_LA = "community-rehab-nhs-la"
    COMMUNITY_REHAB_PRIVATE = "community-rehab-private"

    @property
    def is_community_rehab(self) -> bool:
        return self in (VacancyType.COMMUNITY_REHAB_NHS_LA, VacancyType.COMMUNITY_REHAB_PRIVATE)


LONG_TERM_VACANCY_TYPES = tuple(v for v in VacancyType if not v.is_community_rehab)
COMMUNITY_REHAB_VACANCY_TYPES = tuple(v for v in VacancyType if v.is_community_rehab)


class ShortStayService(_Vocabulary):
    """Short-stay services a location offers (filled from its long-term vacancies)."""

    DISCHARGE_TO_ASSESS = "discharge-to-assess"
    INTERMEDIATE_CARE = "intermediate-care"
    REABLEMENT_SUPPORT = "reablement-support"
    REHABILITATION = "rehabilitation"
    RESPITE_CARE = "respite-care"


class UnavailableReason(_Vocabulary):
    """Why vacant beds are not available for admission."""

    STAFFING_ABSENCE = "staffing-absence"
    STAFFING_VACANCIES = "staffing-vacancies"
    OUTBREAK_COVID = "outbreak-covid"
    OUTBREAK_OTHER = "outbreak-other"
    REFURBISHMENT = "refurbishment"
    SAFEGUARDING = "safeguarding"
    FINANCIAL_FUNDING = "financial-funding"
    SURGE_CAPACITY = "surge-capacity"
    MANAGEMENT_DECISION = "management-decision"
    VISITING = "visiting"
    SINGLE_BED_OCCUPANCY = "single-bed-occupancy"
    OTHER = "other"


class FundingSource(_Vocabulary):
    """Funding sources a location accepts."""

    SUB_ICB = "sub-icb"
    LOCAL_AUTHORITY = "local-authority"
    PRIVATE = "private"
    PHB = "phb"


class NhsRegion(_Vocabulary):
    """The seven NHS England regions."""

    EAST_OF_ENGLAND = "east-of-england"
    LONDON = "london"
    MIDLANDS = "midlands"
    NORTH_EAST_AND_YORKSHIRE = "north-east-and-yorkshire"
    NORTH_WEST = "north-west"
    SOUTH_EAST = "south-east"
    SOUTH_WEST = "south-west"


class ProviderType(_Vocabulary):
    """What kind of place a location is."""

    CARE_HOME = "care-home"
    COMMUNITY_REHAB = "community-rehab"


# The vacancy types each kind of provider offers (the spec's lists): long-term types are
# care homes', community rehabilitation types community rehabilitation providers'.
OFFERED_VACANCY_TYPES: dict[str, frozenset[str]] = {
    ProviderType.CARE_HOME.value: frozenset(v.value for v in LONG_TERM_VACANCY_TYPES),
    ProviderType.COMMUNITY_REHAB.value: frozenset(v.value for v in COMMUNITY_REHAB_VACANCY_TYPES),
}


def offers(provider_type: str | None, vacancy_type: str | None) -> bool:
    """Whether a provider of ``provider_type`` (a code; None: a care home, the model's
    default) offers beds of the national ``vacancy_type`` (a code). A line of a type its
    provider does not offer is kept and flagged ``type-not-offered-by-provider``, and, as a
    line of an unmapped code (``vacancy_type`` None, offered by nobody), counts in no total."""
    if vacancy_type is None:
        return False
    offered = OFFERED_VACANCY_TYPES.get(provider_type or ProviderType.CARE_HOME.value)
    return offered is not None and vacancy_type in offered


class CqcRating(_Vocabulary):
    """CQC overall rating."""

    OUTSTANDING = "outstanding"
    GOOD = "good"
    REQUIRES_IMPROVEMENT = "requires-improvement"
    INADEQUATE = "inadequate"
    NOT_RATED = "not-rated"


class QualityFlag(_Vocabulary):
    """Data-quality findings attached to a vacancy line or a location."""

    CAPACITY_INVARIANT_BROKEN = "capacity-invariant-broken"
    REASONS_WITHOUT_UNAVAILABLE = "reasons-without-unavailable"
    UNAVAILABLE_WITHOUT_REASON = "unavailable-without-reason"
    ENTERED_CAPACITY_ABOVE_REGISTERED = "entered-capacity-above-registered"
    UNMAPPED_VACANCY_TYPE = "unmapped-vacancy-type"
    TYPE_NOT_OFFERED_BY_PROVIDER = "type-not-offered-by-provider"


_DISPLAY: dict[StrEnum, str] = {
    VacancyType.COMMUNITY_CARE: "Community Care",
    VacancyType.DEMENTIA_NURSING: "Dementia Nursing",
    VacancyType.DEMENTIA_RESIDENTIAL: "Dementia Residential",
    VacancyType.GENERAL_NURSING: "General Nursing",
    VacancyType.GENERAL_RESIDENTIAL: "General Residential",
    VacancyType.LEARNING_DISABILITY_NURSING: "Learning Disability Nursing",
    VacancyType.LEARNING_DISABILITY_RESIDENTIAL: "Learning Disability Residential",
    VacancyType.MENTAL_HEALTH_NURSING: "Mental Health Nursing",
    VacancyType.MENTAL_HEALTH_RESIDENTIAL: "Mental Health Residential",
    VacancyType.TRANSITIONAL: "Transitional",
    VacancyType.YOUNG_PHYSICALLY_DISABLED: "YPD - Young Physically Disabled",
    VacancyType.COMMUNITY_REHAB_NHS_LA: "Community Rehabilitation - NHS or LA funded",
    VacancyType.COMMUNITY_REHAB_PRIVATE: "Community Rehabilitation - Private funded",
    ShortStayService.DISCHARGE_TO_ASSESS: "Discharge to Assess",
    ShortStayService.INTERMEDIATE_CARE: "Intermediate Care",
    ShortStayService.REABLEMENT_SUPPORT: "Reablement Support",
    ShortStayService.REHABILITATION: "Rehabilitation",
    ShortStayService.RESPITE_CARE: "Respite Care",
    UnavailableReason.STAFFING_ABSENCE: "Staffing Levels (Absence)",
    UnavailableReason.STAFFING_VACANCIES: "Staffing Levels (Vacancies)",
    UnavailableReason.OUTBREAK_COVID: "Outbreaks (Covid)",
    UnavailableReason.OUTBREAK_OTHER: "Outbreaks (Other)",
    UnavailableReason.REFURBISHMENT: "Refurbishment",
    UnavailableReason.SAFEGUARDING: "Safeguarding",
    UnavailableReason.FINANCIAL_FUNDING: "Financial Funding",
    UnavailableReason.SURGE_CAPACITY: "Surge Capacity",
    UnavailableReason.MANAGEMENT_DECISION: "Management Decision",
    UnavailableReason.VISITING: "Visiting",
    UnavailableReason.SINGLE_BED_OCCUPANCY: "Single Bed Occupancy",
    UnavailableReason.OTHER: "Other",
    FundingSource.SUB_ICB: "Sub ICB",
    FundingSource.LOCAL_AUTHORITY: "Local Authority",
    FundingSource.PRIVATE: "Private",
    FundingSource.PHB: "PHB",
    NhsRegion.EAST_OF_ENGLAND: "East of England",
    NhsRegion.LONDON: "London",
    NhsRegion.MIDLANDS: "Midlands",
    NhsRegion.NORTH_EAST_AND_YORKSHIRE: "North East and Yorkshire",
    NhsRegion.NORTH_WEST: "North West",
    NhsRegion.SOUTH_EAST: "South East",
    NhsRegion.SOUTH_WEST: "South West",
    ProviderType.CARE_HOME: "Care home",
    ProviderType.COMMUNITY_REHAB: "Community rehabilitation provider",
    CqcRating.OUTSTANDING: "Outstanding",
    CqcRating.GOOD: "Good",
    CqcRating.REQUIRES_IMPROVEMENT: "Requires improvement",
    CqcRating.INADEQUATE: "Inadequate",
    CqcRating.NOT_RATED: "No published rating",
    QualityFlag.CAPACITY_INVARIANT_BROKEN: (
        "Maximum capacity does not equal occupied + reserved + admittable + unavailable"
    ),
    QualityFlag.REASONS_WITHOUT_UNAVAILABLE: "Reasons given but no beds are unavailable",
    QualityFlag.UNAVAILABLE_WITHOUT_REASON: "Beds unavailable but no reason given",
    QualityFlag.ENTERED_CAPACITY_ABOVE_REGISTERED: (
        "Total entered capacity is above the CQC registered bed count"
    ),
    QualityFlag.UNMAPPED_VACANCY_TYPE: (
        "The source's vacancy type is not mapped to a national type; left out of totals"
    ),
    QualityFlag.TYPE_NOT_OFFERED_BY_PROVIDER: (
        "The vacancy type is not one this kind of provider offers (long-term types are care "
        "homes', community rehabilitation types community rehabilitation providers'); left out "
        "of totals"
    ),
}
