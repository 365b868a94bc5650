"""The extensions the gateway defines, as one table, and their StructureDefinitions.

``EXTENSIONS`` is the single list of every extension the gateway may put on a resource:
its URL (from ``adapters.fhir.systems``), where it sits, its value type or, for a complex
extension, its parts. The published StructureDefinitions are generated from it, and tests
of the rendered resources check against it that nothing undeclared is ever sent.

Element ids and paths follow the FHIR conventions for extension definitions
(``Extension.extension:admittable.value[x]``...). Only the differential is given; a
consumer's validator builds the snapshot from the base Extension definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.fhir import systems as S

EXTENSION_BASE = "http://hl7.org/fhir/StructureDefinition/Extension"


@dataclass(frozen=True)
class ExtensionPart:
    """One sub-extension of a complex extension (its ``url`` is the short name)."""

    name: str
    value_type: str  # a FHIR data type code: "unsignedInt", "Coding", "Money"...
    short: str
    min: int = 0
    max: str = "1"
    binding: str | None = None  # ValueSet URL (required strength) for coded values


@dataclass(frozen=True)
class ExtensionDefinition:
    """An extension the gateway defines: a simple one has ``value_type``, a complex one ``parts``."""

    url: str
    name: str  # computer-friendly (StructureDefinition.name)
    title: str
    context: tuple[str, ...]  # the elements it sits on
    description: str
    value_type: str | None = None
    parts: tuple[ExtensionPart, ...] = ()
    max: str = "1"  # how many times it may appear on one element
    binding: str | None = None
    pattern: dict[str, Any] | None = None  # fixed parts of the value, e.g. a Coding's system

    @property
    def id(self) -> str:
        """The StructureDefinition id: the last segment of the URL."""
        return self.url.rsplit("/", 1)[1]

    @property
    def is_complex(self) -> bool:
        return bool(self.parts)

    def part_names(self) -> tuple[str, ...]:
        """The short names of the parts (empty for a simple extension)."""
        return tuple(part.name for part in self.parts)


_GBP = {"currency": "GBP"}

EXTENSIONS: tuple[ExtensionDefinition, ...] = (
    ExtensionDefinition(
        url=S.EXT_BED_AVAILABILITY,
        name="BedAvailability",
        title="Bed availability",
        context=("HealthcareService",),
        description=(
            "The bed counts of one vacancy line (one location and vacancy type) as the provider "
            "last reported them: maximum capacity, occupied, reserved, admittable and unavailable "
            "beds with the reasons, total vacancies, the weekly price from, and whether the "
            "figures add up (maximum capacity = occupied + reserved + admittable + unavailable)."
        ),
        parts=(
            ExtensionPart("maximumCapacity", "unsignedInt", "Maximum capacity: beds of this vacancy type"),
            ExtensionPart("occupied", "unsignedInt", "Occupied beds (residents)"),
            ExtensionPart(
                "reserved", "unsignedInt", "Vacant beds reserved, pending a named person's admission"
            ),
            ExtensionPart(
                "admittable", "unsignedInt", "Vacant beds accepting admissions: can safely admit today"
            ),
            ExtensionPart("unavailable", "unsignedInt", "Vacant beds not available for admission"),
            ExtensionPart(
                "vacanciesTotal",
                "unsignedInt",
                "Vacancies (total): maximum capacity - occupied, never negative",
            ),
            ExtensionPart(
                "unavailableReason",
                "Coding",
                "Why vacant beds are not available for admission",
                max="*",
                binding=S.value_set("unavailable-reason"),
            ),
            ExtensionPart("weeklyPriceFrom", "Money", "Weekly price from, in pounds (GBP)"),
            ExtensionPart("flexible", "boolean", "Beds can flex across vacancy types"),
            ExtensionPart(
                "consistent",
                "boolean",
                "The figures add up: maximum capacity = occupied + reserved + admittable + unavailable",
            ),
            ExtensionPart(
                "providerUpdated",
                "dateTime",
                "When the provider last updated the figures (the source's clock)",
            ),
        ),
    ),
    ExtensionDefinition(
        url=S.EXT_ADMISSIONS,
        name="Admissions",
        title="Admissions",
        context=("Location", "HealthcareService"),
        description=(
            "Whether the location is accepting admissions, and whether it admits out of hours; "
            "a part is absent where the source did not say, and the extension where it said neither."
        ),
        parts=(
            ExtensionPart("accepting", "boolean", "Accepting admissions (absent: not known)"),
            ExtensionPart("outOfHours", "boolean", "Accepting out-of-hours admissions (absent: not known)"),
        ),
    ),
    ExtensionDefinition(
        url=S.EXT_CQC_RATING,
        name="CqcRating",
        title="CQC overall rating",
        context=("Location",),
        description="The Care Quality Commission's overall rating of the location, and its date.",
        parts=(
            ExtensionPart("rating", "Coding", "CQC overall rating", min=1, binding=S.value_set("cqc-rating")),
            ExtensionPart("date", "date", "Date of the rating"),
        ),
    ),
    ExtensionDefinition(
        url=S.EXT_REGISTERED_BEDS,
        name="RegisteredBeds",
        title="CQC registered beds",
        context=("Location",),
        description="The number of beds the location is registered with the CQC for.",
        value_type="unsignedInt",
    ),
    ExtensionDefinition(
        url=S.EXT_DATA_QUALITY,
        name="DataQualityFlag",
        title="Data-quality flag",
        context=("Location", "HealthcareService"),
        description=(
            "A problem the gateway found in what a source reported (e.g. figures that do not add "
            "up). The figures are published as the source sent them, with the flag; one extension "
            "per flag."
        ),
        value_type="Coding",
        max="*",
        binding=S.value_set("data-quality-flag"),
    ),
    ExtensionDefinition(
        url=S.EXT_NHS_REGION,
        name="NhsRegion",
        title="NHS region",
        context=("Location",),
        description="The NHS England region the location is in.",
        value_type="Coding",
        binding=S.value_set("nhs-region"),
    ),
    ExtensionDefinition(
        url=S.EXT_LOCAL_AUTHORITY,
        name="LocalAuthority",
        title="Local authority",
        context=("Location",),
        description="The name of the local authority the location is in.",
        value_type="string",
    ),
    ExtensionDefinition(
        url=S.EXT_ICB,
        name="IntegratedCareBoard",
        title="Integrated care board",
        context=("Location",),
        description=(
            "The integrated care board (ICB) the location is in: its ODS organisation code as the "
            "code, its name as the display."
        ),
        value_type="Coding",
        pattern={"system": S.ODS_ORGANIZATION_CODE},
    ),
    ExtensionDefinition(
        url=S.EXT_SHORT_STAY_WEEKLY_COST,
        name="ShortStayWeeklyCost",
        title="Short-stay weekly cost",
        context=("Location",),
        description="What a week of short-stay care at the location costs, in pounds (GBP).",
        value_type="Money",
        pattern=_GBP,
    ),
    ExtensionDefinition(
        url=S.EXT_CONTRACT_LOCAL_AUTHORITY,
        name="ContractLocalAuthority",
        title="Contract with a local authority",
        context=("Location",),
        description="A local authority the location has a contract with (its name); one per contract.",
        value_type="string",
        max="*",
    ),
    ExtensionDefinition(
        url=S.EXT_CONTRACT_SUB_ICB,
        name="ContractSubIcb",
        title="Contract with a sub-ICB",
        context=("Location",),
        description="A sub-ICB the location has a contract with (its name); one per contract.",
        value_type="string",
        max="*",
    ),
    ExtensionDefinition(
        url=S.EXT_OTHER_LANGUAGE,
        name="OtherLanguage",
        title="Other language spoken",
        context=("HealthcareService",),
        description=(
            "A language spoken at the location, as the provider named it, that has no BCP-47 tag the "
            "gateway knows; one per language. Languages with a tag are in HealthcareService.communication, "
            "whose binding (all languages, required) a name without a code would break."
        ),
        value_type="string",
        max="*",
    ),
)
EXTENSIONS_BY_URL: dict[str, ExtensionDefinition] = {ext.url: ext for ext in EXTENSIONS}

# The FHIR type code -> the ``pattern[x]`` element name suffix for that type.
_PATTERN_ELEMENT = {"Coding": "patternCoding", "Money": "patternMoney"}


def _value_element(
    element_id: str,
    path: str,
    value_type: str,
    binding: str | None,
    pattern: dict[str, Any] | None,
) -> dict[str, Any]:
    element: dict[str, Any] = {"id": element_id, "path": path, "min": 1, "type": [{"code": value_type}]}
    if value_type == "Money":
        # Prices are always in pounds.
        pattern = {**_GBP, **(pattern or {})}
    if pattern:
        element[_PATTERN_ELEMENT[value_type]] = pattern
    if binding:
        element["binding"] = {"strength": "required", "valueSet": binding}
    return element


def _part_elements(part: ExtensionPart) -> list[dict[str, Any]]:
    slice_id = f"Extension.extension:{part.name}"
    return [
        {
            "id": slice_id,
            "path": "Extension.extension",
            "sliceName": part.name,
            "short": part.short,
            "definition": part.short + ".",
            "min": part.min,
            "max": part.max,
        },
        {"id": f"{slice_id}.extension", "path": "Extension.extension.extension", "max": "0"},
        {"id": f"{slice_id}.url", "path": "Extension.extension.url", "fixedUri": part.name},
        _value_element(
            f"{slice_id}.value[x]", "Extension.extension.value[x]", part.value_type, part.binding, None
        ),
    ]


def differential(ext: ExtensionDefinition) -> list[dict[str, Any]]:
    """The differential elements of one extension's StructureDefinition, in FHIR's order."""
    elements: list[dict[str, Any]] = [
        {
            "id": "Extension",
            "path": "Extension",
            "short": ext.title,
            "definition": ext.description,
            "min": 0,
            "max": ext.max,
        }
    ]
    if ext.is_complex:
        elements.append(
            {
                "id": "Extension.extension",
                "path": "Extension.extension",
                # Closed: the parts declared here are all a consumer will ever see.
                "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "closed"},
                "min": min(1, sum(part.min for part in ext.parts)),
            }
        )
        for part in ext.parts:
            elements.extend(_part_elements(part))
        elements.append({"id": "Extension.url", "path": "Extension.url", "fixedUri": ext.url})
        elements.append({"id": "Extension.value[x]", "path": "Extension.value[x]", "max": "0"})
    else:
        assert ext.value_type is not None, f"{ext.url} has neither a value type nor parts"
        elements.append({"id": "Extension.extension", "path": "Extension.extension", "max": "0"})
        elements.append({"id": "Extension.url", "path": "Extension.url", "fixedUri": ext.url})
        elements.append(
            _value_element(
                "Extension.value[x]", "Extension.value[x]", ext.value_type, ext.binding, ext.pattern
            )
        )
    return elements


def structure_definition_body(ext: ExtensionDefinition) -> dict[str, Any]:
    """The StructureDefinition of one extension, without the canonical metadata (url, name...)."""
    return {
        "fhirVersion": S.FHIR_VERSION,
        "kind": "complex-type",
        "abstract": False,
        "context": [{"type": "element", "expression": where} for where in ext.context],
        "type": "Extension",
        "baseDefinition": EXTENSION_BASE,
        "derivation": "constraint",
        "differential": {"element": differential(ext)},
    }
