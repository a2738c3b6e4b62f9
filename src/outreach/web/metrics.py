"""``/metrics`` for Prometheus (on with ``OUTREACH_METRICS=true``): what the senders did,
read from the database, so it counts every worker process alike.

- ``outreach_deliveries{campaign,status}``: deliveries by status (``sending`` = in flight);
- ``outreach_delivery_attempts_total{campaign}``: hand-overs tried, retries included;
- ``outreach_deliveries_waiting_retry{campaign}``: queued again after a temporary failure;
- ``outreach_delivery_latency_seconds``: from queued to accepted, over the last 1,000 sent.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import Engine, func, select

from outreach.store.tables import deliveries
from outreach.web.deps import get_services

router = APIRouter()
LATENCY_SAMPLE = 1000


class DeliveryCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        by_status = GaugeMetricFamily(
            "outreach_deliveries",
            "Deliveries by campaign and status",
            labels=["campaign", "status"],
        )
        attempts = GaugeMetricFamily(
            "outreach_delivery_attempts_total",
            "Hand-overs tried, retries included",
            labels=["campaign"],
        )
        waiting = GaugeMetricFamily(
            "outreach_deliveries_waiting_retry",
            "Deliveries queued again after a temporary failure",
            labels=["campaign"],
        )
        latency = SummaryMetricFamily(
            "outreach_delivery_latency_seconds",
            f"Seconds from queued to accepted, over the last {LATENCY_SAMPLE} messages sent",
        )
        with self.engine.connect() as connection:
            grouped = connection.execute(
                select(
                    deliveries.c.campaign_id,
                    deliveries.c.status,
                    func.count(),
                    func.sum(deliveries.c.attempts),
                    func.sum(deliveries.c.attempts > 0),
                ).group_by(deliveries.c.campaign_id, deliveries.c.status)
            ).all()
            recent = connection.execute(
                select(deliveries.c.queued_at, deliveries.c.sent_at)
                .where(deliveries.c.sent_at.is_not(None))
                .order_by(deliveries.c.sent_at.desc())
                .limit(LATENCY_SAMPLE)
            ).all()
        tried: dict[str, float] = {}
        for campaign, status, count, attempted, retried in grouped:
            by_status.add_metric([campaign, status], count)
            tried[campaign] = tried.get(campaign, 0) + float(attempted or 0)
            if status == "queued":
                waiting.add_metric([campaign], float(retried or 0))
        for campaign, total in tried.items():
            attempts.add_metric([campaign], total)
        seconds = [(sent - queued).total_seconds() for queued, sent in recent]
        latency.add_metric([], count_value=len(seconds), sum_value=sum(seconds))
        yield from (by_status, attempts, waiting, latency)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeliveryCollector(get_services(request).engine))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
