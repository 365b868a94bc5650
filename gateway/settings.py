"""Configuration, read from ``GATEWAY_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///var/gateway.db"


# The longest span in days a setting or option takes (a century): a longer one would run
# past the last date Python can hold.
MAX_DAYS = 36500


class Settings(BaseSettings):
    """Every setting the gateway reads. See the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = Field(
        default="development", description="development, test or production"
    )

    @field_validator("environment", mode="before")
    @classmethod
    def _environment_words(cls, value: object) -> object:
        # 'Production' or ' production ' is production: a guard keyed on the word must not
        # be passed by its spelling.
        return value.strip().lower() if isinstance(value, str) else value

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL: sqlite:///path.db (default) or postgresql+psycopg://...",
    )
    database_pool_size: int = Field(default=10, ge=1)
    max_submission_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1, description="Largest push body accepted, in bytes"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="How every gateway process logs: text, or one JSON object a line"
    )
    scheduler_enabled: bool = Field(
        default=True, description="Run the source sync jobs inside this gateway process"
    )

    # London's bed tracker (pulled).
    london_base_url: str | None = None
    london_client_id: str | None = None
    london_client_secret: SecretStr | None = None
    london_interval_s: float = Field(default=300.0, gt=0)
    london_freshness_target_s: float = Field(default=3600.0, gt=0)
    london_page_size: int = Field(default=200, ge=1, le=500, description="1..500, as the tracker takes")

    # The CQC registry.
    cqc_base_url: str | None = None
    cqc_subscription_key: SecretStr | None = None
    cqc_requests_per_minute: float = Field(default=500.0, gt=0)
    cqc_full_sync_interval_s: float = Field(default=86400.0, gt=0)
    cqc_incremental_interval_s: float = Field(default=3600.0, gt=0)
    cqc_changes_overlap_s: float = Field(
        default=3600.0,
        ge=0,
        description="How far before the previous incremental window's end each new window of "
        "/changes/location starts, so a change the registry lists late (stamped inside a window "
        "already asked for) is still fetched; locations fetched again come back unchanged",
    )
    cqc_freshness_target_s: float = Field(default=2 * 86400.0, gt=0)

    # Pushing regional trackers: how old their newest data may be before they are stale.
    push_freshness_target_s: float = Field(default=86400.0, gt=0)
    reconcile_interval_s: float = Field(default=3600.0, gt=0, description="Reconciliation job interval")
    push_body_retention_days: float | None = Field(
        default=None,
        ge=0,
        le=MAX_DAYS,
        description="Discard pushes' raw bodies once older than this many days (their records, "
        "answers and counts stay, and the data they carried lives on in the version history); "
        "unset: keep every body",
    )
    housekeeping_interval_s: float = Field(
        default=3600.0, gt=0, description="How often the scheduler discards raw push bodies past retention"
    )
    sync_lease_s: float = Field(
        default=120.0,
        gt=0,
        description="How long a process's hold on a source's sync lasts unless renewed (it renews "
        "every third of it while the run lasts)",
    )
    auth_cache_s: float = Field(
        default=5.0,
        ge=0,
        description="How long a gateway process goes on trusting a bearer token it has checked "
        "without reading it again (a revoked token stops working within this; 0: read it every time)",
    )
    source_failing_after: int = Field(
        default=3, ge=1, description="Failed runs in a row after which a source shows 'failing'"
    )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @model_validator(mode="after")
    def _sqlite_folder(self) -> Settings:
        if self.is_sqlite and ":memory:" not in self.database_url:
            path = self.database_url.split("///", 1)[-1]
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        return self


class SettingsError(Exception):
    """Settings the gateway cannot run with: each variable named with why (never its
    value, which may be a secret)."""


@lru_cache
def get_settings() -> Settings:
    """The process's settings (read once); SettingsError when any is bad."""
    try:
        return Settings()
    except ValidationError as exc:
        said = [
            f"GATEWAY_{'_'.join(str(part) for part in error['loc']).upper() or '?'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise SettingsError("bad configuration:\n  " + "\n  ".join(said)) from None
