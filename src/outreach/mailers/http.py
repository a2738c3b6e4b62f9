"""What every HTTP mail provider shares: the client, the limits, and the meaning of a reply.

``HttpMailer`` owns one ``httpx.AsyncClient`` per event loop (keep-alive connections, at most
``concurrency`` requests in flight) and turns every answer into outreach's errors, once:

    2xx                                   accepted: the provider module reads the message ids
    429                                   the shared ``RateLimiter`` pauses *every* request of
                                          the mailer for ``Retry-After`` (seconds or an HTTP
                                          date) or the provider's reset header, then retries;
                                          past ``retries`` -> TemporaryDeliveryError(retry_after)
    5xx, 408; connection refused, reset
    or timed out before the request went  retried with exponential backoff and jitter, at most
                                          ``retries`` times, then TemporaryDeliveryError
    400, 413, 422 and other 4xx           PermanentDeliveryError with the provider's message
    401, 403                              ConfigurationError: the run stops, the campaign pauses
    read timeout or connection lost
    after the request was sent            UnknownDeliveryError (the message may have been
                                          accepted): never retried, unless the provider has an
                                          idempotency key, which the module then sends

Provider modules subclass it with a payload builder (``build_single``, ``build_batch``) and a
reader of the provider's answers. ``send_batch`` groups messages that can share one request
(``batch_key``), and when the provider refuses a whole batch, splits it in halves until the
refused message is alone, so one bad address never fails its neighbours.

The limiter and ``Retry-After`` are in ``http_limits.py``, the client's setup in
``http_client.py``, and what providers build payloads with (``content_of``, ``base_url_for``)
in ``http_payload.py``.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar

import httpx

from outreach.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    UnknownDeliveryError,
)
from outreach.mailers.http_client import Session, close_elsewhere, skip_missing_sniffio, tls_context
from outreach.mailers.http_limits import RateLimiter, SystemTimer, Timer, retry_after_seconds
from outreach.mailers.http_payload import dumps
from outreach.ports import OutgoingMessage

USER_AGENT = "outreach (+https://github.com/outreach)"
# connection errors that happen before the request left: nothing can have been accepted
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteTimeout)
# the request went out and the answer was lost
_ANSWER_LOST = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)


class HttpMailer:
    """Base of the HTTP providers; subclasses set ``name``, ``max_batch`` and the builders."""

    name = "http"
    default_base_url: ClassVar[str] = ""
    provider_max_batch: ClassVar[int] = 1
    idempotent: ClassVar[bool] = False  # the provider takes an idempotency key

    def __init__(
        self,
        *,
        base_url: str,
        concurrency: int = 8,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_wait: float = 60.0,
        batch: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        timer: Timer | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"{self.name} concurrency must be at least 1")
        if retries < 0:
            raise ConfigurationError(f"{self.name} retries must be 0 or more")
        self.base_url = base_url.rstrip("/")
        self.concurrency = concurrency
        self.max_batch = self.provider_max_batch if batch else 1
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.requests = 0  # HTTP requests made, retries included
        self._transport = transport
        self._timer: Timer = timer or SystemTimer()
        self.limiter = RateLimiter(timer=self._timer, max_wait=max_wait)
        self._session: Session | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url}, concurrency={self.concurrency})"

    # --- what a provider module supplies ---------------------------------------------------

    # the headers that authenticate every request (set by the provider's constructor)
    auth_headers: dict[str, str]

    def build_single(self, message: OutgoingMessage) -> httpx.Request:
        raise NotImplementedError

    def read_single(self, response: httpx.Response, message: OutgoingMessage) -> str:
        raise NotImplementedError

    def batch_key(self, message: OutgoingMessage) -> Hashable | None:
        """Messages with equal keys may share one request; ``None``: send it alone."""
        return None

    def build_batch(self, messages: Sequence[OutgoingMessage]) -> httpx.Request:
        raise NotImplementedError

    def read_batch(
        self, response: httpx.Response, messages: Sequence[OutgoingMessage]
    ) -> list[str | DeliveryError]:
        raise NotImplementedError

    def error_text(self, response: httpx.Response) -> str:
        """The provider's own explanation of a refusal (JSON ``message`` by default)."""
        try:
            body = response.json()
        except ValueError:
            return response.text.strip()[:500]
        if isinstance(body, dict):
            for key in ("message", "Message", "error"):
                if isinstance(body.get(key), str):
                    return str(body[key])
        return json.dumps(body, ensure_ascii=False)[:500]

    def refusal(self, response: httpx.Response) -> Exception:
        """What a 4xx other than 401/403/408/429 means (permanent unless a module knows more)."""
        return PermanentDeliveryError(
            f"{response.status_code} {self.error_text(response)}".strip(),
            provider=self.name,
            code=response.status_code,
        )

    def reset_after(self, response: httpx.Response) -> float | None:
        """Seconds until the provider's rate-limit window reopens, from its own headers."""
        return None

    # --- requests ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Request:
        all_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        all_headers.update(self.auth_headers)
        if headers:
            all_headers.update(headers)
        if json_body is not None:
            all_headers["Content-Type"] = "application/json"
            return httpx.Request(
                method, self.base_url + path, content=dumps(json_body), headers=all_headers
            )
        if form is not None:  # multipart, as the form APIs document; fields may repeat
            files = [(name, (None, value.encode("utf-8"))) for name, value in form]
            parts = httpx.Request(method, self.base_url + path, files=files, headers=all_headers)
            # one body instead of three small writes per field (a batch has 1,000 fields)
            body = b"".join(part for part in parts.stream)  # type: ignore[union-attr]
            return httpx.Request(method, parts.url, content=body, headers=parts.headers)
        return httpx.Request(method, self.base_url + path, headers=all_headers)

    def _current(self) -> Session:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or session.loop is not loop:
            if session is not None:  # made in another event loop (an earlier asyncio.run)
                close_elsewhere(session)
            skip_missing_sniffio()
            client = httpx.AsyncClient(
                transport=self._transport,
                verify=tls_context(),
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                limits=httpx.Limits(
                    max_connections=self.concurrency,
                    max_keepalive_connections=self.concurrency,
                    keepalive_expiry=30.0,
                ),
                follow_redirects=False,
                trust_env=True,
            )
            session = self._session = Session(loop, client, asyncio.Semaphore(self.concurrency))
        return session

    def _delay(self, attempt: int) -> float:
        return float(self.backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))

    async def call(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` with the limits and retries above; the 2xx response, or raise."""
        session = self._current()
        attempt = 0
        while True:
            await self.limiter.wait(self.name)
            try:
                async with session.slots:
                    self.requests += 1
                    response = await session.client.send(request)
            except _NOT_SENT as err:
                if attempt < self.retries:
                    attempt += 1
                    await self._timer.sleep(self._delay(attempt))
                    continue
                raise self._unreachable(err) from err
            except _ANSWER_LOST as err:
                if self.idempotent and attempt < self.retries:
                    attempt += 1  # the same idempotency key: accepted at most once
                    await self._timer.sleep(self._delay(attempt))
                    continue
                raise UnknownDeliveryError(
                    f"{self.name}: no answer after the request was sent "
                    f"({_describe(err)}); it may have been accepted",
                    provider=self.name,
                ) from err
            except httpx.HTTPError as err:
                raise self._unreachable(err) from err
            status = response.status_code
            if status < 300:
                self._watch_quota(response)
                return response
            if status == 429:
                wait = self._throttle(response, attempt + 1)
                if attempt < self.retries:
                    attempt += 1
                    continue  # the limiter waits (or fails at once when the wait is long)
                raise TemporaryDeliveryError(
                    f"429 {self.error_text(response)}".strip(),
                    provider=self.name,
                    code=429,
                    retry_after=max(wait, self.limiter.remaining()),
                )
            if status in (401, 403):
                raise ConfigurationError(
                    f"the {self.name} API refused the credentials ({status}): "
                    f"{self.error_text(response)}; check the key in OUTREACH_MAILER"
                )
            if status >= 500 or status == 408:
                if attempt < self.retries:
                    attempt += 1
                    await self._timer.sleep(self._delay(attempt))
                    continue
                raise TemporaryDeliveryError(
                    f"{status} {self.error_text(response)}".strip(),
                    provider=self.name,
                    code=status,
                )
            raise self.refusal(response)

    def _throttle(self, response: httpx.Response, attempt: int) -> float:
        wait = retry_after_seconds(response.headers.get("Retry-After"), now=self._timer.wall())
        if wait is None:
            wait = self.reset_after(response)
        if wait is None:
            wait = self._delay(attempt)
        self.limiter.pause(wait)
        return wait

    def _watch_quota(self, response: httpx.Response) -> None:
        """An accepted request that used the window's last call: wait for the reset."""
        remaining = response.headers.get("X-RateLimit-Remaining")
        if remaining is not None and remaining.strip() == "0":
            wait = self.reset_after(response)
            if wait:
                self.limiter.pause(wait)

    def _unreachable(self, err: Exception) -> DeliveryError:
        host = httpx.URL(self.base_url).host
        return TemporaryDeliveryError(
            f"{self.name} API at {host} unreachable: {_describe(err)}", provider=self.name
        )

    # --- the Mailer and BatchMailer ports ----------------------------------------------------

    async def send(self, message: OutgoingMessage) -> str:
        try:
            response = await self.call(self.build_single(message))
            return self.read_single(response, message)
        except DeliveryError as err:
            raise for_message(err, message) from err.__cause__

    async def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[str | DeliveryError]:
        results: list[str | DeliveryError | None] = [None] * len(messages)
        groups: dict[Hashable, list[int]] = {}
        seen: dict[Hashable, set[str]] = {}
        alone: list[int] = []
        for index, message in enumerate(messages):
            key = self.batch_key(message) if self.max_batch > 1 else None
            address = message.recipient.lower()
            if key is None or address in seen.setdefault(key, set()):
                alone.append(index)  # providers take each address once per batch
            else:
                seen[key].add(address)
                groups.setdefault(key, []).append(index)
        for indices in groups.values():
            for start in range(0, len(indices), self.max_batch):
                await self._send_group(messages, indices[start : start + self.max_batch], results)
        for index in alone:
            results[index] = await self._send_one(messages[index])
        return [result if result is not None else _lost(self.name) for result in results]

    async def _send_one(self, message: OutgoingMessage) -> str | DeliveryError:
        try:
            return await self.send(message)
        except DeliveryError as err:
            return err

    async def _send_group(
        self,
        messages: Sequence[OutgoingMessage],
        indices: list[int],
        results: list[str | DeliveryError | None],
    ) -> None:
        if len(indices) == 1:
            results[indices[0]] = await self._send_one(messages[indices[0]])
            return
        group = [messages[index] for index in indices]
        try:
            response = await self.call(self.build_batch(group))
            answers = self.read_batch(response, group)
        except PermanentDeliveryError:
            middle = len(indices) // 2  # find the refused message(s): split until alone
            await self._send_group(messages, indices[:middle], results)
            await self._send_group(messages, indices[middle:], results)
            return
        except DeliveryError as err:
            answers = [for_message(err, message) for message in group]
        for index, answer in zip(indices, answers, strict=True):
            results[index] = (
                for_message(answer, messages[index])
                if isinstance(answer, DeliveryError)
                else answer
            )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        if session.loop is asyncio.get_running_loop():
            await session.client.aclose()
        else:
            close_elsewhere(session)


def for_message(err: DeliveryError, message: OutgoingMessage) -> DeliveryError:
    """``err`` with the campaign and recipient of ``message`` (same class, reply and code)."""
    if err.campaign == message.campaign_id and err.recipient == message.recipient:
        return err
    return type(err)(
        err.reply,
        provider=err.provider,
        campaign=message.campaign_id,
        recipient=message.recipient,
        code=err.code,
        retry_after=err.retry_after,
    )


def _lost(provider: str) -> DeliveryError:
    return UnknownDeliveryError("no result was read for this message", provider=provider)


def _describe(err: BaseException) -> str:
    return str(err) or type(err).__name__
