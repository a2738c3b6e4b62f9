"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, on a free port, with programmable faults.

    with SmtpServer(reject={"gone@example.org"}) as server:
        mailer = open_mailer(server.dsn())
        ...
        assert server.messages[0].data == raw_bytes

Every accepted message is captured (envelope sender, recipients, raw bytes, which connection
carried it, whether it was under TLS, who had logged in). Faults are set at construction or on
the running server and count down in the server's thread:

    refuse_connections  answer ``421`` to the next N connections, then greet normally
    fail_data           answer ``451`` after DATA for the next N messages, then ``250``
    reject              answer ``550`` at RCPT for these addresses
    drop_after          on every connection, accept N messages, then close the connection
                        without replying to the next one (the client cannot know its fate)
    delay               seconds to wait before answering each DATA
    auth                (user, password): AUTH PLAIN/LOGIN required, without TLS
    tls                 "starttls" or "implicit", with a throwaway self-signed certificate

The ``smtp_server`` fixture yields a started server without faults.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, urlencode

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
Tls = Literal["starttls", "implicit"]


@dataclass(frozen=True, slots=True)
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    connection: int
    tls: bool
    user: str | None
    at: float  # time.monotonic() when the server accepted it


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


_certificate: tuple[str, str] | None = None
_certificate_lock = threading.Lock()


def self_signed_certificate() -> tuple[str, str]:
    """(certificate file, key file) for 127.0.0.1, made once per test run with openssl."""
    global _certificate
    with _certificate_lock:
        if _certificate is None:
            openssl = shutil.which("openssl")
            if openssl is None:
                pytest.skip("openssl is not installed; it makes the test server's certificate")
            folder = Path(tempfile.mkdtemp(prefix="outreach-smtp-tls-"))
            cert, key = folder / "cert.pem", folder / "key.pem"
            subprocess.run(
                [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                 "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                 "-keyout", str(key), "-out", str(cert)],
                check=True,
                capture_output=True,
                timeout=30,
            )  # fmt: skip
            _certificate = (str(cert), str(key))
        return _certificate


class SmtpServer:
    """A started-on-demand aiosmtpd server; use it as a context manager."""

    def __init__(
        self,
        *,
        refuse_connections: int = 0,
        fail_data: int = 0,
        reject: Iterable[str] = (),
        drop_after: int | None = None,
        delay: float = 0.0,
        auth: tuple[str, str] | None = None,
        tls: Tls | None = None,
    ) -> None:
        self.refuse_connections = refuse_connections
        self.fail_data = fail_data
        self.reject = {address.lower() for address in reject}
        self.drop_after = drop_after
        self.delay = delay
        self.auth = auth
        self.tls = tls
        self.host = HOST
        self.port = 0
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._connections = 0
        self._live: set[_FaultySMTP] = set()
        self._armed = False
        self._controller: _Controller | None = None

    # ---- what tests read ----

    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._messages)

    @property
    def connections(self) -> int:
        """How many connections clients opened (the controller's own probe is not counted)."""
        with self._lock:
            return self._connections

    def dsn(self, *, user: str | None = None, password: str | None = None, **options: str) -> str:
        """A mailer DSN that points at this server."""
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        auth = ""
        if user is not None:
            auth = quote(user, safe="") + (
                f":{quote(password, safe='')}" if password is not None else ""
            )
            auth += "@"
        query = f"?{urlencode(options)}" if options else ""
        return f"{scheme}://{auth}{self.host}:{self.port}{query}"

    def disconnect_all(self) -> None:
        """Close every open connection from the server side, as an idle timeout would."""
        controller = self._controller
        assert controller is not None, "the server is not running"
        with self._lock:
            live = list(self._live)
        for protocol in live:
            if protocol.transport is not None:
                controller.loop.call_soon_threadsafe(protocol.transport.close)

    # ---- lifecycle ----

    def start(self) -> SmtpServer:
        context: ssl.SSLContext | None = None
        if self.tls is not None:
            cert, key = self_signed_certificate()
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
        last_error: Exception | None = None
        for _attempt in range(5):  # another process may take the free port first
            self.port = free_port()
            controller = _Controller(self, context)
            try:
                controller.start()
            except Exception as err:
                last_error = err
                continue
            self._controller = controller
            with self._lock:
                self._armed = True
            return self
        raise RuntimeError(f"the test SMTP server could not start: {last_error}")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- called from the server's thread ----

    def _connected(self, protocol: _FaultySMTP) -> tuple[int, bool]:
        with self._lock:
            if not self._armed:
                return 0, False
            self._connections += 1
            self._live.add(protocol)
            if self.refuse_connections > 0:
                self.refuse_connections -= 1
                return self._connections, True
            return self._connections, False

    def _disconnected(self, protocol: _FaultySMTP) -> None:
        with self._lock:
            self._live.discard(protocol)

    def _take_data_failure(self) -> bool:
        with self._lock:
            if self.fail_data > 0:
                self.fail_data -= 1
                return True
            return False

    def _capture(self, received: Received) -> int:
        with self._lock:
            self._messages.append(received)
            return len(self._messages)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if self.auth is None or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = self.auth
        ok = data.login == user.encode() and data.password == password.encode()
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


class _FaultySMTP(SMTP):
    """aiosmtpd's protocol, with the connection-level faults of ``SmtpServer``."""

    def __init__(self, handler: _Handler, owner: SmtpServer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.owner = owner
        self.number = 0
        self.accepted = 0

    async def _handle_client(self) -> None:
        self.number, refuse = self.owner._connected(self)
        if refuse:
            await self.push("421 4.3.2 Service not available, closing transmission channel")
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    def connection_lost(self, error: Exception | None) -> None:
        self.owner._disconnected(self)
        super().connection_lost(error)


class _Handler:
    """aiosmtpd hooks: recipient rejection, DATA faults and capture."""

    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_RCPT(
        self,
        server: _FaultySMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() in self.owner.reject:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: _FaultySMTP, session: Session, envelope: Envelope) -> str:
        owner = self.owner
        if owner.delay:
            await asyncio.sleep(owner.delay)
        if owner.drop_after is not None and server.accepted >= owner.drop_after:
            if server.transport is not None:
                server.transport.close()
            await asyncio.get_running_loop().create_future()  # cancelled by connection_lost
        if owner._take_data_failure():
            return "451 4.3.0 Error: queue file write error, try again later"
        login = getattr(session, "auth_data", None)
        number = owner._capture(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=bytes(envelope.original_content or b""),
                connection=server.number,
                tls=server.transport is not None
                and server.transport.get_extra_info("ssl_object") is not None,
                user=login.login.decode() if isinstance(login, LoginPassword) else None,
                at=time.monotonic(),
            )
        )
        server.accepted += 1
        return f"250 2.0.0 Ok: queued as T{number:05d}"


class _Controller(Controller):
    def __init__(self, owner: SmtpServer, context: ssl.SSLContext | None) -> None:
        kwargs: dict[str, Any] = {}
        if owner.tls == "starttls":
            kwargs["tls_context"] = context
        if owner.auth is not None:
            kwargs.update(
                authenticator=owner._authenticate, auth_required=True, auth_require_tls=False
            )
        super().__init__(
            _Handler(owner),
            hostname=HOST,
            port=owner.port,
            ssl_context=context if owner.tls == "implicit" else None,
            ready_timeout=10.0,
            **kwargs,
        )
        self.owner = owner

    def factory(self) -> _FaultySMTP:
        with warnings.catch_warnings():  # AUTH without TLS is the point of these tests
            warnings.simplefilter("ignore")
            return _FaultySMTP(self.handler, self.owner, **self.SMTP_kwargs)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A running test SMTP server without faults; set faults on it as a test needs."""
    with SmtpServer() as server:
        yield server
