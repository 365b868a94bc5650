"""London borough spellings to ONS local-authority codes (E09000001..E09000033).

The tracker spells boroughs freely; anything not recognised here is reported, never
guessed.
"""

from __future__ import annotations

import re
from functools import lru_cache

BOROUGHS: dict[str, str] = {
    "E09000001": "City of London",
    "E09000002": "Barking and Dagenham",
    "E09000003": "Barnet",
    "E09000004": "Bexley",
    "E09000005": "Brent",
    "E09000006": "Bromley",
    "E09000007": "Camden",
    "E09000008": "Croydon",
    "E09000009": "Ealing",
    "E09000010": "Enfield",
    "E09000011": "Greenwich",
    "E09000012": "Hackney",
    "E09000013": "Hammersmith and Fulham",
    "E09000014": "Haringey",
    "E09000015": "Harrow",
    "E09000016": "Havering",
    "E09000017": "Hillingdon",
    "E09000018": "Hounslow",
    "E09000019": "Islington",
    "E09000020": "Kensington and Chelsea",
    "E09000021": "Kingston upon Thames",
    "E09000022": "Lambeth",
    "E09000023": "Lewisham",
    "E09000024": "Merton",
    "E09000025": "Newham",
    "E09000026": "Redbridge",
    "E09000027": "Richmond upon Thames",
    "E09000028": "Southwark",
    "E09000029": "Sutton",
    "E09000030": "Tower Hamlets",
    "E09000031": "Waltham Forest",
    "E09000032": "Wandsworth",
    "E09000033": "Westminster",
}

# Abbreviations and short forms seen in the tracker (normalised as a spelling is).
_ALIASES = {
    "city": "E09000001",
    "rbkc": "E09000020",
    "lbhf": "E09000013",
    "kensington": "E09000020",
    "hammersmith": "E09000013",
    "kingston": "E09000021",
    "richmond": "E09000027",
    "city of westminster": "E09000033",
}


def _key(text: str) -> str:
    text = text.lower().replace("&", " and ")
    text = re.sub(r"[^a-z ]+", " ", text)
    text = re.sub(r"\b(royal borough of|london borough of|lb|rb|borough of)\b", " ", text)
    return " ".join(text.split())


_BY_KEY = {_key(name): code for code, name in BOROUGHS.items()} | {
    _key(alias): code for alias, code in _ALIASES.items()
}


@lru_cache(maxsize=1024)  # a listing repeats the same few dozen spellings
def borough_code(spelling: str | None) -> str | None:
    """The ONS code of a borough however the tracker spelled it, or None when unknown."""
    if not spelling:
        return None
    return _BY_KEY.get(_key(spelling))
