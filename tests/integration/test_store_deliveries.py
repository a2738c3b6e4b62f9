"""The outbox and ledger on both real databases: claims, results, recovery, no duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert, select

from outreach.ports import NewDelivery
from outreach.store.deliveries import SqlDeliveryLedger
from outreach.store.engine import open_engine
from outreach.store.suppressions import suppress
from outreach.store.tables import campaigns, contacts, deliveries, organisations

NOW = datetime(2027, 6, 20, 7, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)


def _seed(engine: Engine, n: int) -> list[int]:
    with engine.begin() as connection:
        org_id = connection.execute(
            insert(organisations).values(
                name="São Paulo", country="BR", region="Latin America", timezone="America/Sao_Paulo"
            )
        ).inserted_primary_key[0]
        connection.execute(
            insert(campaigns).values(
                id="wrd", name="WRD", state="draft", definition={}, created_at=NOW, updated_at=NOW
            )
        )
        ids = []
        for i in range(n):
            ids.append(
                connection.execute(
                    insert(contacts).values(
                        organisation_id=org_id,
                        email=f"c{i}@saopaulo.example.org",
                        name=f"Contato {i}",
                        language="pt",
                        tags=["member"],
                        created_at=NOW,
                        updated_at=NOW,
                    )
                ).inserted_primary_key[0]
            )
    return ids


def _ledger(url: str, n: int) -> tuple[SqlDeliveryLedger, list[int]]:
    engine = open_engine(url)
    ids = _seed(engine, n)
    ledger = SqlDeliveryLedger(engine)
    rows = [NewDelivery(contact_id=i, language="en", suppressed=False) for i in ids]
    assert ledger.enqueue(campaign_id="wrd", round=0, rows=rows, now=NOW) == n
    return ledger, ids


def _claim(ledger: SqlDeliveryLedger, worker: str, limit: int, now: datetime = NOW) -> list[int]:
    return [
        c.recipient.delivery_id
        for c in ledger.claim(
            campaign_id="wrd", round=0, worker=worker, limit=limit, now=now, lease=LEASE
        )
    ]


def test_enqueue_twice_adds_nobody_twice(database_url: str) -> None:
    ledger, ids = _ledger(database_url, 5)
    rows = [NewDelivery(contact_id=i, language="en", suppressed=False) for i in ids]
    assert ledger.enqueue(campaign_id="wrd", round=0, rows=rows, now=NOW) == 0
    assert ledger.counts(campaign_id="wrd", round=0, now=NOW).queued == 5


def test_claims_never_overlap_and_carry_the_recipient(database_url: str) -> None:
    ledger, _ = _ledger(database_url, 7)
    first = ledger.claim(campaign_id="wrd", round=0, worker="a", limit=4, now=NOW, lease=LEASE)
    second = _claim(ledger, "b", 4)
    assert len(first) == 4 and len(second) == 3
    assert not {c.recipient.delivery_id for c in first} & set(second)
    assert first[0].recipient.organisation == "São Paulo"
    assert first[0].recipient.timezone == "America/Sao_Paulo"
    assert _claim(ledger, "c", 4) == []
    counts = ledger.counts(campaign_id="wrd", round=0, now=NOW)
    assert counts.get("sending") == 7 and counts.queued == 0


def test_results_are_recorded_per_delivery(database_url: str) -> None:
    ledger, _ = _ledger(database_url, 3)
    a, b, c = _claim(ledger, "w", 3)
    ledger.mark_sent(a, reply="250 2.0.0 queued as A1", now=NOW)
    ledger.mark_failed(b, error="550 5.1.1 no such user", now=NOW)
    later = NOW + timedelta(seconds=30)
    ledger.mark_retry(c, error="451 try later", next_attempt_at=later, now=NOW)
    counts = ledger.counts(campaign_id="wrd", round=0, now=NOW)
    assert counts.by_status == {"sent": 1, "failed": 1, "queued": 1}
    assert counts.next_retry_at == later
    assert _claim(ledger, "w", 10) == []  # not due yet
    assert _claim(ledger, "w", 10, now=later) == [c]
    with ledger.engine.connect() as connection:
        row = connection.execute(select(deliveries).where(deliveries.c.id == b)).one()
    assert row.last_error == "550 5.1.1 no such user" and row.attempts == 1


def test_recover_requeues_expired_claims_only(database_url: str) -> None:
    ledger, _ = _ledger(database_url, 4)
    claimed = _claim(ledger, "dead", 4)
    ledger.mark_sent(claimed[0], reply="250 ok", now=NOW)
    assert ledger.recover(campaign_id="wrd", as_unknown=False, now=NOW) == 0  # lease still valid
    assert ledger.recover(campaign_id="wrd", as_unknown=False, now=NOW + LEASE * 2) == 3
    counts = ledger.counts(campaign_id="wrd", round=0, now=NOW)
    assert counts.by_status == {"sent": 1, "queued": 3}


def test_a_renewed_lease_is_not_recovered_and_a_recovered_claim_is_not_renewed(
    database_url: str,
) -> None:
    ledger, _ = _ledger(database_url, 4)
    slow = _claim(ledger, "slow", 2)  # held back by a rate limit
    gone = _claim(ledger, "gone", 2)  # its process died

    later = NOW + LEASE * 0.9
    held = ledger.renew(slow, worker="slow", until=later + LEASE, now=later)
    assert held == set(slow)
    assert ledger.renew(slow, worker="someone else", until=later + LEASE, now=later) == set()
    expired = NOW + LEASE * 1.5
    assert ledger.recover(campaign_id="wrd", as_unknown=False, now=expired) == 2  # only "gone"
    assert set(_claim(ledger, "other", 5, now=expired)) == set(gone)

    # "gone" was only frozen: waking up, it finds its claims belong to another worker now
    assert ledger.renew(gone, worker="gone", until=expired + LEASE, now=expired) == set()
    assert ledger.claimants(campaign_id="wrd") == {"slow", "other"}


def test_recover_as_unknown_marks_only_what_was_being_handed_over(database_url: str) -> None:
    ledger, _ = _ledger(database_url, 5)
    claimed = _claim(ledger, "dead", 5)
    assert ledger.handing_over(claimed[:2], worker="dead", now=NOW) == set(claimed[:2])
    assert ledger.handing_over(claimed[2:], worker="someone else", now=NOW) == set()
    assert ledger.recover(campaign_id="wrd", as_unknown=True, now=NOW + LEASE * 2) == 5
    counts = ledger.counts(campaign_id="wrd", round=0, now=NOW)
    assert counts.by_status == {"unknown": 2, "queued": 3}

    # a delivery claimed again starts unmarked: only its own hand-over counts
    again = _claim(ledger, "next", 5, now=NOW + LEASE * 2)
    assert len(again) == 3
    later = NOW + LEASE * 5
    assert ledger.recover(campaign_id="wrd", as_unknown=True, now=later) == 3
    assert ledger.counts(campaign_id="wrd", round=0, now=later).by_status == {
        "unknown": 2,
        "queued": 3,
    }


def test_release_gives_back_unsent_claims(database_url: str) -> None:
    ledger, _ = _ledger(database_url, 3)
    claimed = _claim(ledger, "w", 3)
    ledger.mark_sent(claimed[0], reply="250 ok", now=NOW)
    ledger.release(claimed, worker="someone else", now=NOW)  # not theirs: nothing changes
    assert ledger.claimants(campaign_id="wrd") == {"w"}
    ledger.release(claimed, worker="w", now=NOW)  # the sent one is not touched
    assert ledger.counts(campaign_id="wrd", round=0, now=NOW).by_status == {
        "sent": 1,
        "queued": 2,
    }


def test_claim_flags_addresses_suppressed_after_queueing(database_url: str) -> None:
    ledger, _ = _ledger(database_url, 2)
    suppress(ledger.engine, "c1@saopaulo.example.org", reason="unsubscribed", now=NOW)
    claimed = ledger.claim(campaign_id="wrd", round=0, worker="w", limit=5, now=NOW, lease=LEASE)
    flags = {c.recipient.email: c.suppressed for c in claimed}
    assert flags == {"c0@saopaulo.example.org": False, "c1@saopaulo.example.org": True}


def test_concurrent_claimers_never_take_the_same_delivery(database_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ledger, _ = _ledger(database_url, 300)

    def drain(worker: str) -> list[int]:
        taken: list[int] = []
        while batch := _claim(ledger, worker, 7):
            taken.extend(batch)
        return taken

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(drain, ["w1", "w2", "w3", "w4"]))
    everything = [i for taken in results for i in taken]
    assert len(everything) == 300 and len(set(everything)) == 300
