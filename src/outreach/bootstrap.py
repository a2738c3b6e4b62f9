"""The composition root: settings in, wired services out. The only place that reads settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine

from outreach.domain.campaign import Campaign
from outreach.identity import worker_name
from outreach.mailers.dsn import open_mailer
from outreach.pipeline.campaigns import load_campaign
from outreach.pipeline.ratelimit import RateLimits
from outreach.pipeline.render import CompiledCampaign, available_templates, compile_campaign
from outreach.pipeline.sending import SendPolicy
from outreach.pipeline.tokens import LinkSigner
from outreach.ports import Mailer
from outreach.settings import Settings
from outreach.store.deliveries import SqlDeliveryLedger
from outreach.store.engine import open_engine
from outreach.store.meta import get_or_create_secret


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings = field(default_factory=Settings)
    clock: SystemClock = field(default_factory=SystemClock)

    @cached_property
    def engine(self) -> Engine:
        return open_engine(self.settings.database_url)

    @cached_property
    def ledger(self) -> SqlDeliveryLedger:
        return SqlDeliveryLedger(self.engine)

    @cached_property
    def signer(self) -> LinkSigner:
        secret = self.settings.secret_key or get_or_create_secret(self.engine)
        return LinkSigner(
            secret=secret.encode(),
            base_url=self.settings.base_url.rstrip("/"),
            lifetime=timedelta(days=self.settings.link_lifetime_days),
        )

    @property
    def templates_dir(self) -> Path:
        return Path(self.settings.templates_dir or "templates")

    @property
    def templates(self) -> set[str]:
        return available_templates(self.templates_dir)

    @property
    def policy(self) -> SendPolicy:
        settings = self.settings
        return SendPolicy(
            batch_size=settings.batch_size,
            # recovering as `unknown` must know which claims a killed sender had begun to hand
            # over: each hand-over is recorded first
            mark_hand_over=settings.recover_as == "unknown",
            max_attempts=settings.max_attempts,
            retry_base=timedelta(seconds=settings.retry_base_seconds),
            limits=RateLimits(
                per_second=settings.rate_per_second,
                per_hour=settings.rate_per_hour,
                per_domain_per_second=settings.rate_per_domain,
            ),
        )

    @property
    def worker_name(self) -> str:
        return worker_name()

    def load_campaign(self, path: Path) -> Campaign:
        return load_campaign(path, templates=self.templates)

    def compile(self, campaign: Campaign) -> CompiledCampaign:
        return compile_campaign(campaign, templates_dir=self.templates_dir)

    def mailer(self, dsn: str | None = None) -> Mailer:
        return open_mailer(dsn or self.settings.mailer, concurrency=self.settings.send_concurrency)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
