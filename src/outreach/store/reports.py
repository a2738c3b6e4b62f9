"""Aggregates for send reports: deliveries by status, by region and by language, and the
campaign list with each campaign's recipients, sends and responding organisations."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, case, distinct, func, select

from outreach.domain.report import CampaignReport
from outreach.store.tables import (
    campaigns,
    contacts,
    deliveries,
    delivery_recipients,
    organisations,
    responses,
)


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
            .select_from(delivery_recipients)
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


@dataclass(frozen=True, slots=True)
class CampaignLine:
    id: str
    name: str
    state: str
    created_at: datetime
    recipients: int
    sent: int
    organisations: int
    responded: int


def campaign_lines(engine: Engine) -> list[CampaignLine]:
    """Every campaign, newest first, with its recipients, sends and responding organisations."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                campaigns.c.id, campaigns.c.name, campaigns.c.state, campaigns.c.created_at
            ).order_by(campaigns.c.created_at.desc())
        ).all()
        sends = {
            row[0]: (row[1], row[2])
            for row in connection.execute(
                select(
                    deliveries.c.campaign_id,
                    func.count(),
                    func.sum(case((deliveries.c.sent_at.is_not(None), 1), else_=0)),
                )
                .where(deliveries.c.round == 0)
                .group_by(deliveries.c.campaign_id)
            )
        }
        audience: dict[str, int] = dict(
            connection.execute(
                select(deliveries.c.campaign_id, func.count(distinct(contacts.c.organisation_id)))
                .join(contacts, contacts.c.id == deliveries.c.contact_id)
                .group_by(deliveries.c.campaign_id)
            ).all()
        )
        answered: dict[str, int] = dict(
            connection.execute(
                select(
                    responses.c.campaign_id, func.count(distinct(responses.c.organisation_id))
                ).group_by(responses.c.campaign_id)
            ).all()
        )
    return [
        CampaignLine(
            row.id,
            row.name,
            row.state,
            row.created_at,
            int(sends.get(row.id, (0, 0))[0]),
            int(sends.get(row.id, (0, 0))[1] or 0),
            int(audience.get(row.id, 0)),
            int(answered.get(row.id, 0)),
        )
        for row in rows
    ]
