"""Configuration, read once at the composition root (environment, ``.env`` or ``outreach.toml``).

Only ``bootstrap`` and the entry points read settings; everything inward receives plain values.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OUTREACH_",
        env_file=".env",
        env_file_encoding="utf-8",
        toml_file="outreach.toml",
        extra="ignore",
    )

    database_url: str = "sqlite:///outreach.db"
    mailer: str = "file://./outbox"
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str | None = Field(default=None, repr=False)
    admin_emails: list[str] = Field(default_factory=list)
    templates_dir: str | None = None
    campaigns_dir: str = "campaigns"
    link_lifetime_days: int = 365
    max_attempts: int = 5
    retry_base_seconds: float = 30.0
    batch_size: int = 200

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls),
        )
