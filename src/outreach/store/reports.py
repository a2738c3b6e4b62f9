"""Aggregates for send reports: deliveries by status, by region and by language."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import Engine, func, select

from outreach.domain.report import CampaignReport
from outreach.store.tables import campaigns, contacts, deliveries, organisations


def campaign_report(engine: Engine, campaign_id: str, *, round: int = 0) -> CampaignReport | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(campaigns.c.name, campaigns.c.state).where(campaigns.c.id == campaign_id)
        ).first()
        if row is None:
            return None
        grouped = connection.execute(
            select(
                organisations.c.region,
                deliveries.c.language,
                deliveries.c.status,
                func.count(),
            )
            .join(contacts, contacts.c.id == deliveries.c.contact_id)
            .join(organisations, organisations.c.id == contacts.c.organisation_id)
            .where(deliveries.c.campaign_id == campaign_id, deliveries.c.round == round)
            .group_by(organisations.c.region, deliveries.c.language, deliveries.c.status)
        ).all()
    by_status: dict[str, int] = defaultdict(int)
    by_region: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_language: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for region, language, status, count in grouped:
        by_status[status] += count
        by_region[region][status] += count
        by_language[language][status] += count
    return CampaignReport(
        campaign=campaign_id,
        name=row.name,
        state=row.state,
        recipients=sum(by_status.values()),
        by_status=dict(by_status),
        by_region={k: dict(v) for k, v in sorted(by_region.items())},
        by_language={k: dict(v) for k, v in sorted(by_language.items())},
    )


def sent_since(engine: Engine, campaign_id: str, since: datetime) -> int:
    """Deliveries of a campaign accepted by the mail server since ``since`` (throughput)."""
    with engine.connect() as connection:
        return int(
            connection.scalar(
                select(func.count()).where(
                    deliveries.c.campaign_id == campaign_id, deliveries.c.sent_at >= since
                )
            )
            or 0
        )
