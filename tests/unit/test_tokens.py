"""Link tokens: a member's click, signature or unsubscribe is only honoured for a genuine link."""

from __future__ import annotations

import base64
import random
import re
import secrets
import string
from datetime import UTC, datetime, timedelta

import pytest

from outreach.errors import TokenError
from outreach.pipeline.tokens import LinkClaims, LinkPurpose, LinkSigner

NOW = datetime(2018, 6, 20, 9, 0, tzinfo=UTC)
LIFETIME = timedelta(days=30)
ALPHABET = string.ascii_letters + string.digits + "-_"


@pytest.fixture
def signer() -> LinkSigner:
    return LinkSigner(
        secret=secrets.token_bytes(32), base_url="https://outreach.example.org/", lifetime=LIFETIME
    )


def _token(signer: LinkSigner, purpose: LinkPurpose = LinkPurpose.SIGN) -> str:
    return signer.token(
        purpose, campaign_id="world-refugee-day-2018", delivery_id=123456, cta_id="sign", now=NOW
    )


@pytest.mark.parametrize("purpose", list(LinkPurpose))
@pytest.mark.parametrize("cta_id", [None, "sign-statement"])
def test_a_genuine_token_gives_back_what_was_signed(
    signer: LinkSigner, purpose: LinkPurpose, cta_id: str | None
) -> None:
    token = signer.token(
        purpose, campaign_id="world-refugee-day-2018", delivery_id=2**40 + 7, cta_id=cta_id, now=NOW
    )
    claims = signer.verify(token, purpose, now=NOW + timedelta(days=1))
    assert claims == LinkClaims(
        purpose=purpose,
        campaign_id="world-refugee-day-2018",
        delivery_id=2**40 + 7,
        cta_id=cta_id,
        expires_at=NOW + LIFETIME,
    )


def test_tokens_are_compact_and_url_safe(signer: LinkSigner) -> None:
    token = _token(signer)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert len(token) < 100


def test_url_puts_the_purpose_and_token_after_the_base_url(signer: LinkSigner) -> None:
    url = signer.url(
        LinkPurpose.UNSUBSCRIBE, campaign_id="world-refugee-day-2018", delivery_id=5, now=NOW
    )
    prefix = "https://outreach.example.org/u/"
    assert url.startswith(prefix)
    assert (
        signer.verify(url.removeprefix(prefix), LinkPurpose.UNSUBSCRIBE, now=NOW).delivery_id == 5
    )


def test_a_token_of_another_purpose_is_refused(signer: LinkSigner) -> None:
    click = _token(signer, LinkPurpose.CLICK)
    with pytest.raises(TokenError, match="another purpose"):
        signer.verify(click, LinkPurpose.SIGN, now=NOW)


def test_an_expired_token_is_refused_and_one_about_to_expire_is_not(signer: LinkSigner) -> None:
    token = _token(signer)
    assert signer.verify(token, LinkPurpose.SIGN, now=NOW + LIFETIME).delivery_id == 123456
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token, LinkPurpose.SIGN, now=NOW + LIFETIME + timedelta(seconds=1))


def test_naive_times_are_read_as_utc(signer: LinkSigner) -> None:
    token = signer.token(
        LinkPurpose.CLICK, campaign_id="c", delivery_id=1, now=NOW.replace(tzinfo=None)
    )
    assert signer.verify(token, LinkPurpose.CLICK, now=NOW).expires_at == NOW + LIFETIME


def test_a_token_signed_with_another_secret_is_refused(signer: LinkSigner) -> None:
    other = LinkSigner(
        secret=secrets.token_bytes(32), base_url="https://outreach.example.org", lifetime=LIFETIME
    )
    with pytest.raises(TokenError, match="not genuine"):
        signer.verify(_token(other), LinkPurpose.SIGN, now=NOW)


def _decode(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_every_signed_field_is_bound_by_the_signature(signer: LinkSigner) -> None:
    """Changing any byte of the signed data (purpose, delivery, expiry, campaign, CTA) or of the
    tag, then re-encoding properly, makes the token worthless."""
    data = _decode(_token(signer))
    for index in range(len(data)):
        for bit in (0x01, 0x80):
            altered = bytearray(data)
            altered[index] ^= bit
            with pytest.raises(TokenError):
                signer.verify(_encode(bytes(altered)), LinkPurpose.SIGN, now=NOW)


def test_a_tag_cannot_be_moved_to_other_claims(signer: LinkSigner) -> None:
    mine = _decode(_token(signer))
    other = _decode(
        signer.token(LinkPurpose.SIGN, campaign_id="world-refugee-day-2018", delivery_id=1, now=NOW)
    )
    with pytest.raises(TokenError):
        signer.verify(_encode(other[:-16] + mine[-16:]), LinkPurpose.SIGN, now=NOW)


def test_fuzzed_tokens_raise_token_error_and_nothing_else(signer: LinkSigner) -> None:
    token = _token(signer)
    rng = random.Random(20180620)
    candidates: list[object] = ["", "=", "====", "A", "AA", "AAA", "é", " ", "\x00", token + "\n"]
    candidates += [token[:cut] for cut in range(len(token))]
    candidates += [token + extra for extra in ("A", "AA", "=", "==", ".", "%3D")]
    candidates += [token[:i] + c + token[i + 1 :] for i in range(len(token)) for c in "A_-9z"]
    candidates += ["".join(rng.choices(ALPHABET, k=rng.randint(1, 120))) for _ in range(300)]
    candidates += [_encode(rng.randbytes(rng.randint(0, 90))) for _ in range(300)]
    candidates += ["A" * 10_000, None, 12345, b"bytes"]
    for candidate in candidates:
        if candidate == token:
            continue
        with pytest.raises(TokenError):
            signer.verify(candidate, LinkPurpose.SIGN, now=NOW)  # type: ignore[arg-type]


def test_only_the_canonical_spelling_of_a_token_is_accepted(signer: LinkSigner) -> None:
    """Base64 leaves spare bits in the last character; another spelling is not the same link."""
    tokens = [
        signer.token(LinkPurpose.CLICK, campaign_id="c" * n, delivery_id=1, now=NOW)
        for n in range(1, 4)
    ]
    spare = [t for t in tokens if len(t) % 4]
    assert spare
    for token in spare:
        last = ALPHABET.index(token[-1])
        for other in ALPHABET:
            if other != token[-1] and ALPHABET.index(other) >> 2 == last >> 2:
                with pytest.raises(TokenError):
                    signer.verify(token[:-1] + other, LinkPurpose.CLICK, now=NOW)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"campaign_id": "", "delivery_id": 1}, "campaign id"),
        ({"campaign_id": "c", "delivery_id": -1}, "delivery id"),
        ({"campaign_id": "c", "delivery_id": 1, "cta_id": ""}, "call-to-action"),
    ],
)
def test_signing_nonsense_is_a_programming_error(
    signer: LinkSigner, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        signer.token(LinkPurpose.CLICK, **kwargs)  # type: ignore[arg-type]


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        LinkSigner(secret=b"", base_url="https://x.example", lifetime=LIFETIME)
