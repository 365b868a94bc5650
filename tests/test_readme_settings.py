"""The README's configuration table names every setting the gateway reads, so an operator
never meets one only in the code. Grouped rows (`GATEWAY_LONDON_BASE_URL`, `_CLIENT_ID`)
count for each of their variables."""

from __future__ import annotations

from pathlib import Path

from gateway.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def _documented(variable: str, lines: list[str]) -> bool:
    parts = variable.split("_")
    for line in lines:
        if f"`{variable}`" in line:
            return True
        for cut in range(2, len(parts)):  # `GATEWAY_LONDON_BASE_URL`, `_CLIENT_ID` on one row
            head, tail = "_".join(parts[:cut]), "_".join(parts[cut:])
            if f"`{head}_" in line and f"`_{tail}`" in line:
                return True
    return False


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    rows = [line for line in README.read_text().splitlines() if line.startswith("| `GATEWAY_")]
    missing = [
        f"GATEWAY_{name.upper()}"
        for name in Settings.model_fields
        if not _documented(f"GATEWAY_{name.upper()}", rows)
    ]
    assert missing == []
