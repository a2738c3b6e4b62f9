"""MIME messages: the bytes handed to a mailer for one delivery.

``MessageSkeleton`` is built once per compiled variant: the stdlib ``email`` package folds the
constant headers (From, Reply-To, Subject, List-Id, ...) once, and ``build`` only adds what
differs per recipient (To, Date, Message-ID, List-Unsubscribe, X-Outreach-Delivery) and the two
quoted-printable body parts. ``build_with_email_message`` makes the same message the ordinary
way with ``EmailMessage``; tests hold the skeleton to it, and the benchmark measures both.

Rules every message follows:

- ``List-Unsubscribe: <https://...>`` stays on one line, never RFC 2047 encoded, next to
  ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058);
- a carriage return, line feed or other control character in any header value is refused
  with ``RenderError`` (it would let a value inject headers);
- an internationalised domain goes into address headers as IDNA (``xn--...``); a non-ASCII
  display name becomes encoded-words of at most 75 characters;
- Message-ID is derived from the delivery, so a retried delivery carries the same id.
"""

from __future__ import annotations

import binascii
import codecs
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime
from typing import Any

from outreach.domain.campaign import Campaign
from outreach.domain.delivery import Recipient
from outreach.errors import RenderError
from outreach.pipeline.render import Links, Personalised, Slotted, Variant

_UNFOLDED = frozenset({"list-unsubscribe", "list-unsubscribe-post"})
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+$")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+( [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_DOT_ATOM = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$"
)
_UNSUBSCRIBE_URL = re.compile(r"^https?://[\x21-\x7e]+$")
_ONE_CLICK = "List-Unsubscribe=One-Click"
_MAX_LINE = 998


class OutreachPolicy(EmailPolicy):
    """``policy.SMTP`` except that List-Unsubscribe headers are never folded or encoded.

    The stock policy turns a long ``List-Unsubscribe`` into encoded-words that mail providers
    cannot read as a URI; these headers are ASCII and shorter than 998 characters.
    """

    def fold(self, name: str, value: Any) -> str:
        if name.lower() in _UNFOLDED:
            return f"{name}: {value}{self.linesep}"
        return str(super().fold(name, value))

    def fold_binary(self, name: str, value: Any) -> bytes:
        if name.lower() in _UNFOLDED:
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return bytes(super().fold_binary(name, value))


OUTREACH_POLICY = OutreachPolicy(linesep="\r\n")


def header_value(value: str, *, field: str) -> str:
    """``value`` if it can go into header ``field``; ``RenderError`` if it could inject one."""
    if _CONTROL.search(value):
        raise RenderError(f"{field}: {value!r} contains a line break or control character")
    return value


def ascii_address(address: str, *, field: str = "address") -> str:
    """``address`` with its domain in IDNA (``bogotá.example`` -> ``xn--bogot-1qa.example``)."""
    header_value(address, field=field)
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise RenderError(f"{field}: {address!r} is not an email address")
    if not local.isascii():
        raise RenderError(f"{field}: {address!r} has a non-ASCII local part (needs SMTPUTF8)")
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError as err:
        raise RenderError(f"{field}: {address!r} has an invalid domain name") from err
    return f"{local}@{ascii_domain}"


def _address(name: str, address: str, *, field: str) -> Address:
    header_value(name, field=field)
    addr_spec = ascii_address(address, field=field)
    try:
        return Address(display_name=name, addr_spec=addr_spec)
    except (ValueError, IndexError) as err:
        raise RenderError(f"{field}: {address!r} is not a valid email address: {err}") from err


def _fold(name: str, value: object) -> bytes:
    """One header, folded and encoded by the stdlib policy, CRLF-terminated."""
    header = OUTREACH_POLICY.header_factory(name, str(value))
    folded: str = header.fold(policy=OUTREACH_POLICY)
    return folded.encode("ascii")


def _display_name(recipient: Recipient) -> str:
    """The recipient's name as it goes into To: checked, whitespace collapsed."""
    return " ".join(header_value(recipient.name, field="recipient name").split())


def _phrase_words(name: str) -> list[str]:
    """``name`` as RFC 5322 phrase words: atoms, one quoted string, or encoded-words.

    In a name with non-ASCII letters, plain ASCII words stay as they are and each run of other
    words becomes encoded-words, spaces inside the run included (a decoder drops the whitespace
    between two adjacent encoded-words).
    """
    if name.isascii() and "=?" not in name:
        if _PLAIN_NAME.match(name):
            return name.split(" ")
        return ['"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    words: list[str] = []
    run: list[str] = []
    for word in name.split(" "):
        if _ATOM.match(word) and "=?" not in word:
            if run:
                words += _encoded_words(" ".join(run))
                run = []
            words.append(word)
        else:
            run.append(word)
    if run:
        words += _encoded_words(" ".join(run))
    return words


def _encoded_words(text: str) -> list[str]:
    """``text`` as base64 encoded-words of at most 45 bytes of UTF-8 each (72 characters, under
    the limit of 75), never splitting a character."""
    words: list[str] = []
    chunk = b""
    for char in text:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > 45:
            words.append(_encoded_word(chunk))
            chunk = b""
        chunk += encoded
    words.append(_encoded_word(chunk))
    return words


def _encoded_word(data: bytes) -> str:
    return f"=?utf-8?b?{binascii.b2a_base64(data, newline=False).decode('ascii')}?="


def _to_header(recipient: Recipient) -> bytes:
    name = _display_name(recipient)
    email = recipient.email.strip()
    if email.isascii() and _DOT_ATOM.match(email):
        addr_spec = email
    else:
        addr_spec = _address("", email, field="recipient").addr_spec
    words = [*_phrase_words(name), f"<{addr_spec}>"] if name else [addr_spec]
    lines, line = [], "To:"
    for word in words:
        if len(line) + 1 + len(word) > 78 and line != "To:":
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    if any(len(piece) > _MAX_LINE for piece in lines):
        raise RenderError(f"recipient: {name!r} is too long for a mail header")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


# --- quoted-printable ------------------------------------------------------------------------

_HEX = [f"={byte:02X}" for byte in range(256)]
_SAFE_BYTES = bytes(range(0x20, 0x7F)) + b"\t\n"
_CONTROL_BYTE = re.compile(rb"[^\x20-\x7e\t\n]")


def _qp_escape(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeEncodeError):
        raise err
    chunk = err.object[err.start : err.end].encode("utf-8")
    return "".join([_HEX[byte] for byte in chunk]), err.end


codecs.register_error("outreach.quoted-printable", _qp_escape)


def _quoted_printable(text: str) -> bytes:
    """``text`` (newlines already ``\\n``) as quoted-printable lines of at most 76 characters.

    A piece that does not end with a newline gets a soft line break, so encoded pieces can be
    concatenated: a precompiled segment, a recipient's value, the next segment, ...
    """
    if not text:
        return b""
    data = text.replace("=", "=3D").encode("ascii", "outreach.quoted-printable")
    if data.translate(None, _SAFE_BYTES):
        data = _CONTROL_BYTE.sub(lambda match: _HEX[match[0][0]].encode("ascii"), data)
    data = data.replace(b" \n", b"=20\n").replace(b"\t\n", b"=09\n")
    if data.endswith((b" ", b"\t")):
        data = data[:-1] + _HEX[data[-1]].encode("ascii")
    lines = data.split(b"\n")
    out: list[bytes] = []
    last = len(lines) - 1
    for index, line in enumerate(lines):
        limit = 75 if index == last else 76
        start, size = 0, len(line)
        while size - start > limit:
            cut = start + 75
            if line[cut - 1] == 0x3D:  # never split "=XX"
                cut -= 1
            elif line[cut - 2] == 0x3D:
                cut -= 2
            out.append(line[start:cut] + b"=")
            start = cut
        out.append(line[start:])
    encoded = b"\r\n".join(out)
    return encoded + b"=\r\n" if lines[-1] else encoded


def _normalise(text: str) -> str:
    """Line breaks as ``\\n`` and a final newline: the body as the stdlib would send it."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


@dataclass(frozen=True, slots=True)
class _EncodedBody:
    """A slotted body with every literal segment already quoted-printable encoded."""

    segments: tuple[bytes, ...]
    slots: tuple[str, ...]

    @classmethod
    def of(cls, slotted: Slotted) -> _EncodedBody:
        *head, last = (s.replace("\r\n", "\n").replace("\r", "\n") for s in slotted.segments)
        segments = [*head, last if last.endswith("\n") else last + "\n"]
        return cls(tuple(_quoted_printable(s) for s in segments), slotted.slots)

    def fill(self, values: Mapping[str, str], cache: dict[str, bytes]) -> list[bytes]:
        parts = [self.segments[0]]
        for index, slot in enumerate(self.slots, 1):
            value = values[slot]
            encoded = cache.get(value)
            if encoded is None:
                encoded = cache[value] = _quoted_printable(value)
            parts.append(encoded)
            parts.append(self.segments[index])
        return parts


def _unsubscribe_value(links: Links) -> str:
    url = links.unsubscribe
    if not _UNSUBSCRIBE_URL.match(url) or ">" in url or len(url) > _MAX_LINE - 20:
        raise RenderError(f"unsubscribe link: {url!r} cannot go into List-Unsubscribe")
    return f"<{url}>"


def _domain(campaign: Campaign) -> str:
    return ascii_address(str(campaign.sender.address), field="sender").rpartition("@")[2]


def _constant_headers(
    variant: Variant, campaign: Campaign, list_id_domain: str | None
) -> list[tuple[str, object]]:
    """The headers every recipient of ``variant`` gets, as (name, stdlib value) pairs."""
    sender = campaign.sender
    headers: list[tuple[str, object]] = [
        ("From", _address(sender.name, str(sender.address), field="sender"))
    ]
    if campaign.reply_to:
        headers.append(("Reply-To", _address("", str(campaign.reply_to), field="reply_to")))
    list_domain = header_value(list_id_domain or _domain(campaign), field="list id domain")
    headers += [
        ("Subject", header_value(variant.subject, field=f"subject ({variant.language})")),
        ("List-Id", f"{header_value(campaign.name, field='name')} <{campaign.id}.{list_domain}>"),
        ("List-Unsubscribe-Post", _ONE_CLICK),
        ("X-Outreach-Campaign", campaign.id),
    ]
    return headers


def _now(now: datetime) -> str:
    return format_datetime(now if now.tzinfo else now.replace(tzinfo=UTC))


class MessageSkeleton:
    """The constant part of every message of one variant, and the per-recipient fill-in."""

    __slots__ = (
        "_campaign_id",
        "_content_type",
        "_domain",
        "_head",
        "_html",
        "_parts",
        "_text",
        "_variant",
    )

    def __init__(self, *, variant: Variant, head: bytes, campaign_id: str, domain: str) -> None:
        # A quoted-printable body never contains "=_", so this boundary cannot occur in it.
        boundary = f"=_outreach_{secrets.token_hex(12)}"
        self._variant = variant
        self._campaign_id = campaign_id
        self._domain = domain
        self._head = head
        self._content_type = _fold("Content-Type", f'multipart/alternative; boundary="{boundary}"')
        delimiter = f"\r\n--{boundary}\r\n".encode("ascii")
        self._parts = (
            delimiter + b'Content-Type: text/plain; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            delimiter + b'Content-Type: text/html; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        )
        self._text = _EncodedBody.of(variant.text)
        self._html = _EncodedBody.of(variant.html)

    @classmethod
    def for_variant(
        cls, *, variant: Variant, campaign: Campaign, list_id_domain: str | None = None
    ) -> MessageSkeleton:
        headers = [*_constant_headers(variant, campaign, list_id_domain), ("MIME-Version", "1.0")]
        return cls(
            variant=variant,
            head=b"".join(_fold(name, value) for name, value in headers),
            campaign_id=campaign.id,
            domain=_domain(campaign),
        )

    def build(
        self, *, recipient: Recipient, personalised: Personalised, links: Links, now: datetime
    ) -> bytes:
        """The complete message (CRLF line endings) for one recipient."""
        delivery = recipient.delivery_id
        plain, _, end = self._parts
        return b"".join(
            (
                self._head,
                _to_header(recipient),
                f"Date: {_now(now)}\r\n"
                f"Message-ID: <{self._campaign_id}.{delivery}@{self._domain}>\r\n"
                f"X-Outreach-Delivery: {delivery}\r\n"
                f"List-Unsubscribe: {_unsubscribe_value(links)}\r\n".encode("ascii"),
                self._content_type,
                plain,
                *self._bodies(personalised),
                end,
            )
        )

    def _bodies(self, personalised: Personalised) -> tuple[bytes, bytes, bytes]:
        """Text part, delimiter, HTML part, encoded. When ``personalised`` was joined from this
        skeleton's variant, only the recipient's values are encoded; otherwise the bodies."""
        values = personalised.values
        html_delimiter = self._parts[1]
        if (
            values is None
            or values.variant is not self._variant
            or any("\r" in v or "\n" in v for v in values.raw.values())
        ):
            return (
                _quoted_printable(_normalise(personalised.text)),
                html_delimiter,
                _quoted_printable(_normalise(personalised.html)),
            )
        cache: dict[str, bytes] = {}
        return (
            b"".join(self._text.fill(values.raw, cache)),
            html_delimiter,
            b"".join(self._html.fill(values.escaped, cache)),
        )


def build_with_email_message(
    *,
    variant: Variant,
    campaign: Campaign,
    recipient: Recipient,
    personalised: Personalised,
    links: Links,
    now: datetime,
    list_id_domain: str | None = None,
) -> bytes:
    """The same message as ``MessageSkeleton.build``, built the ordinary (slower) way."""
    message = EmailMessage(policy=OUTREACH_POLICY)
    for name, value in _constant_headers(variant, campaign, list_id_domain):
        message[name] = value
    message["To"] = _address(_display_name(recipient), recipient.email, field="recipient")
    message["Date"] = _now(now)
    message["Message-ID"] = f"<{campaign.id}.{recipient.delivery_id}@{_domain(campaign)}>"
    message["X-Outreach-Delivery"] = str(recipient.delivery_id)
    message["List-Unsubscribe"] = _unsubscribe_value(links)
    message.set_content(personalised.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(
        personalised.html, subtype="html", charset="utf-8", cte="quoted-printable"
    )
    return message.as_bytes()
