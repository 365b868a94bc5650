"""A valid London home, for tests to vary."""

from __future__ import annotations

import copy
from typing import Any

HOME: dict[str, Any] = {
    "home_ref": "LDN-004211",
    "cqc_location_id": "1-10000302982",
    "name": "Cranberry House Nursing Home ",
    "borough": "Kensington & Chelsea",
    "address": {"line1": "12 Abbey Road", "line2": None, "town": "London", "postcode": "nw8 9aa"},
    "phone": "020 7946 0000",
    "home_type": "NURSING_AND_RESIDENTIAL",
    "status": "OPEN",
    "accepting_admissions": True,
    "out_of_hours_admissions": "YES",
    "languages": ["English", "Polish"],
    "facilities": "Hoist; bariatric bed; passenger lift; pets considered",
    "funding_accepted": ["LA", "ICB", "SELF_FUNDED", "PHB"],
    "beds": [
        {
            "category": "NURS_DEM",
            "commissioned": 20,
            "occupied": 17,
            "free_now": 1,
            "on_hold": 1,
            "closed": 1,
            "closed_reason": "STAFF_SICKNESS",
            "weekly_fee_pence": 145000,
            "interchangeable": True,
        }
    ],
    "updated_at": "2026-11-22T09:14:00+00:00",
}


def home(**over: Any) -> dict[str, Any]:
    out = copy.deepcopy(HOME)
    out.update(over)
    return out


def bed(category: str = "RES_GEN", **over: Any) -> dict[str, Any]:
    line = {
        "category": category,
        "commissioned": 10,
        "occupied": 8,
        "free_now": 2,
        "on_hold": 0,
        "closed": 0,
        "closed_reason": None,
        "weekly_fee_pence": 99950,
        "interchangeable": False,
    }
    line.update(over)
    return line
