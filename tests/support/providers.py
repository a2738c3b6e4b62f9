"""Local fakes of Mailgun, Postmark, SendGrid and Brevo: plain functions of an httpx request.

Each fake checks a request the way its provider documents it (method, path, credentials,
content type, required fields, size limits), fills batch placeholders the way the provider
does (Mailgun ``%recipient.x%``, SendGrid substitutions, Brevo ``{{ params.x }}``), keeps one
``Delivered`` per recipient, and answers with the provider's recorded response shapes.
``fail_next`` queues faults: a response to return, or an exception to raise, before the fake's
normal work (``deliver_first=True`` delivers, then raises: an answer lost after acceptance).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import decode_header, make_header
from email.utils import parseaddr
from typing import Any

import httpx

KEY = "key-test-0123456789"
DOMAIN = "mg.metropolis.example.org"


@dataclass(frozen=True)
class Delivered:
    """One recipient's copy, as the provider would send it."""

    to: str
    to_name: str
    sender: str
    subject: str
    html: str
    text: str
    headers: dict[str, str]
    campaign: str
    delivery: str


@dataclass
class Fault:
    response: httpx.Response | None = None
    error: Exception | None = None
    deliver_first: bool = False


@dataclass
class Fake:
    """State shared by every fake: what arrived, what to fail, how many calls."""

    name: str = ""
    delivered: list[Delivered] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # addresses the provider refuses (400/406)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(
        self,
        response: httpx.Response | None = None,
        *,
        error: Exception | None = None,
        times: int = 1,
        deliver_first: bool = False,
    ) -> None:
        for _ in range(times):
            self.faults.append(Fault(response, error, deliver_first))

    def to(self, address: str) -> list[Delivered]:
        return [d for d in self.delivered if d.to == address]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            fault = self.faults.pop(0) if self.faults else None
            if fault is not None and not fault.deliver_first:
                if fault.error is not None:
                    raise fault.error
                assert fault.response is not None
                return fault.response
            response = self.handle(request)
            if fault is not None and fault.error is not None:
                raise fault.error
            return response

    def handle(self, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError


def _json(status: int, body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def _fields(request: httpx.Request) -> list[tuple[str, str]]:
    content_type = request.headers["content-type"]
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + request.content
    form = message_from_bytes(raw)
    assert form.is_multipart(), "Mailgun takes multipart/form-data"
    fields = []
    for part in form.get_payload():  # type: ignore[union-attr]
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        fields.append((str(name), payload.decode("utf-8")))
    return fields


def _name_and_address(value: str) -> tuple[str, str]:
    name, address = parseaddr(value)
    return str(make_header(decode_header(name))) if name else "", address


class FakeMailgun(Fake):
    PATH = re.compile(r"^/v3/([^/]+)/messages$")

    def __init__(self, *, key: str = KEY, domain: str = DOMAIN) -> None:
        super().__init__(name="mailgun")
        self.key, self.domain = key, domain

    def handle(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        if auth != basic("api", self.key):
            return httpx.Response(401, text="Forbidden")
        match = self.PATH.match(request.url.path)
        if request.method != "POST" or match is None:
            return _json(404, {"message": "Not Found"})
        if match.group(1) != self.domain:
            return _json(404, {"message": f"Domain not found: {match.group(1)}"})
        fields = _fields(request)
        values: dict[str, list[str]] = {}
        for name, value in fields:
            values.setdefault(name, []).append(value)
        for required in ("from", "to", "subject"):
            if required not in values:
                return _json(400, {"message": f"'{required}' parameter is missing"})
        if "text" not in values and "html" not in values:
            return _json(400, {"message": "Need at least one of 'text' or 'html' parameters"})
        recipients = values["to"]
        if len(recipients) > 1000:
            return _json(400, {"message": "Too many recipients"})
        variables = json.loads(values.get("recipient-variables", ["{}"])[0])
        if len(recipients) > 1 and not variables:
            return _json(400, {"message": "batch sending needs recipient-variables"})
        for recipient in recipients:
            name, address = _name_and_address(recipient)
            if address in self.refuse:
                return _json(400, {"message": f"to parameter is not a valid address: {address}"})
        message_id = f"<20270620.{uuid.uuid4().hex[:12]}@{self.domain}>"
        for recipient in recipients:
            name, address = _name_and_address(recipient)
            mine = variables.get(address, {})

            def fill(text: str, mine: dict[str, str] = mine) -> str:
                return re.sub(r"%recipient\.([\w-]+)%", lambda m: str(mine.get(m[1], "")), text)

            self.delivered.append(
                Delivered(
                    to=address,
                    to_name=name,
                    sender=values["from"][0],
                    subject=fill(values["subject"][0]),
                    html=fill(values.get("html", [""])[0]),
                    text=fill(values.get("text", [""])[0]),
                    headers={k[2:]: fill(v[0]) for k, v in values.items() if k.startswith("h:")},
                    campaign=fill(values.get("v:outreach-campaign", [""])[0]),
                    delivery=fill(values.get("v:outreach-delivery", [""])[0]),
                )
            )
        return _json(200, {"id": message_id, "message": "Queued. Thank you."})


class FakePostmark(Fake):
    def __init__(self, *, token: str = KEY) -> None:
        super().__init__(name="postmark")
        self.token = token

    def _one(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not body.get("From") or not body.get("To"):
            return {"ErrorCode": 300, "Message": "Invalid email request"}
        if not body.get("HtmlBody") and not body.get("TextBody"):
            return {
                "ErrorCode": 300,
                "Message": "Provide either email TextBody or HtmlBody or both.",
            }
        name, address = _name_and_address(body["To"])
        if address in self.refuse:
            return {
                "ErrorCode": 406,
                "Message": "You tried to send to a recipient that has been marked as inactive.",
            }
        metadata = body.get("Metadata") or {}
        if len(metadata) > 10 or any(len(k) > 20 or len(str(v)) > 80 for k, v in metadata.items()):
            return {"ErrorCode": 300, "Message": "Metadata is limited to 10 short fields"}
        self.delivered.append(
            Delivered(
                to=address,
                to_name=name,
                sender=body["From"],
                subject=body.get("Subject", ""),
                html=body.get("HtmlBody", ""),
                text=body.get("TextBody", ""),
                headers={h["Name"]: h["Value"] for h in body.get("Headers", [])},
                campaign=metadata.get("outreach_campaign", ""),
                delivery=metadata.get("outreach_delivery", ""),
            )
        )
        return {
            "To": body["To"],
            "SubmittedAt": "2027-06-20T09:00:00.0000000-04:00",
            "MessageID": str(uuid.uuid4()),
            "ErrorCode": 0,
            "Message": "OK",
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("x-postmark-server-token") != self.token:
            return _json(401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."})
        if request.headers.get("content-type") != "application/json" or "json" not in (
            request.headers.get("accept") or ""
        ):
            return _json(415, {"ErrorCode": 409, "Message": "JSON request required."})
        body = json.loads(request.content)
        if request.method == "POST" and request.url.path == "/email":
            result = self._one(body)
            return _json(200 if result["ErrorCode"] == 0 else 422, result)
        if request.method == "POST" and request.url.path == "/email/batch":
            if not isinstance(body, list) or len(body) > 500:
                return _json(422, {"ErrorCode": 410, "Message": "Too many batch messages."})
            return _json(200, [self._one(item) for item in body])
        return _json(404, {"ErrorCode": 404, "Message": "Not found"})


class FakeSendGrid(Fake):
    def __init__(self, *, key: str = KEY) -> None:
        super().__init__(name="sendgrid")
        self.key = key

    @staticmethod
    def _error(message: str, field: str | None = None) -> httpx.Response:
        return _json(400, {"errors": [{"message": message, "field": field, "help": None}]})

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {self.key}":
            refused = "The provided authorization grant is invalid, expired, or revoked"
            return _json(401, {"errors": [{"message": refused, "field": None}]})
        if request.method != "POST" or request.url.path != "/v3/mail/send":
            return _json(404, {"errors": [{"message": "Not found"}]})
        body = json.loads(request.content)
        people = body.get("personalizations") or []
        if not people:
            return self._error("You must have at least one personalization.", "personalizations")
        if len(people) > 1000:
            return self._error("The personalization block is limited to 1000.", "personalizations")
        content = body.get("content") or []
        types = [part["type"] for part in content]
        if not types or (types[0] != "text/plain" and "text/plain" in types):
            return self._error("text/plain must come first", "content")
        addresses = [to["email"] for person in people for to in person.get("to", [])]
        if len(set(addresses)) != len(addresses):
            return self._error("Each unique email address should only be included once.")
        for address in addresses:
            if address in self.refuse:
                return self._error("Does not contain a valid address.", "personalizations.0.to")
        parts = {part["type"]: part["value"] for part in content}
        for person in people:
            subs = person.get("substitutions") or {}
            if sum(len(k) + len(v) for k, v in subs.items()) > 10_000:
                return self._error("substitutions too large", "personalizations.substitutions")

            def fill(text: str, subs: dict[str, str] = subs) -> str:
                for key, value in subs.items():
                    text = text.replace(key, value)
                return text

            args = {**body.get("custom_args", {}), **person.get("custom_args", {})}
            for to in person["to"]:
                self.delivered.append(
                    Delivered(
                        to=to["email"],
                        to_name=to.get("name", ""),
                        sender=body["from"]["email"],
                        subject=fill(person.get("subject") or body.get("subject", "")),
                        html=fill(parts.get("text/html", "")),
                        text=fill(parts.get("text/plain", "")),
                        headers={**body.get("headers", {}), **person.get("headers", {})},
                        campaign=args.get("outreach_campaign", ""),
                        delivery=args.get("outreach_delivery", ""),
                    )
                )
        return httpx.Response(202, headers={"X-Message-Id": f"sg{uuid.uuid4().hex[:20]}"})


class FakeBrevo(Fake):
    def __init__(self, *, key: str = KEY) -> None:
        super().__init__(name="brevo")
        self.key = key
        self.keys_seen: dict[str, Any] = {}  # idempotencyKey -> the answer given

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("api-key") != self.key:
            return _json(401, {"code": "unauthorized", "message": "Key not found"})
        if request.method != "POST" or request.url.path != "/v3/smtp/email":
            return _json(404, {"code": "not_found", "message": "Not found"})
        body = json.loads(request.content)
        key = (body.get("headers") or {}).get("idempotencyKey")
        if key in self.keys_seen:
            return _json(201, self.keys_seen[key])
        if not body.get("sender") or not body.get("subject"):
            return _json(400, {"code": "missing_parameter", "message": "sender is missing"})
        versions = body.get("messageVersions")
        if versions is not None and "to" in body:
            return _json(400, {"code": "invalid_parameter", "message": "to with messageVersions"})
        if versions is None:
            versions = [{"to": body.get("to") or []}]
        if len(versions) > 1000:
            return _json(400, {"code": "invalid_parameter", "message": "too many versions"})
        ids = []
        for version in versions:
            if len(version["to"]) > 99:
                return _json(400, {"code": "invalid_parameter", "message": "99 per version"})
            for to in version["to"]:
                if to["email"] in self.refuse:
                    return _json(
                        400, {"code": "invalid_parameter", "message": "email is not valid"}
                    )
        for version in versions:
            params = version.get("params") or body.get("params") or {}

            def fill(text: str, params: dict[str, str] = params) -> str:
                return re.sub(r"\{\{\s*params\.(\w+)\s*\}\}", lambda m: str(params[m[1]]), text)

            headers = {**(body.get("headers") or {}), **(version.get("headers") or {})}
            custom = json.loads(headers.get("X-Mailin-custom", "{}"))
            for to in version["to"]:
                self.delivered.append(
                    Delivered(
                        to=to["email"],
                        to_name=to.get("name", ""),
                        sender=body["sender"]["email"],
                        subject=fill(version.get("subject") or body["subject"]),
                        html=fill(version.get("htmlContent") or body.get("htmlContent", "")),
                        text=fill(body.get("textContent", "")),
                        headers=headers,
                        campaign=str(custom.get("campaign", "")),
                        delivery=str(custom.get("delivery", "")),
                    )
                )
            ids.append(f"<2027062009.{uuid.uuid4().hex[:12]}@smtp-relay.mailin.fr>")
        answer = {"messageId": ids[0]} if "messageVersions" not in body else {"messageIds": ids}
        if key:
            self.keys_seen[key] = answer
        return _json(201, answer)


FAKES: dict[str, Callable[[], Fake]] = {
    "mailgun": FakeMailgun,
    "postmark": FakePostmark,
    "sendgrid": FakeSendGrid,
    "brevo": FakeBrevo,
}


def dsn(provider: str, port: int, **options: str) -> str:
    """The mailer DSN that points at a fake on 127.0.0.1:``port``."""
    query = "&".join(f"{k}={v}" for k, v in options.items())
    credentials = f"{KEY}:{DOMAIN}" if provider == "mailgun" else KEY
    return f"{provider}+api://{credentials}@127.0.0.1:{port}" + (f"?{query}" if query else "")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
