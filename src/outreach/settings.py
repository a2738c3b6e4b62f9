"""Configuration, read once at the composition root (environment, ``.env`` or ``outreach.toml``).

Only ``bootstrap`` and the entry points read settings; everything inward receives plain values.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
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
    # OUTREACH_ADMIN_EMAILS: comma-separated addresses (a JSON list is read too)
    admin_emails: Annotated[list[str], NoDecode] = Field(default_factory=list)
    templates_dir: str | None = None
    campaigns_dir: str = "campaigns"
    link_lifetime_days: int = 365
    max_attempts: int = 5
    retry_base_seconds: float = 30.0
    batch_size: int = 20
    send_concurrency: int = 8
    metrics: bool = False  # serve /metrics for Prometheus
    # provider webhooks (/webhooks/{provider}); a provider whose secret is unset gets 403
    mailgun_webhook_signing_key: str | None = Field(default=None, repr=False)
    sendgrid_webhook_public_key: str | None = Field(default=None, repr=False)
    postmark_webhook_user: str | None = Field(default=None, repr=False)
    postmark_webhook_password: str | None = Field(default=None, repr=False)
    brevo_webhook_token: str | None = Field(default=None, repr=False)
    # deliveries a killed sender left `sending`: "queue" sends them again (a message it had
    # handed over but not recorded may go out twice), "unknown" never re-sends them
    recover_as: Literal["queue", "unknown"] = "queue"
    # pacing, off by default: messages per second and per hour in all, and messages per second
    # to any one recipient domain (many city halls share one government mail relay)
    rate_per_second: float | None = Field(default=None, gt=0)
    rate_per_hour: float | None = Field(default=None, gt=0)
    rate_per_domain: float | None = Field(default=None, gt=0)

    @field_validator("admin_emails", mode="before")
    @classmethod
    def _split_addresses(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
        return value

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
