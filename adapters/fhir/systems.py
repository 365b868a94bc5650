"""Every URI the gateway mints or uses in FHIR, in one place.

The gateway's canonical base is ``CANONICAL``. Identifier systems, CodeSystems, ValueSets,
extensions (StructureDefinitions) and SearchParameters live under it, stable and published
by the gateway itself (``/fhir/NamingSystem``, ``/fhir/CodeSystem``...). Codes of the
national vocabularies are the ``gateway.model.vocab`` enumeration values.
"""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import quote

from gateway.model.vocab import (
    CqcRating,
    FundingSource,
    NhsRegion,
    ProviderType,
    QualityFlag,
    ShortStayService,
    UnavailableReason,
    VacancyType,
)

FHIR_VERSION = "4.0.1"
CANONICAL = "https://fhir.care-capacity-gateway.uk"

# --- identifier systems (NamingSystems the gateway publishes; the ODS ones are NHS's) -----
CQC_LOCATION_ID = f"{CANONICAL}/Id/cqc-location-id"
CQC_PROVIDER_ID = f"{CANONICAL}/Id/cqc-provider-id"
ODS_SITE_CODE = "https://fhir.nhs.uk/Id/ods-site-code"
ODS_ORGANIZATION_CODE = "https://fhir.nhs.uk/Id/ods-organization-code"


def code_system(name: str) -> str:
    return f"{CANONICAL}/CodeSystem/{name}"


def value_set(name: str) -> str:
    return f"{CANONICAL}/ValueSet/{name}"


def extension(name: str) -> str:
    return f"{CANONICAL}/StructureDefinition/{name}"


def search_parameter(name: str) -> str:
    return f"{CANONICAL}/SearchParameter/{name}"


def source_uri(source: str) -> str:
    """``meta.source``: which source said so (a pushing tracker's token name, 'london'...).

    A uri has no whitespace (R4's ``uri`` is ``\\S*``) and a token's name may have some
    ("Leeds Tracker"): the name is percent-encoded as one path segment."""
    return f"{CANONICAL}/source/{quote(source, safe='')}"


# --- the national vocabularies as CodeSystems (name -> enumeration) -----------------------
VOCABULARY_CODE_SYSTEMS: dict[str, type[StrEnum]] = {
    "vacancy-type": VacancyType,
    "short-stay-service": ShortStayService,
    "unavailable-reason": UnavailableReason,
    "funding-source": FundingSource,
    "nhs-region": NhsRegion,
    "provider-type": ProviderType,
    "cqc-rating": CqcRating,
    "data-quality-flag": QualityFlag,
}
VACANCY_TYPE = code_system("vacancy-type")
SHORT_STAY_SERVICE = code_system("short-stay-service")
UNAVAILABLE_REASON = code_system("unavailable-reason")
FUNDING_SOURCE = code_system("funding-source")
NHS_REGION = code_system("nhs-region")
PROVIDER_TYPE = code_system("provider-type")
CQC_RATING = code_system("cqc-rating")
DATA_QUALITY_FLAG = code_system("data-quality-flag")


class ServiceCategory(StrEnum):
    """HealthcareService.category: what kind of stay a vacancy line is for."""

    LONG_TERM = "long-term"
    SHORT_STAY = "short-stay"
    COMMUNITY_REHAB = "community-rehab"

    @property
    def display(self) -> str:
        return {
            "long-term": "Long term care",
            "short-stay": "Short stay",
            "community-rehab": "Community rehabilitation",
        }[self.value]


SERVICE_CATEGORY = code_system("service-category")

# London tracker codes (the sources of the ConceptMaps to the national vocabularies).
LONDON_BED_CATEGORY = code_system("london-bed-category")
LONDON_CLOSED_REASON = code_system("london-closed-reason")

# --- external code systems ------------------------------------------------------------
BCP47 = "urn:ietf:bcp:47"
V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
LOCATION_PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
LOCATION_DISTANCE = "http://hl7.org/fhir/StructureDefinition/location-distance"
UCUM = "http://unitsofmeasure.org"
ISO_4217 = "urn:iso:std:iso:4217"

# --- extensions the gateway defines -----------------------------------------------------
# On HealthcareService: the bed counts of one vacancy line (complex; sub-extensions by
# their short names below).
EXT_BED_AVAILABILITY = extension("bed-availability")
BED_AVAILABILITY_PARTS = (
    "maximumCapacity",  # valueUnsignedInt
    "occupied",  # valueUnsignedInt
    "reserved",  # valueUnsignedInt
    "admittable",  # valueUnsignedInt
    "unavailable",  # valueUnsignedInt
    "vacanciesTotal",  # valueUnsignedInt: maximum capacity - occupied, never negative
    "unavailableReason",  # valueCoding (0..*), unavailable-reason
    "weeklyPriceFrom",  # valueMoney (GBP)
    "flexible",  # valueBoolean
    "consistent",  # valueBoolean: capacity = occupied + reserved + admittable + unavailable
    "providerUpdated",  # valueDateTime: when the provider last updated (the source's clock)
)
# On Location and HealthcareService: admissions (complex: accepting, outOfHours).
EXT_ADMISSIONS = extension("admissions")
# On Location: CQC overall rating (complex: rating valueCoding, date valueDate).
EXT_CQC_RATING = extension("cqc-rating")
# On Location: CQC registered bed count (valueUnsignedInt).
EXT_REGISTERED_BEDS = extension("registered-beds")
# On Location and HealthcareService: data-quality flags (valueCoding, 0..*).
EXT_DATA_QUALITY = extension("data-quality-flag")
# On Location: NHS region (valueCoding) and local authority / ICB (valueString).
EXT_NHS_REGION = extension("nhs-region")
EXT_LOCAL_AUTHORITY = extension("local-authority")
EXT_ICB = extension("integrated-care-board")
# On Location: short-stay weekly cost (valueMoney) and contracts (valueString, 0..*).
EXT_SHORT_STAY_WEEKLY_COST = extension("short-stay-weekly-cost")
EXT_CONTRACT_LOCAL_AUTHORITY = extension("contract-local-authority")
EXT_CONTRACT_SUB_ICB = extension("contract-sub-icb")
# On HealthcareService: a language spoken that has no BCP-47 tag in the gateway's table
# (valueString, 0..*); communication is bound (required) to the languages, so it cannot go there.
EXT_OTHER_LANGUAGE = extension("other-language")

# --- gateway search parameters (published as SearchParameter resources) ----------------
SP_ADMITTABLE = search_parameter("healthcareservice-admittable")
SP_WEEKLY_PRICE = search_parameter("healthcareservice-weekly-price")
SP_SERVICE_NEAR = search_parameter("healthcareservice-near")
