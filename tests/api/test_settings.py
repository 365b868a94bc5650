"""Bad settings are refused when read, each variable named with why, never its value."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from gateway import cli
from gateway.settings import SettingsError, get_settings


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("GATEWAY_LONDON_PAGE_SIZE", "900", "less than or equal to 500"),
        ("GATEWAY_LONDON_PAGE_SIZE", "0", "greater than or equal to 1"),
        ("GATEWAY_LONDON_INTERVAL_S", "0", "greater than 0"),
        ("GATEWAY_CQC_REQUESTS_PER_MINUTE", "-5", "greater than 0"),
        ("GATEWAY_SOURCE_FAILING_AFTER", "0", "greater than or equal to 1"),
        ("GATEWAY_MAX_SUBMISSION_BYTES", "lots", "valid integer"),
        ("GATEWAY_ENVIRONMENT", "prod", "'development', 'test' or 'production'"),
        ("GATEWAY_PUSH_BODY_RETENTION_DAYS", "1000000", "less than or equal to 36500"),
    ],
)
def test_a_bad_setting_is_named_with_why(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, why: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        get_settings()
    assert f"{variable}: " in str(refused.value) and why in str(refused.value)


def test_every_bad_setting_is_named_at_once_and_no_value_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_LONDON_PAGE_SIZE", "987654")
    monkeypatch.setenv("GATEWAY_AUTH_CACHE_S", "-31337")
    monkeypatch.setenv("GATEWAY_CQC_SUBSCRIPTION_KEY", "secret-key-value")
    with pytest.raises(SettingsError) as refused:
        get_settings()
    said = str(refused.value)
    assert "GATEWAY_LONDON_PAGE_SIZE" in said and "GATEWAY_AUTH_CACHE_S" in said
    assert "987654" not in said and "31337" not in said and "secret-key-value" not in said


def test_the_command_says_a_bad_setting_plainly_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_LONDON_PAGE_SIZE", "900")
    monkeypatch.setattr(sys, "argv", ["gateway", "token", "list"])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 2
    said = capsys.readouterr()
    assert said.out == ""  # what went wrong goes to stderr
    assert "bad configuration" in said.err and "GATEWAY_LONDON_PAGE_SIZE" in said.err
    assert "Traceback" not in said.err


def test_good_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_LONDON_PAGE_SIZE", "500")
    assert get_settings().london_page_size == 500


def test_the_environment_is_one_of_three_words_whatever_their_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo refuses a production database by this word: its spelling must not pass it."""
    monkeypatch.setenv("GATEWAY_ENVIRONMENT", " Production ")
    assert get_settings().environment == "production"
