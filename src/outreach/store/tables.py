"""The schema, as SQLAlchemy Core tables. Alembic migrations under ``migrations/`` create it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no offset; we store UTC and say so)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Timestamp = UtcDateTime

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

organisations = Table(
    "organisations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("country", String(2), nullable=False),
    Column("region", String(100), nullable=False),
    Column("timezone", String(64), nullable=False),
    UniqueConstraint("name", "country"),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("organisation_id", ForeignKey("organisations.id"), nullable=False, index=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("language", String(16), nullable=False),
    Column("tags", JSON, nullable=False),
    Column("created_at", Timestamp(), nullable=False),
    Column("updated_at", Timestamp(), nullable=False),
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("definition", JSON, nullable=False),
    Column("source_path", Text, nullable=True),
    Column("state_reason", Text, nullable=True),
    Column("created_at", Timestamp(), nullable=False),
    Column("updated_at", Timestamp(), nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign_id", ForeignKey("campaigns.id"), nullable=False),
    Column("contact_id", ForeignKey("contacts.id"), nullable=False, index=True),
    Column("round", Integer, nullable=False, default=0),
    Column("language", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("provider_message_id", String(255), nullable=True),
    Column("next_attempt_at", Timestamp(), nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("lease_until", Timestamp(), nullable=True),
    # set just before a claimed delivery is handed over, when recovery marks such deliveries
    # `unknown` (OUTREACH_RECOVER_AS=unknown); cleared by the next claim
    Column("handed_over_at", Timestamp(), nullable=True),
    Column("queued_at", Timestamp(), nullable=False),
    Column("sent_at", Timestamp(), nullable=True),
    Column("updated_at", Timestamp(), nullable=False),
    UniqueConstraint("campaign_id", "contact_id", "round"),
    Index("ix_deliveries_queue", "campaign_id", "round", "status", "id"),
)

#: deliveries joined to the contact each went to and that contact's organisation (the city)
delivery_recipients = deliveries.join(contacts, contacts.c.id == deliveries.c.contact_id).join(
    organisations, organisations.c.id == contacts.c.organisation_id
)


events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("delivery_id", ForeignKey("deliveries.id"), nullable=True, index=True),
    Column("campaign_id", String(64), nullable=True, index=True),
    Column("kind", String(16), nullable=False),
    Column("occurred_at", Timestamp(), nullable=False),
    Column("cta_id", String(64), nullable=True),
    Column("user_agent", Text, nullable=True),
    Column("suspected_bot", Boolean, nullable=False, default=False),
    Column("source", String(32), nullable=False, default="outreach"),
    Column("dedupe_key", String(255), nullable=True, unique=True),
    Column("payload", JSON, nullable=True),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("reason", String(32), nullable=False),
    Column("campaign_id", String(64), nullable=True),
    Column("detail", Text, nullable=True),
    Column("created_at", Timestamp(), nullable=False),
)

responses = Table(
    "responses",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign_id", ForeignKey("campaigns.id"), nullable=False),
    Column("organisation_id", ForeignKey("organisations.id"), nullable=False),
    Column("contact_id", ForeignKey("contacts.id"), nullable=True),
    Column("delivery_id", ForeignKey("deliveries.id"), nullable=True),
    Column("cta_id", String(64), nullable=False),
    Column("signer_name", String(200), nullable=False),
    Column("signer_title", String(200), nullable=False),
    Column("created_at", Timestamp(), nullable=False),
    UniqueConstraint("campaign_id", "organisation_id", "cta_id"),
)

admin_users = Table(
    "admin_users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(100), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", Timestamp(), nullable=False),
)

# Indexes the admin report filters and groups on (migration 0002): clicks per call to action
# and the timeline read only the index, never the event rows.
Index(
    "ix_events_campaign_kind_bot",
    events.c.campaign_id,
    events.c.kind,
    events.c.suspected_bot,
    events.c.occurred_at,
    events.c.cta_id,
)
Index("ix_responses_campaign_created", responses.c.campaign_id, responses.c.created_at)

# --- scheduling (migration 0003) -----------------------------------------------------------
from sqlalchemy import Float, LargeBinary, Unicode  # noqa: E402

# Which process schedules: one row per lease name, renewed by the holder's heartbeat.
scheduler_leases = Table(
    "scheduler_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("acquired_at", Timestamp(), nullable=False),
    Column("heartbeat_at", Timestamp(), nullable=False),
    Column("expires_at", Timestamp(), nullable=False),
)

# One row per campaign x round x timezone group: when it is due and what became of it.
scheduled_sends = Table(
    "scheduled_sends",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign_id", ForeignKey("campaigns.id"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("local_time", String(32), nullable=False),
    Column("due_at", Timestamp(), nullable=False),
    Column("contacts", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("note", Text, nullable=True),
    Column("detail", Text, nullable=True),
    Column("created_at", Timestamp(), nullable=False),
    Column("started_at", Timestamp(), nullable=True),
    Column("finished_at", Timestamp(), nullable=True),
    UniqueConstraint("campaign_id", "round", "timezone"),
    Index("ix_scheduled_sends_state_due", "state", "due_at"),
)

# What the admins were told about a round (0 = first send, 1.. = reminders): kind "summary"
# when it completed, "missed" when a group of it was missed; each once.
round_reports = Table(
    "round_reports",
    metadata,
    Column("campaign_id", ForeignKey("campaigns.id"), primary_key=True),
    Column("round", Integer, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("reported_at", Timestamp(), nullable=False),
)

# APScheduler 3's SQLAlchemyJobStore table, as the job store itself defines it.
apscheduler_jobs = Table(
    "apscheduler_jobs",
    metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
