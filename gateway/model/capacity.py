"""The normalised national model: a location, its provider and its vacancy lines.

Every source (pushing trackers, London's pulled tracker, FHIR transactions) is mapped onto
these types before it reaches ``gateway.ingest``. They hold what the provider said; the
data-quality checks below never change a figure, they only flag it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from gateway.model.vocab import (
    FundingSource,
    NhsRegion,
    ProviderType,
    QualityFlag,
    ShortStayService,
    UnavailableReason,
    VacancyType,
    offers,
)

CQC_ID_PATTERN = r"^1-[0-9]{1,12}$"
Count = Annotated[int, Field(ge=0, le=100_000)]
# The earliest ``updated_at`` taken: older is a clock never set or a typing slip.
EARLIEST_UPDATE = datetime(2000, 1, 1, tzinfo=UTC)


def _no_nul(value: str) -> str:
    # JSON may carry U+0000 in a string; PostgreSQL's text cannot hold it, so one such
    # record would fail its whole batch there: it is refused here, by its field.
    if "\x00" in value:
        raise ValueError("contains a NUL character (U+0000), which no text field may hold")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


def _said(value: str) -> str | None:
    # Text of only whitespace says nothing (a tracker's form sends its empty fields so):
    # held as not given, or a blank local authority would be an area of its own in reports
    # beside 'area not known'. Text that says something is kept as sent.
    _no_nul(value)
    return value if value and not value.isspace() else None


# Optional text: None when only whitespace was sent (use as ``OptionalText | None``).
OptionalText = Annotated[str, AfterValidator(_said)]


def _said_once(values: tuple[str, ...]) -> tuple[str, ...]:
    """A list of names (languages, contracts) without blank items, each name once: a repeat
    (as the search compares names: any case and spacing) is the same name, the first
    spelling kept. The order is the source's."""
    if not values:
        return values
    seen: set[str] = set()
    kept = []
    for value in values:
        key = " ".join(value.casefold().split())
        if key and key not in seen:
            seen.add(key)
            kept.append(value)
    return values if len(kept) == len(values) else tuple(kept)


_Code = TypeVar("_Code", bound=StrEnum)


def _in_code_order(codes: tuple[_Code, ...]) -> tuple[_Code, ...]:
    """A set of codes in the order of the codes, once each (as lines are kept in the order
    of their keys): the same set sent in another order is the same content
    (``unchanged``), not a new version."""
    if len(codes) < 2 or all(a < b for a, b in zip(codes, codes[1:], strict=False)):
        return codes  # most sets have no code or one: nothing to order
    return tuple(sorted(set(codes)))


class Address(BaseModel):
    model_config = ConfigDict(frozen=True)

    line1: OptionalText | None = None
    line2: OptionalText | None = None
    town: OptionalText | None = None
    county: OptionalText | None = None
    postcode: OptionalText | None = None


class ProviderRef(BaseModel):
    """The company running a location (its CQC provider ID where known)."""

    model_config = ConfigDict(frozen=True)

    cqc_provider_id: str | None = Field(default=None, pattern=CQC_ID_PATTERN)
    name: OptionalText | None = None


def above_registered(entered: int, registered: int | None) -> bool:
    """Whether a location entered more capacity than the CQC registered it for: the one
    rule behind the ``entered-capacity-above-registered`` flag (push answers, native API,
    search, FHIR) and the ``capacity-above-registered`` finding. No registered beds (None,
    or the CQC's 0: a community rehabilitation provider, say) bounds nothing."""
    return bool(registered) and entered > (registered or 0)


def _false(value: bool) -> bool:
    return not value


class VacancyLine(BaseModel):
    """One line per location and vacancy type, with the provider's figures as sent.

    ``vacancy_type`` is None when the source used a code the gateway has not mapped
    yet; ``source_code`` then keeps the source's own code and the line is left out of
    national totals.
    """

    model_config = ConfigDict(frozen=True)

    vacancy_type: VacancyType | None
    source_code: Text | None = None
    weekly_price_from: float | None = Field(default=None, ge=0)
    maximum_capacity: Count
    occupied: Count
    reserved: Count = 0
    admittable: Count = 0
    unavailable: Count = 0
    unavailable_reasons: tuple[UnavailableReason, ...] = ()
    flexible: bool = False
    # A line a source's mapping summed from parts of one national type (London's step-down,
    # D2A and respite beds) where some part broke the capacity invariant though the sums add
    # up: it is flagged as any inconsistent line is. Set by no tracker (the push schema has
    # no such field); absent from a record while false, so no other record's digest moves.
    parts_inconsistent: bool = Field(default=False, exclude_if=_false)

    _reasons_in_order = field_validator("unavailable_reasons")(_in_code_order)

    @property
    def line_key(self) -> str:
        """The line's key within its location: the national type, or the source code."""
        if self.vacancy_type is not None:
            key: str = self.vacancy_type._value_  # the plain attribute: ``.value`` is a slow descriptor
            return key
        return f"unmapped:{self.source_code}"

    @property
    def is_consistent(self) -> bool:
        counted = self.occupied + self.reserved + self.admittable + self.unavailable
        return self.maximum_capacity == counted and not self.parts_inconsistent

    @property
    def vacancies_total(self) -> int:
        """Vacancies = maximum capacity - occupied, never below zero."""
        return max(self.maximum_capacity - self.occupied, 0)

    def quality_flags(self) -> list[QualityFlag]:
        """Data-quality findings on this line alone; the figures themselves are kept. Its
        location adds what depends on the location (``LocationUpdate.line_quality_flags``)."""
        flags: list[QualityFlag] = []
        if not self.is_consistent:
            flags.append(QualityFlag.CAPACITY_INVARIANT_BROKEN)
        if self.unavailable > 0 and not self.unavailable_reasons:
            flags.append(QualityFlag.UNAVAILABLE_WITHOUT_REASON)
        if self.unavailable == 0 and self.unavailable_reasons:
            flags.append(QualityFlag.REASONS_WITHOUT_UNAVAILABLE)
        if self.vacancy_type is None:
            flags.append(QualityFlag.UNMAPPED_VACANCY_TYPE)
        return flags


class LocationUpdate(BaseModel):
    """The whole state of one location as one source reports it at ``updated_at``.

    An update replaces what that location held: vacancy lines it leaves out are gone.
    """

    model_config = ConfigDict(frozen=True)

    cqc_location_id: str = Field(pattern=CQC_ID_PATTERN)
    name: Text
    provider: ProviderRef = ProviderRef()
    nhs_region: NhsRegion | None = None
    local_authority: OptionalText | None = None
    address: Address = Address()
    phone: OptionalText | None = None
    provider_type: ProviderType = ProviderType.CARE_HOME
    short_stay_services: tuple[ShortStayService, ...] = ()
    languages: tuple[Text, ...] = ()
    notes: OptionalText | None = None
    funding_sources: tuple[FundingSource, ...] = ()
    contracts_with_local_authorities: tuple[Text, ...] = ()
    contracts_with_sub_icbs: tuple[Text, ...] = ()
    short_stay_weekly_cost: float | None = Field(default=None, ge=0)
    accepting_admissions: bool | None = None  # None: the source did not say
    out_of_hours_admissions: bool | None = None
    active: bool = True
    updated_at: datetime
    vacancies: tuple[VacancyLine, ...] = ()

    _sets_in_order = field_validator("short_stay_services", "funding_sources")(_in_code_order)
    _names_once = field_validator("languages", "contracts_with_local_authorities", "contracts_with_sub_icbs")(
        _said_once
    )

    @field_validator("vacancies")
    @classmethod
    def _one_line_per_type(cls, lines: tuple[VacancyLine, ...]) -> tuple[VacancyLine, ...]:
        """One line per vacancy type, kept in the order of their keys (so the same lines
        sent in another order are the same content, not a new version)."""
        keys = [line.line_key for line in lines]
        if len(set(keys)) != len(keys):
            first: dict[str, int] = {}
            for index, key in enumerate(keys):
                if key in first:
                    raise ValueError(
                        f"vacancy type {key!r} appears twice (lines {first[key]} and {index}); "
                        "send one line per vacancy type"
                    )
                first[key] = index
        if all(a < b for a, b in zip(keys, keys[1:], strict=False)):
            return lines
        return tuple(line for _, line in sorted(zip(keys, lines, strict=True), key=lambda pair: pair[0]))

    @field_validator("updated_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("updated_at must carry a time-zone offset")
        try:
            # One instant, one form: the same time written with another offset is the
            # same record (its digest unchanged), not a new version.
            instant = value.astimezone(UTC)
        except OverflowError:
            # e.g. the first hour of year 1 at +01:00 is still year 0 in UTC, which neither
            # store nor any reader of the gateway can hold.
            raise ValueError(
                "updated_at is out of range: in UTC it falls outside the years 1 to 9999"
            ) from None
        if instant < EARLIEST_UPDATE:
            # A clock never set (0001-01-01, a platform's minimum date) or a typing slip
            # (0202 for 2025): no bed count of that time is the state of a home today.
            raise ValueError(
                f"updated_at {instant.date().isoformat()} is before {EARLIEST_UPDATE.year}: "
                "a source's clock or a typing fault, not when the home last updated"
            )
        return instant

    def counted(self, line: VacancyLine) -> bool:
        """Whether ``line`` counts in national totals (entered capacity, reports, search
        matches, FHIR services): of a national vacancy type this kind of provider offers. A
        line of an unmapped code, or of a type its provider does not offer (a care home's
        community rehabilitation line), is kept and flagged but counted nowhere."""
        return offers(self.provider_type, line.vacancy_type)

    def line_quality_flags(self, line: VacancyLine) -> list[QualityFlag]:
        """Data-quality findings on one of this location's lines: the line's own, and
        ``type-not-offered-by-provider`` for a national type its provider does not offer."""
        flags = line.quality_flags()
        if line.vacancy_type is not None and not self.counted(line):
            flags.append(QualityFlag.TYPE_NOT_OFFERED_BY_PROVIDER)
        return flags

    @property
    def entered_capacity(self) -> int:
        """Total entered capacity: the sum of the counted lines' maximum capacity."""
        return sum(v.maximum_capacity for v in self.vacancies if self.counted(v))
