"""The rows of a campaign's CSV/JSON exports.

One row per response, and one per organisation that has not responded, with the contacts
mailed; one row per delivery with its clicks (people apart from suspected link scanners) and
unsubscribe; and ``csv_cell``, which writes a value as a CSV cell a spreadsheet never runs as
a formula. The per-delivery counts are a ``GROUP BY`` in the database; the organisations and
their answers come from the admin report's query (``store.responses``).
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Engine, and_, case, func, select

from outreach.store.responses import CLICKED, UNSUBSCRIBED, organisations_by_region
from outreach.store.tables import contacts, deliveries, delivery_recipients, events, organisations

RESPONSE_COLUMNS = (
    "organisation",
    "country",
    "region",
    "responded",
    "cta_id",
    "signer_name",
    "signer_title",
    "signed_at",
    "signer_email",
    "contacts",
)
DELIVERY_COLUMNS = (
    "delivery_id",
    "round",
    "email",
    "name",
    "organisation",
    "country",
    "region",
    "language",
    "status",
    "attempts",
    "sent_at",
    "last_error",
    "human_clicks",
    "suspected_scanner_clicks",
    "unsubscribed",
)


def iter_response_rows(engine: Engine, campaign_id: str) -> Iterator[dict[str, object]]:
    """One row per response, and one per organisation that has not responded (``responded``
    False), by region and name; keys are ``RESPONSE_COLUMNS``."""
    with engine.connect() as connection:
        regions = organisations_by_region(connection, campaign_id)
    for region in regions:
        for line in region.responded + region.not_responded:
            for answer in line.answers or (None,):
                yield {
                    "organisation": line.name,
                    "country": line.country,
                    "region": line.region,
                    "responded": answer is not None,
                    "cta_id": answer.cta_id if answer else None,
                    "signer_name": answer.signer_name if answer else None,
                    "signer_title": answer.signer_title if answer else None,
                    "signed_at": answer.signed_at.isoformat() if answer else None,
                    "signer_email": answer.signer_email if answer else None,
                    "contacts": "; ".join(line.contacts),
                }


def iter_delivery_export(engine: Engine, campaign_id: str) -> Iterator[dict[str, object]]:
    """Every delivery of a campaign with its clicks and unsubscribe; keys are
    ``DELIVERY_COLUMNS``."""
    per_delivery = (
        select(
            events.c.delivery_id,
            func.sum(
                case((and_(events.c.kind == CLICKED, ~events.c.suspected_bot), 1), else_=0)
            ).label("human"),
            func.sum(
                case((and_(events.c.kind == CLICKED, events.c.suspected_bot), 1), else_=0)
            ).label("scanner"),
            func.sum(case((events.c.kind == UNSUBSCRIBED, 1), else_=0)).label("unsubscribed"),
        )
        .where(events.c.campaign_id == campaign_id, events.c.kind.in_((CLICKED, UNSUBSCRIBED)))
        .group_by(events.c.delivery_id)
        .subquery()
    )
    query = (
        select(
            deliveries.c.id,
            deliveries.c.round,
            contacts.c.email,
            contacts.c.name,
            organisations.c.name.label("organisation"),
            organisations.c.country,
            organisations.c.region,
            deliveries.c.language,
            deliveries.c.status,
            deliveries.c.attempts,
            deliveries.c.sent_at,
            deliveries.c.last_error,
            per_delivery.c.human,
            per_delivery.c.scanner,
            per_delivery.c.unsubscribed,
        )
        .select_from(delivery_recipients)
        .outerjoin(per_delivery, per_delivery.c.delivery_id == deliveries.c.id)
        .where(deliveries.c.campaign_id == campaign_id)
        .order_by(
            organisations.c.region, organisations.c.name, contacts.c.email, deliveries.c.round
        )
    )
    with engine.connect() as connection:
        for row in connection.execution_options(yield_per=1000).execute(query):
            yield dict(
                zip(
                    DELIVERY_COLUMNS,
                    (
                        *row[:10],
                        row.sent_at.isoformat() if row.sent_at else None,
                        row.last_error,
                        int(row.human or 0),
                        int(row.scanner or 0),
                        bool(row.unsubscribed),
                    ),
                    strict=True,
                )
            )


def csv_cell(value: object) -> str:
    """A value as a CSV cell that a spreadsheet shows as text, never runs as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
