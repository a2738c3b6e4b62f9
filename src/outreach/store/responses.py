"""What members did with a campaign: the queries behind the admin report and its exports.

``campaign_report`` (``store.reports``) counts deliveries by status; this module adds the
rest: which organisations responded (who signed, when) and which have not, by region with the
names of the contacts mailed; clicks per call to action, people apart from suspected link
scanners; unsubscribes and bounces; a timeline of sends, clicks and signatures; the response
rate by region; the rows of the CSV/JSON exports; and the delivery detail search.

Every count is a ``GROUP BY`` in the database; Python only arranges the grouped rows. The
filters use the indexes of migration 0002 (events by campaign, kind, scanner flag, time and
call to action; responses by campaign and time) and of 0001 (deliveries by campaign).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    and_,
    case,
    cast,
    distinct,
    extract,
    false,
    func,
    or_,
    select,
    true,
    union,
)

from outreach.store.tables import (
    campaigns,
    contacts,
    deliveries,
    events,
    organisations,
    responses,
    suppressions,
)

CLICKED, BOUNCED, UNSUBSCRIBED = "clicked", "bounced", "unsubscribed"
TIMELINE_STEPS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
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


@dataclass(frozen=True, slots=True)
class Answer:
    """One recorded response of an organisation to a ``sign`` call to action."""

    cta_id: str
    signer_name: str
    signer_title: str
    signed_at: datetime
    signer_email: str | None


@dataclass(frozen=True, slots=True)
class OrganisationLine:
    """An organisation of the campaign's audience, the contacts mailed, and its answers."""

    id: int
    name: str
    country: str
    region: str
    contacts: tuple[str, ...]
    answers: tuple[Answer, ...]


@dataclass(frozen=True, slots=True)
class RegionResponses:
    region: str
    responded: list[OrganisationLine]
    not_responded: list[OrganisationLine]

    @property
    def organisations(self) -> int:
        return len(self.responded) + len(self.not_responded)

    @property
    def rate(self) -> float:
        return len(self.responded) / self.organisations if self.organisations else 0.0


@dataclass(frozen=True, slots=True)
class CtaClicks:
    cta_id: str
    label: str
    kind: str
    human: int
    suspected_scanner: int


@dataclass(frozen=True, slots=True)
class Timeline:
    """Counts per time bucket; ``starts[i]`` opens bucket ``i``, each ``step`` long."""

    starts: list[datetime]
    step: timedelta
    sends: list[int]
    clicks: list[int]
    signatures: list[int]


@dataclass(frozen=True, slots=True)
class ResponsesReport:
    """Everything the admin report shows beyond the delivery counts."""

    regions: list[RegionResponses]
    clicks: list[CtaClicks]
    unsubscribed: int
    bounced: int
    timeline: Timeline

    @property
    def responded(self) -> int:
        return sum(len(r.responded) for r in self.regions)

    @property
    def organisations(self) -> int:
        return sum(r.organisations for r in self.regions)


@dataclass(frozen=True, slots=True)
class EventLine:
    kind: str
    occurred_at: datetime
    cta_id: str | None
    suspected_bot: bool
    user_agent: str | None
    source: str


@dataclass(frozen=True, slots=True)
class DeliveryDetail:
    id: int
    campaign_id: str
    round: int
    email: str
    name: str
    organisation: str
    country: str
    region: str
    language: str
    status: str
    attempts: int
    queued_at: datetime
    sent_at: datetime | None
    last_error: str | None
    events: list[EventLine]


# -- the report ---------------------------------------------------------------------------
def responses_report(engine: Engine, campaign_id: str) -> ResponsesReport:
    with engine.connect() as connection:
        return ResponsesReport(
            regions=_regions(connection, campaign_id),
            clicks=_clicks(connection, campaign_id),
            unsubscribed=_unsubscribed(connection, campaign_id),
            bounced=_bounced(connection, campaign_id),
            timeline=_timeline(connection, campaign_id),
        )


def response_summary(engine: Engine, campaign_id: str) -> dict[str, Any]:
    """For ``outreach report --format json``: who responded, who has not, clicks, unsubscribes."""
    with engine.connect() as connection:
        regions = _regions(connection, campaign_id)
        clicks = _clicks(connection, campaign_id)
        unsubscribed = _unsubscribed(connection, campaign_id)
    return {
        "responded": sorted(o.name for r in regions for o in r.responded),
        "not_responded": sorted(o.name for r in regions for o in r.not_responded),
        "clicks": {
            c.cta_id: {"human": c.human, "suspected_scanner": c.suspected_scanner} for c in clicks
        },
        "unsubscribed": unsubscribed,
    }


def _regions(connection: Connection, campaign_id: str) -> list[RegionResponses]:
    audience = connection.execute(
        select(
            organisations.c.id,
            organisations.c.name,
            organisations.c.country,
            organisations.c.region,
            contacts.c.name.label("contact"),
        )
        .distinct()
        .select_from(deliveries)
        .join(contacts, contacts.c.id == deliveries.c.contact_id)
        .join(organisations, organisations.c.id == contacts.c.organisation_id)
        .where(deliveries.c.campaign_id == campaign_id)
        .order_by(organisations.c.region, organisations.c.name, contacts.c.name)
    ).all()
    answered = connection.execute(
        select(
            organisations.c.id,
            organisations.c.name,
            organisations.c.country,
            organisations.c.region,
            responses.c.cta_id,
            responses.c.signer_name,
            responses.c.signer_title,
            responses.c.created_at,
            contacts.c.email,
        )
        .select_from(responses)
        .join(organisations, organisations.c.id == responses.c.organisation_id)
        .outerjoin(contacts, contacts.c.id == responses.c.contact_id)
        .where(responses.c.campaign_id == campaign_id)
        .order_by(responses.c.created_at)
    ).all()
    names: dict[int, tuple[str, str, str]] = {}
    people: dict[int, list[str]] = {}
    for row in audience:
        names[row.id] = (row.name, row.country, row.region)
        people.setdefault(row.id, []).append(row.contact)
    answers: dict[int, list[Answer]] = {}
    for answer in answered:
        names.setdefault(answer.id, (answer.name, answer.country, answer.region))
        answers.setdefault(answer.id, []).append(
            Answer(
                answer.cta_id,
                answer.signer_name,
                answer.signer_title,
                answer.created_at,
                answer.email,
            )
        )
    by_region: dict[str, RegionResponses] = {}
    for org_id, (name, country, region) in sorted(
        names.items(), key=lambda item: (item[1][2], item[1][0], item[1][1])
    ):
        line = OrganisationLine(
            org_id,
            name,
            country,
            region,
            tuple(people.get(org_id, ())),
            tuple(answers.get(org_id, ())),
        )
        group = by_region.setdefault(region, RegionResponses(region, [], []))
        (group.responded if line.answers else group.not_responded).append(line)
    return list(by_region.values())


def _cta_definitions(connection: Connection, campaign_id: str) -> list[tuple[str, str, str]]:
    """(id, label, kind) of each call to action in the stored campaign definition."""
    definition = connection.scalar(
        select(campaigns.c.definition).where(campaigns.c.id == campaign_id)
    )
    if not isinstance(definition, dict):
        return []
    default = str(definition.get("default_language", ""))
    found: list[tuple[str, str, str]] = []
    for cta in definition.get("calls_to_action") or []:
        if isinstance(cta, dict) and isinstance(cta.get("id"), str):
            labels = cta.get("label") if isinstance(cta.get("label"), dict) else {}
            label = (labels.get(default) or next(iter(labels.values()), "")) if labels else ""
            found.append((cta["id"], str(label), str(cta.get("kind", ""))))
    return found


def _clicks(connection: Connection, campaign_id: str) -> list[CtaClicks]:
    grouped = connection.execute(
        select(events.c.cta_id, events.c.suspected_bot, func.count())
        .where(events.c.campaign_id == campaign_id, events.c.kind == CLICKED)
        .group_by(events.c.cta_id, events.c.suspected_bot)
    ).all()
    counts: dict[str, list[int]] = {}
    for cta_id, suspected, count in grouped:
        counts.setdefault(cta_id or "", [0, 0])[1 if suspected else 0] += count
    lines = []
    for cta_id, label, kind in _cta_definitions(connection, campaign_id):
        human, scanner = counts.pop(cta_id, [0, 0])
        lines.append(CtaClicks(cta_id, label, kind, human, scanner))
    for cta_id, (human, scanner) in sorted(counts.items()):
        lines.append(CtaClicks(cta_id, cta_id or "(no call to action)", "", human, scanner))
    return lines


def _unsubscribed(connection: Connection, campaign_id: str) -> int:
    """Addresses that unsubscribed from this campaign (by event or on the suppression list)."""
    # Nested IN, not joins: the few unsubscribe events lead, whatever the planner's statistics.
    unsubscribing = select(events.c.delivery_id).where(
        events.c.campaign_id == campaign_id, events.c.kind == UNSUBSCRIBED
    )
    by_event = select(contacts.c.email).where(
        contacts.c.id.in_(select(deliveries.c.contact_id).where(deliveries.c.id.in_(unsubscribing)))
    )
    by_list = select(suppressions.c.email).where(
        suppressions.c.campaign_id == campaign_id, suppressions.c.reason.like("unsub%")
    )
    both = union(by_event, by_list).subquery()
    return int(connection.scalar(select(func.count()).select_from(both)) or 0)


def _bounced(connection: Connection, campaign_id: str) -> int:
    bounce_events = select(events.c.delivery_id).where(
        events.c.campaign_id == campaign_id, events.c.kind == BOUNCED
    )
    query = select(func.count()).where(
        deliveries.c.campaign_id == campaign_id,
        or_(deliveries.c.status == BOUNCED, deliveries.c.id.in_(bounce_events)),
    )
    return int(connection.scalar(query) or 0)


# -- the timeline -------------------------------------------------------------------------
def _epoch(connection: Connection, column: Any) -> ColumnElement[int]:
    if connection.dialect.name == "sqlite":
        return cast(func.strftime("%s", column), Integer)
    return cast(func.floor(extract("epoch", column)), BigInteger)


def _timeline(connection: Connection, campaign_id: str, *, max_buckets: int = 48) -> Timeline:
    sources = [
        (deliveries.c.sent_at, deliveries.c.campaign_id == campaign_id),
        (
            events.c.occurred_at,
            and_(
                events.c.campaign_id == campaign_id,
                events.c.kind == CLICKED,
                events.c.suspected_bot == false(),
            ),
        ),
        (responses.c.created_at, responses.c.campaign_id == campaign_id),
    ]
    moments: list[datetime] = []
    for column, where in sources:
        low, high = connection.execute(
            select(func.min(column), func.max(column)).where(where)
        ).one()
        moments.extend(m for m in (low, high) if m is not None)
    if not moments:
        return Timeline([], timedelta(hours=1), [], [], [])
    first, last = int(min(moments).timestamp()), int(max(moments).timestamp())
    for step in TIMELINE_STEPS:
        origin = first - first % step
        size = (last - origin) // step + 1
        if size <= max_buckets:
            break
    series: list[list[int]] = []
    for column, where in sources:
        bucket = (_epoch(connection, column) - origin) // step
        counts = [0] * size
        query = select(bucket, func.count()).where(where, column.is_not(None)).group_by(bucket)
        for index, count in connection.execute(query):
            if index is not None and 0 <= int(index) < size:
                counts[int(index)] += count
        series.append(counts)
    starts = [datetime.fromtimestamp(origin + i * step, UTC) for i in range(size)]
    return Timeline(starts, timedelta(seconds=step), series[0], series[1], series[2])


# -- exports ------------------------------------------------------------------------------
def iter_response_rows(engine: Engine, campaign_id: str) -> Iterator[dict[str, object]]:
    """One row per response, and one per organisation that has not responded (``responded``
    False), by region and name; keys are ``RESPONSE_COLUMNS``."""
    with engine.connect() as connection:
        regions = _regions(connection, campaign_id)
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
        .join(contacts, contacts.c.id == deliveries.c.contact_id)
        .join(organisations, organisations.c.id == contacts.c.organisation_id)
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


# -- delivery detail ----------------------------------------------------------------------
def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its wildcards taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_deliveries(
    engine: Engine, *, text: str, campaign_id: str | None = None, limit: int = 100
) -> tuple[list[DeliveryDetail], bool]:
    """Deliveries whose contact's address or name, or whose city, contains ``text``, each with
    every event; the flag says more matched than ``limit``."""
    wanted = text.strip()
    if not wanted:
        return [], False
    patterns = {_like(wanted), _like(wanted.lower())}  # SQLite folds ASCII case only
    query = (
        select(
            deliveries.c.id,
            deliveries.c.campaign_id,
            deliveries.c.round,
            contacts.c.email,
            contacts.c.name,
            organisations.c.name.label("organisation"),
            organisations.c.country,
            organisations.c.region,
            deliveries.c.language,
            deliveries.c.status,
            deliveries.c.attempts,
            deliveries.c.queued_at,
            deliveries.c.sent_at,
            deliveries.c.last_error,
        )
        .join(contacts, contacts.c.id == deliveries.c.contact_id)
        .join(organisations, organisations.c.id == contacts.c.organisation_id)
        .where(
            or_(
                *(
                    column.ilike(pattern, escape="\\")
                    for column in (contacts.c.email, contacts.c.name, organisations.c.name)
                    for pattern in patterns
                )
            ),
            deliveries.c.campaign_id == campaign_id if campaign_id else true(),
        )
        .order_by(
            organisations.c.name, contacts.c.email, deliveries.c.campaign_id, deliveries.c.round
        )
        .limit(limit + 1)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
        found = rows[:limit]
        happened: dict[int, list[EventLine]] = {}
        if found:
            ids = [row.id for row in found]
            for event in connection.execute(
                select(events)
                .where(events.c.delivery_id.in_(ids))
                .order_by(events.c.occurred_at, events.c.id)
            ):
                happened.setdefault(event.delivery_id, []).append(
                    EventLine(
                        event.kind,
                        event.occurred_at,
                        event.cta_id,
                        bool(event.suspected_bot),
                        event.user_agent,
                        event.source,
                    )
                )
    details = [DeliveryDetail(**row._mapping, events=happened.get(row.id, [])) for row in found]
    return details, len(rows) > limit


# -- the campaign list --------------------------------------------------------------------
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


# -- the mailbox viewer's lookup ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Place:
    """Where a message went: the contact's city and the language of the delivery."""

    organisation: str
    country: str
    language: str


def delivery_places(
    engine: Engine, *, delivery_ids: list[int], emails: list[str]
) -> tuple[dict[int, Place], dict[str, Place]]:
    """City and language by delivery id, and (for messages without one) by contact address."""
    by_delivery: dict[int, Place] = {}
    by_email: dict[str, Place] = {}
    with engine.connect() as connection:
        for start in range(0, len(delivery_ids), 500):
            chunk = delivery_ids[start : start + 500]
            for row in connection.execute(
                select(
                    deliveries.c.id,
                    organisations.c.name,
                    organisations.c.country,
                    deliveries.c.language,
                )
                .join(contacts, contacts.c.id == deliveries.c.contact_id)
                .join(organisations, organisations.c.id == contacts.c.organisation_id)
                .where(deliveries.c.id.in_(chunk))
            ):
                by_delivery[row[0]] = Place(row[1], row[2], row[3])
        for start in range(0, len(emails), 500):
            chunk_emails = emails[start : start + 500]
            for row in connection.execute(
                select(
                    contacts.c.email,
                    organisations.c.name,
                    organisations.c.country,
                    contacts.c.language,
                )
                .join(organisations, organisations.c.id == contacts.c.organisation_id)
                .where(contacts.c.email.in_(chunk_emails))
            ):
                by_email[row[0]] = Place(row[1], row[2], row[3])
    return by_delivery, by_email
