"""Word lists for plausible demo names, notes and providers (all invented)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from gateway.model.vocab import ProviderType

INWARD = "ABDEFGHJLNPQRSTUWXYZ"  # letters used in inward codes (no C I K M O V)
FIRST = [
    "Oak",
    "Cedar",
    "Willow",
    "Beech",
    "Maple",
    "Rose",
    "Lavender",
    "Primrose",
    "Meadow",
    "Orchard",
    "Abbey",
    "Ashford",
    "Brook",
    "Cherry",
    "Elm",
    "Fern",
    "Hazel",
    "Holly",
    "Ivy",
    "Juniper",
    "Larch",
    "Magnolia",
    "Oakwood",
    "Pine",
    "Rowan",
    "Sycamore",
    "Thornbury",
    "Westfield",
    "Highfield",
    "Greenacres",
    "Sunnyside",
    "Riverside",
    "Fairview",
    "Hillcrest",
    "Parkside",
    "Lakeside",
    "St Anne's",
    "St Mary's",
    "St George's",
    "St Luke's",
    "St John's",
    "Cranberry",
    "Bluebell",
    "Heather",
    "Kingfisher",
    "Swan",
    "Robin",
    "Wren",
    "Chestnut",
    "Alder",
    "Birch",
    "Foxglove",
    "Hawthorn",
    "Laurel",
    "Mulberry",
    "Poplar",
    "Redwood",
    "Silverdale",
    "Woodlands",
]
SECOND = [
    "House",
    "Lodge",
    "Court",
    "Manor",
    "Grange",
    "Hall",
    "Gardens",
    "View",
    "Park",
    "Place",
    "Mews",
    "Villa",
]
KIND = {
    ProviderType.CARE_HOME: ["Care Home", "Nursing Home", "Residential Home", "Care Centre", ""],
    ProviderType.COMMUNITY_REHAB: ["Rehabilitation Unit", "Community Rehab Centre", "Intermediate Care Unit"],
}
STREETS = [
    "High Street",
    "Church Road",
    "Station Road",
    "Park Avenue",
    "London Road",
    "Victoria Road",
    "Green Lane",
    "Manor Road",
    "Mill Lane",
    "The Crescent",
    "Kings Road",
    "Queens Road",
    "Grove Road",
    "Chester Road",
    "Albert Road",
    "New Road",
    "School Lane",
    "Springfield Road",
]
LANGUAGES = [
    "Polish",
    "Urdu",
    "Punjabi",
    "Gujarati",
    "Bengali",
    "Spanish",
    "French",
    "Portuguese",
    "Romanian",
    "Tagalog",
    "British Sign Language",
    "Hindi",
    "Somali",
    "Arabic",
    "Cantonese",
    "Italian",
    "Turkish",
    "Welsh",
]
NOTES = [
    "Hoist available",
    "Bariatric bed and equipment",
    "Wheelchair accessible throughout",
    "Passenger lift to all floors",
    "Pets allowed by arrangement",
    "Ground-floor rooms with en-suite",
    "Secure garden",
    "Hearing loop in lounges",
    "Specialist dementia unit",
    "Visiting at any time",
    "Ceiling track hoists in six rooms",
    "Step-free access from car park",
    "Tracheostomy care",
    "PEG feeding supported",
    "Smoking shelter",
    "Couples' rooms available",
]
RATINGS = ["Outstanding", "Good", "Requires improvement", "Inadequate", None]
GROUP_WORDS = [
    "Heartwood",
    "Evergreen",
    "Amberley",
    "Brightwater",
    "Northgate",
    "Summerfield",
    "Oakleaf",
    "Silverbirch",
    "Harbour",
    "Kestrel",
    "Bramble",
    "Marigold",
    "Riverbank",
    "Hollybush",
    "Goldcrest",
    "Whitestone",
    "Ashdown",
    "Greenway",
    "Fernhill",
    "Moorland",
    "Bayview",
    "Stonebridge",
    "Lindenwood",
    "Copperbeech",
    "Wyvern",
    "Thistle",
    "Clover",
    "Avonside",
    "Meridian",
    "Lantern",
]
SUFFIXES = ["Care Ltd", "Healthcare Ltd", "Care Group", "Homes Ltd", "Care Services Ltd", "Living Ltd"]


@dataclass(frozen=True)
class Provider:
    provider_id: str
    name: str
    brand: tuple[str, str] | None
    ownership_type: str


def providers(rng: random.Random) -> list[Provider]:
    """A provider market: 30 branded groups (drawn often) and many small providers."""
    out: list[Provider] = []
    used: set[str] = set()

    def new_id() -> str:
        while (candidate := f"1-{rng.randint(10**8, 10**9 - 1)}") in used:
            pass
        used.add(candidate)
        return candidate

    for i, word in enumerate(GROUP_WORDS):
        group = Provider(
            new_id(), f"{word} {rng.choice(SUFFIXES)}", (f"BD{100 + i}", f"BRAND {word}"), "Organisation"
        )
        out.extend([group] * rng.randint(15, 60))  # weight: big groups run many homes
    for _ in range(2500):
        a, b = rng.sample(FIRST, 2)
        out.append(
            Provider(
                new_id(),
                f"{a.replace(chr(39), '')} {b.replace(chr(39), '')} {rng.choice(SUFFIXES)}",
                None,
                rng.choice(["Organisation", "Organisation", "Individual", "Partnership"]),
            )
        )
    return out


def home_name(rng: random.Random, town: str, provider_type: ProviderType) -> str:
    parts = [rng.choice(FIRST), rng.choice(SECOND), rng.choice(KIND[provider_type])]
    if rng.random() < 0.15:
        parts.insert(0, town.title().replace("St. ", "St "))
    return " ".join(p for p in parts if p)


def variant(rng: random.Random, name: str) -> str:
    """How a tracker may spell a CQC name: case, spaces, 'The', 'Ltd', '&' for 'and'."""
    choice = rng.randrange(5)
    if choice == 0:
        return name.upper() + "  "
    if choice == 1:
        return f"The {name}"
    if choice == 2:
        return f"{name} Ltd"
    if choice == 3:
        return name.lower()
    return name.replace(" and ", " & ") + " "
