"""Campaign definitions survive the round trip through the store on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

from outreach.domain.delivery import CampaignState
from outreach.pipeline.campaigns import load_campaign
from outreach.store.campaigns import (
    campaign_state,
    load_stored_campaign,
    save_campaign,
    set_campaign_state,
)
from outreach.store.engine import open_engine
from tests.conftest import REPO

NOW = datetime(2027, 6, 1, tzinfo=UTC)


def test_the_shipped_campaign_round_trips(database_url: str) -> None:
    campaign = load_campaign(
        REPO / "campaigns" / "world-refugee-day-2018.yaml", templates={"newsletter", "reminder"}
    )
    engine = open_engine(database_url)
    save_campaign(engine, campaign, source_path="campaigns/wrd.yaml", now=NOW)
    assert load_stored_campaign(engine, campaign.id) == campaign
    assert campaign_state(engine, campaign.id) == (CampaignState.DRAFT, None)
    set_campaign_state(engine, campaign.id, CampaignState.PAUSED, now=NOW, reason="by staff")
    save_campaign(engine, campaign, source_path=None, now=NOW)  # refreshing keeps the state
    assert campaign_state(engine, campaign.id) == (CampaignState.PAUSED, "by staff")
    assert load_stored_campaign(engine, "no-such-campaign") is None
