"""Campaign rows: the definition last sent or scheduled, and the campaign's state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from outreach.domain.campaign import Campaign
from outreach.domain.delivery import CampaignState
from outreach.store.tables import campaigns


def save_campaign(
    engine: Engine, campaign: Campaign, *, source_path: str | None, now: datetime
) -> None:
    """Store (or refresh) the campaign's definition; a new campaign starts as a draft."""
    definition: dict[str, Any] = campaign.model_dump(mode="json")
    with engine.begin() as connection:
        exists = connection.scalar(select(campaigns.c.id).where(campaigns.c.id == campaign.id))
        if exists:
            connection.execute(
                update(campaigns)
                .where(campaigns.c.id == campaign.id)
                .values(
                    name=campaign.name,
                    definition=definition,
                    source_path=source_path,
                    updated_at=now,
                )
            )
        else:
            connection.execute(
                insert(campaigns).values(
                    id=campaign.id,
                    name=campaign.name,
                    state=CampaignState.DRAFT.value,
                    definition=definition,
                    source_path=source_path,
                    created_at=now,
                    updated_at=now,
                )
            )


def load_stored_campaign(engine: Engine, campaign_id: str) -> Campaign | None:
    with engine.connect() as connection:
        definition = connection.scalar(
            select(campaigns.c.definition).where(campaigns.c.id == campaign_id)
        )
    return None if definition is None else Campaign.model_validate(definition)


def campaign_state(engine: Engine, campaign_id: str) -> tuple[CampaignState, str | None] | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(campaigns.c.state, campaigns.c.state_reason).where(campaigns.c.id == campaign_id)
        ).first()
    return None if row is None else (CampaignState(row.state), row.state_reason)


# a campaign in one of these states is held: nothing more goes out until it is resumed
HELD = (CampaignState.PAUSED, CampaignState.CANCELLED)


def held_reason(engine: Engine, campaign_id: str) -> str | None:
    """Why a send of this campaign must stop now (paused or cancelled elsewhere, with the
    reason given, or no longer stored), or None when it may go on."""
    stored = campaign_state(engine, campaign_id)
    if stored is None:
        return "the campaign no longer exists"
    state, reason = stored
    if state in HELD:
        return f"the campaign was {state.value}" + (f" ({reason})" if reason else "")
    return None


def set_campaign_state(
    engine: Engine,
    campaign_id: str,
    state: CampaignState,
    *,
    now: datetime,
    reason: str | None = None,
) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(campaigns)
            .where(campaigns.c.id == campaign_id)
            .values(state=state.value, state_reason=reason, updated_at=now)
        )


def list_campaigns(engine: Engine) -> list[tuple[str, str, CampaignState]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(campaigns.c.id, campaigns.c.name, campaigns.c.state).order_by(
                campaigns.c.created_at.desc()
            )
        ).all()
    return [(row.id, row.name, CampaignState(row.state)) for row in rows]
