"""Deterministic national demo homes: places, names, providers, vacancy lines, figures.

Care homes reproduce the reference table per NHS region exactly before the deliberate
faults are planted (about 1 line in 200 breaks the capacity invariant by one admittable
bed, so regions stay within 1%). Community-rehabilitation providers come on top.
ICB and sub-ICB codes and names are synthetic (deterministic groups of local
authorities), not the real NHS geography.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.demoset import words
from gateway.demoset.figures import COMMUNITY_REHAB_PROVIDERS, REFERENCE, allocate
from gateway.model.vocab import (
    LONG_TERM_VACANCY_TYPES,
    FundingSource,
    NhsRegion,
    ProviderType,
    ShortStayService,
    UnavailableReason,
    VacancyType,
)
from gateway.places import District, load_districts


@dataclass
class Line:
    vacancy_type: VacancyType
    capacity: int
    occupied: int = 0
    reserved: int = 0
    admittable: int = 0
    unavailable: int = 0
    reasons: list[UnavailableReason] = field(default_factory=list)
    price: float = 0.0
    flexible: bool = False


@dataclass(eq=False)
class Home:
    cqc_id: str
    provider_id: str
    provider_name: str
    brand: tuple[str, str] | None
    name: str
    region: NhsRegion
    district: District
    postcode: str
    latitude: float
    longitude: float
    address_line1: str
    phone: str
    provider_type: ProviderType
    lines: list[Line]
    icb: tuple[str, str]
    sub_icb: tuple[str, str]
    updated_at: datetime
    short_stay: list[ShortStayService] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    notes: str = ""
    funding: list[FundingSource] = field(default_factory=list)
    accepting: bool = True
    out_of_hours: bool | None = None
    rating: str | None = "Good"
    rating_date: str = "2024-01-01"
    registration_date: str = "2015-01-01"
    ods_code: str | None = None

    @property
    def entered_capacity(self) -> int:
        return sum(line.capacity for line in self.lines)


_PRICE = {  # weekly price ranges (GBP) by vacancy type
    VacancyType.GENERAL_RESIDENTIAL: (750, 1100),
    VacancyType.DEMENTIA_RESIDENTIAL: (850, 1250),
    VacancyType.GENERAL_NURSING: (1000, 1500),
    VacancyType.DEMENTIA_NURSING: (1100, 1700),
    VacancyType.LEARNING_DISABILITY_RESIDENTIAL: (1200, 2200),
    VacancyType.LEARNING_DISABILITY_NURSING: (1500, 2600),
    VacancyType.MENTAL_HEALTH_RESIDENTIAL: (1000, 1500),
    VacancyType.MENTAL_HEALTH_NURSING: (1200, 1800),
    VacancyType.YOUNG_PHYSICALLY_DISABLED: (1200, 2000),
    VacancyType.COMMUNITY_CARE: (700, 1000),
    VacancyType.TRANSITIONAL: (900, 1300),
    VacancyType.COMMUNITY_REHAB_NHS_LA: (1400, 2100),
    VacancyType.COMMUNITY_REHAB_PRIVATE: (1600, 2400),
}
_TYPE_WEIGHT = {
    VacancyType.GENERAL_RESIDENTIAL: 30,
    VacancyType.DEMENTIA_RESIDENTIAL: 22,
    VacancyType.GENERAL_NURSING: 20,
    VacancyType.DEMENTIA_NURSING: 16,
    VacancyType.LEARNING_DISABILITY_RESIDENTIAL: 5,
    VacancyType.LEARNING_DISABILITY_NURSING: 1,
    VacancyType.MENTAL_HEALTH_RESIDENTIAL: 3,
    VacancyType.MENTAL_HEALTH_NURSING: 1,
    VacancyType.YOUNG_PHYSICALLY_DISABLED: 2,
    VacancyType.COMMUNITY_CARE: 1,
    VacancyType.TRANSITIONAL: 2,
}
_REGION_PRICE = {NhsRegion.LONDON: 1.2, NhsRegion.SOUTH_EAST: 1.1, NhsRegion.NORTH_EAST_AND_YORKSHIRE: 0.9}


class Builder:
    """Builds the national set of demo homes from one seed."""

    def __init__(self, seed: int, now: datetime) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.used_ids: set[str] = set()
        self.districts = self._districts_by_region()
        self.icbs = self._icbs()
        self.providers = words.providers(self.rng)

    def _districts_by_region(self) -> dict[NhsRegion, list[District]]:
        out: dict[NhsRegion, list[District]] = {}
        for district in sorted(load_districts().values(), key=lambda d: d.code):
            out.setdefault(district.nhs_region, []).append(district)
        return out

    def _icbs(self) -> dict[str, tuple[tuple[str, str], tuple[str, str]]]:
        """Synthetic ICB and sub-ICB per local authority: groups of four per region."""
        out: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {}
        number = 0
        for region in NhsRegion:
            authorities = sorted({d.local_authority for d in self.districts[region]})
            for start in range(0, len(authorities), 4):
                group = authorities[start : start + 4]
                icb = (
                    f"Q{chr(65 + number // 26)}{chr(65 + number % 26)}",
                    f"NHS {group[0]} and Partners ICB (demo)",
                )
                number += 1
                for i, authority in enumerate(group):
                    out[authority] = (icb, (f"{icb[0]}{i + 1:02d}", f"NHS {authority} sub-ICB (demo)"))
        return out

    def new_id(self) -> str:
        while True:
            candidate = f"1-{self.rng.randint(10**9, 10**11 - 1)}"
            if candidate not in self.used_ids:
                self.used_ids.add(candidate)
                return candidate

    def _updated_at(self) -> datetime:
        roll = self.rng.random()
        hours = (
            self.rng.uniform(0, 24)
            if roll < 0.45
            else self.rng.uniform(24, 24 * 7)
            if roll < 0.75
            else self.rng.uniform(24 * 7, 24 * 30)
        )
        return (self.now - timedelta(hours=hours)).replace(microsecond=0)

    def _place(self, region: NhsRegion) -> tuple[District, str, float, float]:
        districts = self.districts[region]
        district = self.rng.choices(districts, weights=[max(d.population, 500) for d in districts])[0]
        inward = f"{self.rng.randint(1, 9)}{self.rng.choice(words.INWARD)}{self.rng.choice(words.INWARD)}"
        return (
            district,
            f"{district.code} {inward}",
            round(district.latitude + self.rng.uniform(-0.01, 0.01), 6),
            round(district.longitude + self.rng.uniform(-0.015, 0.015), 6),
        )

    def home(
        self, region: NhsRegion, provider_type: ProviderType, types: list[VacancyType], capacities: list[int]
    ) -> Home:
        rng = self.rng
        district, postcode, lat, lon = self._place(region)
        provider = rng.choice(self.providers)
        icb, sub_icb = self.icbs[district.local_authority]
        multiplier = _REGION_PRICE.get(region, 1.0)
        lines = [
            Line(
                t, c, price=round(rng.uniform(*_PRICE[t]) * multiplier / 5) * 5.0, flexible=rng.random() < 0.3
            )
            for t, c in zip(types, capacities, strict=True)
        ]
        home = Home(
            cqc_id=self.new_id(),
            provider_id=provider.provider_id,
            provider_name=provider.name,
            brand=provider.brand,
            name=words.home_name(rng, district.post_town, provider_type),
            region=region,
            district=district,
            postcode=postcode,
            latitude=lat,
            longitude=lon,
            address_line1=f"{rng.randint(1, 240)} {rng.choice(words.STREETS)}",
            phone=f"0{rng.randint(1000, 1999)} {rng.randint(100000, 999999)}",
            provider_type=provider_type,
            lines=lines,
            icb=icb,
            sub_icb=sub_icb,
            updated_at=self._updated_at(),
            languages=["English", *rng.sample(words.LANGUAGES, rng.choice([0, 0, 1, 1, 2]))],
            notes="; ".join(rng.sample(words.NOTES, rng.randint(1, 4))),
            funding=sorted(rng.sample(list(FundingSource), rng.randint(1, 4))),
            out_of_hours=rng.choice([True, False, False, None]),
            rating=rng.choices(words.RATINGS, weights=[6, 70, 18, 2, 4])[0],
            rating_date=f"{rng.randint(2019, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            registration_date=f"{rng.randint(2011, 2022)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            ods_code=f"V{rng.randint(10000, 99999)}" if rng.random() < 0.7 else None,
        )
        if provider_type is ProviderType.CARE_HOME and rng.random() < 0.4:
            home.short_stay = sorted(rng.sample(list(ShortStayService), rng.randint(1, 3)))
        return home

    def _types(self) -> list[VacancyType]:
        types = list(_TYPE_WEIGHT)
        count = self.rng.choices([1, 2, 3, 4], weights=[30, 40, 22, 8])[0]
        chosen: list[VacancyType] = []
        while len(chosen) < count:
            pick = self.rng.choices(types, weights=[_TYPE_WEIGHT[t] for t in types])[0]
            if pick not in chosen:
                chosen.append(pick)
        return sorted(chosen, key=LONG_TERM_VACANCY_TYPES.index)

    def care_homes(self, region: NhsRegion) -> list[Home]:
        """The region's care homes, whose figures add up to the reference row exactly."""
        rng = self.rng
        count, capacity, admittable, unavailable, reserved, occupied = REFERENCE[region]
        sizes = allocate(capacity - 6 * count, [rng.lognormvariate(0, 0.45) for _ in range(count)], None, rng)
        homes = []
        for size in sizes:
            types = self._types()
            size += 6
            parts = allocate(size - len(types), [rng.uniform(0.3, 1.7) for _ in types], None, rng)
            homes.append(self.home(region, ProviderType.CARE_HOME, types, [p + 1 for p in parts]))
        lines = [line for home in homes for line in home.lines]
        self._fill(lines, admittable, unavailable, reserved, occupied)
        for home in homes:
            if not any(line.admittable for line in home.lines):
                home.accepting = rng.random() < 0.4
        return homes

    def _fill(
        self, lines: list[Line], admittable: int, unavailable: int, reserved: int, occupied: int
    ) -> None:
        rng = self.rng
        vacant = allocate(
            admittable + unavailable + reserved,
            [line.capacity * rng.uniform(0.05, 2.0) for line in lines],
            [line.capacity for line in lines],
            rng,
        )
        unavail = allocate(unavailable, [v * rng.uniform(0, 2) for v in vacant], vacant, rng)
        room = [v - u for v, u in zip(vacant, unavail, strict=True)]
        held = allocate(reserved, [r * rng.uniform(0, 2) for r in room], room, rng)
        for line, v, u, r in zip(lines, vacant, unavail, held, strict=True):
            line.occupied, line.unavailable, line.reserved = line.capacity - v, u, r
            line.admittable = v - u - r
            if u:
                line.reasons = sorted(rng.sample(list(UnavailableReason)[:-1], rng.choice([1, 1, 2])))
        assert sum(line.occupied for line in lines) == occupied

    def rehab_providers(self) -> list[Home]:
        rng = self.rng
        counts = allocate(COMMUNITY_REHAB_PROVIDERS, [REFERENCE[r][0] for r in NhsRegion], None, rng)
        homes = []
        for region, count in zip(NhsRegion, counts, strict=True):
            for _ in range(count):
                types = rng.choice(
                    [
                        [VacancyType.COMMUNITY_REHAB_NHS_LA],
                        [VacancyType.COMMUNITY_REHAB_NHS_LA, VacancyType.COMMUNITY_REHAB_PRIVATE],
                    ]
                )
                home = self.home(
                    region, ProviderType.COMMUNITY_REHAB, types, [rng.randint(8, 30) for _ in types]
                )
                home.updated_at = (self.now - timedelta(hours=rng.uniform(0, 30))).replace(microsecond=0)
                for line in home.lines:
                    vacant = rng.randint(0, max(1, line.capacity // 5))
                    line.occupied = line.capacity - vacant
                    line.unavailable = rng.randint(0, vacant)
                    line.admittable = vacant - line.unavailable
                    if line.unavailable:
                        line.reasons = [rng.choice(list(UnavailableReason)[:-1])]
                homes.append(home)
        return homes
