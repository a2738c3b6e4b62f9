"""``/metrics``: what Prometheus scrapes after a real send, and nothing when it is switched off."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from outreach import operations
from outreach.bootstrap import Services
from outreach.settings import Settings
from outreach.web.app import create_app
from tests.conftest import REPO


def _services(tmp_path: Path, *, metrics: bool) -> Services:
    return Services(
        settings=Settings(
            database_url=f"sqlite:///{tmp_path / 'outreach.db'}",
            mailer=f"file://{tmp_path / 'outbox'}",
            secret_key="metrics-test-secret",
            templates_dir=str(REPO / "templates"),
            metrics=metrics,
        )
    )


def test_metrics_count_what_was_sent(tmp_path: Path) -> None:
    services = _services(tmp_path, metrics=True)
    operations.import_contacts(
        services, REPO / "campaigns" / "audiences" / "metropolis-members.csv", encoding=None
    )
    campaign = services.load_campaign(REPO / "campaigns" / "world-refugee-day-2018.yaml")
    outcome = asyncio.run(operations.send_campaign(services, campaign))
    response = TestClient(create_app(services)).get("/metrics")
    assert response.status_code == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    labels = (("campaign", campaign.id), ("status", "sent"))
    assert samples[("outreach_deliveries", labels)] == outcome.summary.sent > 0
    attempts = samples[("outreach_delivery_attempts_total", (("campaign", campaign.id),))]
    assert attempts == outcome.summary.sent
    assert samples[("outreach_delivery_latency_seconds_count", ())] == outcome.summary.sent
    services.close()


def test_metrics_are_off_unless_asked_for(tmp_path: Path) -> None:
    services = _services(tmp_path, metrics=False)
    assert TestClient(create_app(services)).get("/metrics").status_code == 404
    services.close()
