"""Text as string searches compare it: case and accents left out.

FHIR's string search matches "after both [the value and the parameter] have been
normalized by case and accent": "Élan" and "elan" are the same name to a discharge team
typing on a keyboard without accents. Each location's name and town are stored folded as
well as written (``Location.name_folded``, ``Location.town_folded``), so both databases
compare them with a plain LIKE.
"""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """``text`` in lower case without accents: its compatibility decomposition with the
    combining marks left out, case-folded ('Ströme' and 'STROME' fold alike, 'ß' to 'ss').
    Letters that are not a base letter and a mark ('ø', 'ł') stay as they are."""
    if text.isascii():  # nearly every name: lower case is the whole of it
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
