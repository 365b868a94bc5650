"""Language names as trackers send them -> BCP-47 tags (UK Core binds
``HealthcareService.communication`` to all languages, so a coding is needed)."""

from __future__ import annotations

BCP47_BY_NAME: dict[str, tuple[str, str]] = {
    name.casefold(): (tag, name)
    for name, tag in {
        "English": "en",
        "Welsh": "cy",
        "Polish": "pl",
        "Urdu": "ur",
        "Punjabi": "pa",
        "Gujarati": "gu",
        "Bengali": "bn",
        "Spanish": "es",
        "French": "fr",
        "Portuguese": "pt",
        "Romanian": "ro",
        "Tagalog": "tl",
        "British Sign Language": "bfi",
        "Hindi": "hi",
        "Somali": "so",
        "Arabic": "ar",
        "Cantonese": "yue",
        "Mandarin": "cmn",
        "Italian": "it",
        "Turkish": "tr",
        "German": "de",
        "Greek": "el",
        "Tamil": "ta",
        "Lithuanian": "lt",
        "Russian": "ru",
        "Farsi": "fa",
        "Persian": "fa",
        "Yoruba": "yo",
        "Twi": "tw",
        "Irish": "ga",
        "Hungarian": "hu",
        "Bulgarian": "bg",
        "Nepali": "ne",
        "Malayalam": "ml",
        "Kurdish": "ku",
        "Pashto": "ps",
        "Tigrinya": "ti",
        "Amharic": "am",
        "Swahili": "sw",
        "Ukrainian": "uk",
        "Czech": "cs",
        "Slovak": "sk",
        "Latvian": "lv",
        "Albanian": "sq",
        "Vietnamese": "vi",
        "Sinhala": "si",
        "Malay": "ms",
        "Japanese": "ja",
        "Korean": "ko",
        "Chinese": "zh",
        "Dutch": "nl",
        "Shona": "sn",
        "Igbo": "ig",
        "Akan": "ak",
    }.items()
}


def bcp47(name: str) -> tuple[str, str] | None:
    """(tag, display) of a language name, case-insensitive; None when not known."""
    return BCP47_BY_NAME.get(name.strip().casefold())
