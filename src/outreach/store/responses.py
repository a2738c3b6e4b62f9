"""What members did with a campaign: the queries behind the admin report.

``campaign_report`` (``store.reports``) counts deliveries by status; this module adds the
rest: which organisations responded (who signed, when) and which have not, by region with the
names of the contacts mailed; clicks per call to action, people apart from suspected link
scanners; unsubscribes and bounces; a timeline of sends, clicks and signatures; the response
rate by region. The campaign list is in ``store.reports``, the exports in ``store.exports``,
the delivery detail search in ``store.search``.

Every count is a ``GROUP BY`` in the database; Python only arranges the grouped rows. The
filters use the indexes of migration 0002 (events by campaign, kind, scanner flag, time and
call to action; responses by campaign and time) and of 0001 (deliveries by campaign).
"""

from __future__ import annotations

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
    cast,
    extract,
    false,
    func,
    or_,
    select,
    union,
)

from outreach.store.tables import (
    campaigns,
    contacts,
    deliveries,
    delivery_recipients,
    events,
    organisations,
    responses,
    suppressions,
)

CLICKED, BOUNCED, UNSUBSCRIBED = "clicked", "bounced", "unsubscribed"
TIMELINE_STEPS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)


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


# -- the report ---------------------------------------------------------------------------
def responses_report(engine: Engine, campaign_id: str) -> ResponsesReport:
    with engine.connect() as connection:
        return ResponsesReport(
            regions=organisations_by_region(connection, campaign_id),
            clicks=_clicks(connection, campaign_id),
            unsubscribed=_unsubscribed(connection, campaign_id),
            bounced=_bounced(connection, campaign_id),
            timeline=_timeline(connection, campaign_id),
        )


def response_summary(engine: Engine, campaign_id: str) -> dict[str, Any]:
    """For ``outreach report --format json``: who responded, who has not, clicks, unsubscribes."""
    with engine.connect() as connection:
        regions = organisations_by_region(connection, campaign_id)
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


def organisations_by_region(connection: Connection, campaign_id: str) -> list[RegionResponses]:
    """The organisations mailed or answering, grouped by region and sorted by name, each with
    the contacts mailed and its answers; the report and the response export use it."""
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
        .select_from(delivery_recipients)
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
