"""SMTP delivery: one transaction per message over a pool of reused aiosmtplib connections.

``SmtpMailer.send`` takes a pooled connection (or opens one: connect, EHLO, STARTTLS, AUTH),
runs MAIL FROM / RCPT TO / DATA with the message's raw bytes and returns the server's final
reply, e.g. ``250 2.0.0 Ok: queued as 4XyZ``. Library errors are translated here, once:

    4xx reply; refused, dropped or timed-out connection   -> TemporaryDeliveryError
    5xx reply to a message                                 -> PermanentDeliveryError
    login refused (530/534/535/538), 5xx while opening a
    session, STARTTLS required but not offered, TLS
    certificate or handshake failure                       -> ConfigurationError

A ConfigurationError sticks: every later ``send`` raises it at once without logging in again, so
a wrong password stops the run instead of failing each delivery in turn (and does not get the
sending address locked out). After an error reply the connection is reset with RSET before it
is reused; after a timeout, a drop or a cancellation it is discarded. A pooled connection found
dead at MAIL FROM (closed by the server while idle) is replaced and the message tried once more:
nothing had been handed over yet, so this cannot send a message twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from typing import Literal

import aiosmtplib
from aiosmtplib import SMTPResponse, SMTPResponseException, SMTPServerDisconnected

from outreach.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)
from outreach.ports import OutgoingMessage

StartTls = Literal["never", "auto", "always"]

_AUTH_CODES = frozenset({530, 534, 535, 538})
_UNSAFE_ADDRESS = re.compile(r"[\x00-\x20<>\x7f]")
_VERIFY_HINT = (
    "check the host name, or add ?verify=false for a self-signed certificate in development"
)


class _StaleConnection(Exception):
    """A pooled connection turned out to be closed before the server accepted MAIL FROM."""


class _Pool:
    """The connections of one event loop: idle ones wait in a list, ``slots`` bounds use."""

    def __init__(self, size: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.slots = asyncio.Semaphore(size)
        self.idle: list[aiosmtplib.SMTP] = []
        self.closed = False

    def take(self) -> aiosmtplib.SMTP | None:
        """The most recently used live connection, so few connections stay busy."""
        while self.idle:
            client = self.idle.pop()
            if client.is_connected:
                return client
            client.close()
        return None

    def give_back(self, client: aiosmtplib.SMTP) -> None:
        if self.closed or not client.is_connected:
            client.close()
        else:
            self.idle.append(client)

    def abandon(self) -> list[aiosmtplib.SMTP]:
        """Stop pooling; return the idle connections for the caller to close."""
        self.closed = True
        idle, self.idle = self.idle, []
        return idle


class SmtpMailer:
    """Delivers each message with one SMTP transaction; up to ``concurrency`` connections."""

    name = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int = 25,
        username: str | None = None,
        password: str | None = None,
        implicit_tls: bool = False,
        starttls: StartTls = "auto",
        verify: bool = True,
        concurrency: int = 8,
        timeout: float = 30.0,
        local_hostname: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"SMTP concurrency must be at least 1, not {concurrency}")
        self.concurrency = concurrency
        self.address = f"{host}:{port}"
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._implicit_tls = implicit_tls
        self._starttls: StartTls = starttls
        self._verify = verify
        self._timeout = timeout
        self._local_hostname = local_hostname
        self._pool: _Pool | None = None
        self._broken: ConfigurationError | None = None

    def __repr__(self) -> str:
        scheme = "smtps" if self._implicit_tls else "smtp"
        return f"SmtpMailer({scheme}://{self.address}, concurrency={self.concurrency})"

    async def send(self, message: OutgoingMessage) -> str:
        if self._broken is not None:
            raise ConfigurationError(str(self._broken)) from self._broken
        _check_envelope(message)
        pool = self._current_pool()
        async with pool.slots:
            try:
                return await self._deliver(pool, message)
            except ConfigurationError as err:
                self._broken = err
                raise

    async def close(self) -> None:
        """Say QUIT on every idle connection; connections still in use close when released."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        idle = pool.abandon()
        if pool.loop is not asyncio.get_running_loop():
            _close_all(pool.loop, idle)
            return
        for client in idle:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit(timeout=min(self._timeout, 5.0))
            client.close()

    def _current_pool(self) -> _Pool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool.loop is not loop:
            if self._pool is not None:  # made in another event loop (e.g. an earlier asyncio.run)
                _close_all(self._pool.loop, self._pool.abandon())
            self._pool = _Pool(self.concurrency)
        return self._pool

    async def _deliver(self, pool: _Pool, message: OutgoingMessage) -> str:
        client = pool.take()
        if client is not None:
            try:
                return await self._transaction(pool, client, message, reused=True)
            except _StaleConnection:
                pass  # closed while idle: open a fresh connection below
        client = await self._connect(message)
        return await self._transaction(pool, client, message, reused=False)

    async def _connect(self, message: OutgoingMessage) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            use_tls=self._implicit_tls,
            start_tls=False,
            validate_certs=self._verify,
            timeout=self._timeout,
            local_hostname=self._local_hostname,
        )
        try:
            await client.connect()
            await client.ehlo()
            await self._maybe_starttls(client)
            if self._username is not None:
                await self._login(client)
        except ConfigurationError:
            client.close()
            raise
        except Exception as err:
            client.close()
            raise _translate(err, message=message, address=self.address, opening=True) from err
        except BaseException:
            client.close()
            raise
        return client

    async def _maybe_starttls(self, client: aiosmtplib.SMTP) -> None:
        if self._implicit_tls or self._starttls == "never":
            return
        if client.supports_extension("starttls"):
            await client.starttls()
            await client.ehlo()
        elif self._starttls == "always":
            raise ConfigurationError(
                f"the mail server {self.address} does not offer STARTTLS, "
                "and the mailer DSN says starttls=always"
            )

    async def _login(self, client: aiosmtplib.SMTP) -> None:
        if not client.supports_extension("auth"):
            tls = "" if self._implicit_tls or self._starttls != "never" else " without TLS"
            raise ConfigurationError(
                f"the mail server {self.address} does not offer AUTH{tls}, "
                "but the mailer DSN has a user and password"
            )
        await client.login(self._username or "", self._password or "")

    async def _transaction(
        self, pool: _Pool, client: aiosmtplib.SMTP, message: OutgoingMessage, *, reused: bool
    ) -> str:
        try:
            options, encoding = _mail_options(client, message)
            try:
                await _command(client, b"MAIL", _path(message.envelope_from, encoding), *options)
            except (SMTPServerDisconnected, SMTPResponseException) as err:
                if reused and _closed_by_server(err):
                    raise _StaleConnection from err
                raise
            await _command(client, b"RCPT", _path(message.recipient, encoding), accept=(250, 251))
            response = await _data(client, message.data)
        except _StaleConnection:
            client.close()
            raise
        except SMTPResponseException as err:
            await _reset_or_close(client)
            pool.give_back(client)
            raise _translate(err, message=message, address=self.address) from err
        except Exception as err:
            client.close()
            raise _translate(err, message=message, address=self.address) from err
        except BaseException:  # cancelled mid-transaction: the server's state is unknown
            client.close()
            raise
        pool.give_back(client)
        return f"{response.code} {response.message}"


def _check_envelope(message: OutgoingMessage) -> None:
    for address in (message.envelope_from, message.recipient):
        if _UNSAFE_ADDRESS.search(address):
            raise _failure(
                PermanentDeliveryError,
                f"the envelope address {address!r} contains a space, a line break or <>",
                message,
            )


def _mail_options(client: aiosmtplib.SMTP, message: OutgoingMessage) -> tuple[list[bytes], str]:
    options: list[bytes] = []
    if client.supports_extension("size"):
        options.append(b"SIZE=%d" % len(message.data))
    if not message.data.isascii() and client.supports_extension("8bitmime"):
        options.append(b"BODY=8BITMIME")
    needs_utf8 = not (message.envelope_from.isascii() and message.recipient.isascii())
    if needs_utf8 and client.supports_extension("smtputf8"):
        options.append(b"SMTPUTF8")
        return options, "utf-8"
    return options, "ascii"


def _path(address: str, encoding: str) -> bytes:
    """``FROM:<address>`` / ``TO:<address>`` argument; ``_check_envelope`` has already refused
    spaces, line breaks and angle brackets. Raises ValueError for a non-ASCII address on a
    server without SMTPUTF8 (a permanent failure for that message)."""
    try:
        return b"<" + address.encode(encoding) + b">"
    except UnicodeEncodeError as err:
        raise ValueError(f"{address!r} needs SMTPUTF8, which the server does not offer") from err


async def _command(
    client: aiosmtplib.SMTP,
    verb: bytes,
    path: bytes,
    *options: bytes,
    accept: tuple[int, ...] = (250,),
) -> None:
    argument = (b"FROM:" if verb == b"MAIL" else b"TO:") + path
    reply = await client.execute_command(verb, argument, *options)
    if reply.code not in accept:
        raise SMTPResponseException(reply.code, reply.message)


async def _data(client: aiosmtplib.SMTP, data: bytes) -> SMTPResponse:
    """DATA and the message. Messages outreach builds are already in wire form (CRLF line
    endings), so only dot-stuffing is left to do, with one ``bytes.replace``; aiosmtplib's
    ``data()`` runs two regular expressions over every message, which measured as a third of
    the send loop's time (bench/README.md). Anything else goes through ``data()`` unchanged."""
    if not _crlf_only(data):
        return await client.data(data)
    wire = data.replace(b"\r\n.", b"\r\n..")
    if wire.startswith(b"."):
        wire = b"." + wire
    start = await client.execute_command(b"DATA")
    if start.code != 354:
        raise SMTPResponseException(start.code, start.message)
    protocol = client.protocol
    if protocol is None:
        raise SMTPServerDisconnected("Connection lost")
    protocol.write(wire + b".\r\n")
    reply = await protocol.read_response(timeout=client.timeout)
    if reply.code != 250:
        raise SMTPResponseException(reply.code, reply.message)
    return reply


def _crlf_only(data: bytes) -> bool:
    """Every line ends with CRLF, including the last, and no CR or LF stands alone."""
    pairs = data.count(b"\r\n")
    return data.endswith(b"\r\n") and data.count(b"\r") == pairs == data.count(b"\n")


def _closed_by_server(err: Exception) -> bool:
    if isinstance(err, SMTPResponseException):
        return err.code == 421
    return True


async def _reset_or_close(client: aiosmtplib.SMTP) -> None:
    """Clear the half-done transaction, or drop the connection if even that fails."""
    if not client.is_connected:
        return
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError):
        client.close()


def _close_all(loop: asyncio.AbstractEventLoop, clients: list[aiosmtplib.SMTP]) -> None:
    """Close connections that belong to another event loop, from that loop's thread."""
    if loop.is_closed():
        return  # nothing can run there any more; the sockets close when collected
    for client in clients:
        with contextlib.suppress(RuntimeError):  # the loop closed in the meantime
            loop.call_soon_threadsafe(client.close)


def _tls_failure(err: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ssl.SSLError) and not isinstance(seen, ssl.SSLEOFError):
            return seen
        seen = seen.__cause__
    return None


def _translate(
    err: Exception, *, message: OutgoingMessage, address: str, opening: bool = False
) -> Exception:
    """The one mapping from aiosmtplib and socket errors to outreach's errors."""
    tls = _tls_failure(err)
    if tls is not None:
        hint = (
            _VERIFY_HINT
            if isinstance(tls, ssl.SSLCertVerificationError)
            else (
                "check that the port speaks TLS (smtps:// is usually port 465, smtp:// 25 or 587)"
            )
        )
        return ConfigurationError(
            f"TLS with the mail server {address} failed: {tls.reason or tls}; {hint}"
        )
    if isinstance(err, SMTPResponseException):
        reply = f"{err.code} {err.message}".strip()
        if err.code in _AUTH_CODES:
            return ConfigurationError(
                f"the mail server {address} refused the login or requires one: {reply}"
            )
        if opening and 500 <= err.code < 600:
            return ConfigurationError(f"the mail server {address} refused a session: {reply}")
        if 500 <= err.code < 600:
            return _failure(PermanentDeliveryError, reply, message, code=err.code)
        if 400 <= err.code < 500:
            return _failure(TemporaryDeliveryError, reply, message, code=err.code)
        return _failure(
            TemporaryDeliveryError, f"unexpected reply from {address}: {reply}", message
        )
    if isinstance(err, OSError):  # refused, reset, dropped, timed out (all OSError subclasses)
        detail = str(err) or type(err).__name__
        return _failure(TemporaryDeliveryError, f"mail server {address}: {detail}", message)
    if isinstance(err, ValueError):  # an address aiosmtplib will not put on a command line
        return _failure(PermanentDeliveryError, f"cannot send to this address: {err}", message)
    return _failure(TemporaryDeliveryError, f"mail server {address}: {err}", message)


def _failure(
    kind: type[DeliveryError], reply: str, message: OutgoingMessage, *, code: int | None = None
) -> DeliveryError:
    return kind(
        reply,
        provider="smtp",
        campaign=message.campaign_id,
        recipient=message.recipient,
        code=code,
    )
