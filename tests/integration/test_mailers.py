"""The Mailer port's contract, run against every transport, then SMTP against a real server.

The contract: what a mailer accepts arrives byte for byte (read back from the SMTP server's
capture, the outbox directory, the memory list). Then what staff would notice with a real mail
server: few connections for many messages, 4xx retried later, 5xx refused for good without
spoiling the next message, a dropped connection replaced, a wrong password stopping the run,
and DSN mistakes explained without showing the password.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from outreach.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)
from outreach.mailers import FileMailer, MemoryMailer, open_mailer, parse_dsn
from outreach.ports import Mailer, OutgoingMessage
from tests.support import smtp as smtp_support
from tests.support.smtp import SmtpServer, free_port

smtp_server = smtp_support.smtp_server  # the fixture, until tests/conftest.py registers it

pytestmark = pytest.mark.filterwarnings("ignore:Session.login_data:DeprecationWarning")

CITIES = ["São Paulo", "Montréal", "Kraków", "東京", "القاهرة", "Barcelona"]


def outgoing(number: int, *, to: str | None = None, city: str = "Barcelona") -> OutgoingMessage:
    """A multilingual campaign message; the same arguments always give the same bytes."""
    recipient = to or f"mayor{number}@city{number}.example.org"
    email = EmailMessage(policy=policy.SMTP)
    email["From"] = "Metropolis <news@metropolis.example.org>"
    email["To"] = recipient if recipient.isprintable() else "mayor@city.example.org"
    email["Subject"] = f"{city}: sign the Cities #WithRefugees statement"
    email["X-Outreach-Campaign"] = "world-refugee-day"
    email["X-Outreach-Delivery"] = str(number)
    email.set_content(
        f"Dear {city},\n.\n.a line that starts with a dot\n\nSign on behalf of your city.\n",
        cte="8bit",
    )
    email.add_alternative(
        f"<p>Dear <b>{city}</b>,</p>\n<p>Sign the statement.</p>\n", subtype="html"
    )
    email.set_boundary(f"outreach-boundary-{number}")
    return OutgoingMessage(
        delivery_id=number,
        campaign_id="world-refugee-day",
        envelope_from="bounces@metropolis.example.org",
        recipient=recipient,
        data=email.as_bytes(),
    )


@dataclass
class Transport:
    mailer: Mailer
    received: Callable[[], list[bytes]]


@pytest.fixture(params=["smtp", "file", "memory"])
async def transport(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Transport]:
    if request.param == "smtp":
        server: SmtpServer = request.getfixturevalue("smtp_server")
        mailer = open_mailer(server.dsn(), concurrency=3)
        yield Transport(mailer, lambda: [message.data for message in server.messages])
    elif request.param == "file":
        outbox = tmp_path / "outbox"
        mailer = open_mailer(f"file://{outbox}")
        yield Transport(mailer, lambda: [path.read_bytes() for path in outbox.glob("*.eml")])
    else:
        memory = MemoryMailer()
        mailer = memory
        yield Transport(mailer, lambda: [message.data for message in memory.sent])
    await mailer.close()


# ---- the contract, for every transport ----


async def test_every_message_arrives_byte_for_byte(transport: Transport) -> None:
    messages = [outgoing(n, city=city) for n, city in enumerate(CITIES, start=1)]

    replies = await asyncio.gather(*(transport.mailer.send(m) for m in messages))

    assert all(reply.strip() for reply in replies)
    assert sorted(transport.received()) == sorted(m.data for m in messages)


async def test_a_mailer_can_send_again_after_close(transport: Transport) -> None:
    await transport.mailer.send(outgoing(1))
    await transport.mailer.close()

    await transport.mailer.send(outgoing(2))

    assert sorted(transport.received()) == sorted([outgoing(1).data, outgoing(2).data])


# ---- SMTP against a real server ----


async def test_smtp_reply_is_the_servers_acceptance(smtp_server: SmtpServer) -> None:
    mailer = open_mailer(smtp_server.dsn())
    reply = await mailer.send(outgoing(1, to="mayor@barcelona.example.org"))
    await mailer.close()

    assert reply.startswith("250 2.0.0 Ok: queued as T")
    [received] = smtp_server.messages
    assert received.mail_from == "bounces@metropolis.example.org"
    assert received.rcpt_tos == ("mayor@barcelona.example.org",)


async def test_smtp_reuses_a_few_connections_for_many_messages(smtp_server: SmtpServer) -> None:
    mailer = open_mailer(smtp_server.dsn(), concurrency=3)

    await asyncio.gather(*(mailer.send(outgoing(n)) for n in range(60)))
    await mailer.send(outgoing(60))
    await mailer.close()

    assert len(smtp_server.messages) == 61
    assert 1 <= smtp_server.connections <= 3


@pytest.mark.parametrize(
    ("data", "arrives"),
    [
        # CRLF only (how outreach builds messages): dot-stuffed on the way, intact on arrival
        (
            b".first line\r\n.\r\n..two dots\r\nlast\r\n",
            b".first line\r\n.\r\n..two dots\r\nlast\r\n",
        ),
        # anything else goes out as aiosmtplib sends it: every line ending becomes CRLF
        (b".first line\n.\nbare CR\rlast", b".first line\r\n.\r\nbare CR\r\nlast\r\n"),
    ],
    ids=["crlf", "mixed"],
)
async def test_smtp_lines_starting_with_a_dot_arrive_unchanged(
    smtp_server: SmtpServer, data: bytes, arrives: bytes
) -> None:
    mailer = open_mailer(smtp_server.dsn())
    message = OutgoingMessage(
        delivery_id=1,
        campaign_id="world-refugee-day",
        envelope_from="bounces@metropolis.example.org",
        recipient="mayor@barcelona.example.org",
        data=data,
    )

    await mailer.send(message)
    await mailer.close()

    assert [m.data for m in smtp_server.messages] == [arrives]


async def test_smtp_421_at_connect_is_temporary_and_the_retry_succeeds(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.refuse_connections = 1
    mailer = open_mailer(smtp_server.dsn())

    with pytest.raises(TemporaryDeliveryError) as failure:
        await mailer.send(outgoing(1))
    reply = await mailer.send(outgoing(1))
    await mailer.close()

    assert failure.value.code == 421
    assert failure.value.provider == "smtp"
    assert failure.value.recipient == outgoing(1).recipient
    assert reply.startswith("250 ")
    assert [m.data for m in smtp_server.messages] == [outgoing(1).data]


async def test_smtp_451_after_data_is_temporary_and_the_connection_stays_usable(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.fail_data = 1
    mailer = open_mailer(smtp_server.dsn())

    with pytest.raises(TemporaryDeliveryError) as failure:
        await mailer.send(outgoing(1))
    await mailer.send(outgoing(2))
    await mailer.close()

    assert failure.value.code == 451
    assert failure.value.reply.startswith("451 ")
    assert [m.data for m in smtp_server.messages] == [outgoing(2).data]
    assert smtp_server.connections == 1


async def test_smtp_550_for_one_recipient_is_permanent_and_the_next_message_goes_through() -> None:
    with SmtpServer(reject={"left@city.example.org"}) as server:
        mailer = open_mailer(server.dsn())
        await mailer.send(outgoing(1))

        with pytest.raises(PermanentDeliveryError) as failure:
            await mailer.send(outgoing(2, to="left@city.example.org"))
        await mailer.send(outgoing(3))
        await mailer.close()

    assert failure.value.code == 550
    assert "550 5.1.1 <left@city.example.org>" in failure.value.reply
    assert failure.value.recipient == "left@city.example.org"
    assert failure.value.campaign == "world-refugee-day"
    assert [m.data for m in server.messages] == [outgoing(1).data, outgoing(3).data]
    assert server.connections == 1


async def test_smtp_dropped_connection_is_temporary_and_the_next_send_reconnects() -> None:
    with SmtpServer(drop_after=2) as server:
        mailer = open_mailer(server.dsn(), concurrency=1)
        await mailer.send(outgoing(1))
        await mailer.send(outgoing(2))

        with pytest.raises(TemporaryDeliveryError) as failure:
            await mailer.send(outgoing(3))
        await mailer.send(outgoing(4))
        await mailer.close()

    assert failure.value.code is None
    assert [m.data for m in server.messages] == [outgoing(n).data for n in (1, 2, 4)]
    assert [m.connection for m in server.messages] == [1, 1, 2]


@pytest.mark.parametrize("noticed", [True, False], ids=["noticed", "found-at-mail-from"])
async def test_smtp_connection_closed_while_idle_is_replaced_without_failing(
    smtp_server: SmtpServer, noticed: bool
) -> None:
    mailer = open_mailer(smtp_server.dsn(), concurrency=1)
    await mailer.send(outgoing(1))

    smtp_server.disconnect_all()
    if noticed:
        await asyncio.sleep(0.05)  # the client sees the close before its next send
    else:
        time.sleep(0.05)  # closed, but the client only finds out at MAIL FROM
    await mailer.send(outgoing(2))
    await mailer.close()

    assert [m.connection for m in smtp_server.messages] == [1, 2]


async def test_smtp_slow_server_times_out_as_temporary_and_the_next_send_is_clean(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.delay = 0.6
    mailer = open_mailer(smtp_server.dsn(), timeout=0.2)

    with pytest.raises(TemporaryDeliveryError):
        await mailer.send(outgoing(1))
    smtp_server.delay = 0
    await mailer.send(outgoing(2))
    await mailer.close()

    assert outgoing(2).data in [m.data for m in smtp_server.messages]
    assert smtp_server.connections == 2


async def test_smtp_server_not_listening_is_temporary() -> None:
    mailer = open_mailer(f"smtp://127.0.0.1:{free_port()}")

    with pytest.raises(TemporaryDeliveryError) as failure:
        await mailer.send(outgoing(1))

    assert "127.0.0.1" in failure.value.reply


async def test_smtp_logs_in_with_the_dsn_credentials() -> None:
    with SmtpServer(auth=("metropolis", "p@ss:w/rd")) as server:
        mailer = open_mailer(server.dsn(user="metropolis", password="p@ss:w/rd"))
        await mailer.send(outgoing(1))
        await mailer.close()

    assert [m.user for m in server.messages] == ["metropolis"]


async def test_smtp_wrong_password_stops_the_run_without_retrying_each_message() -> None:
    with SmtpServer(auth=("metropolis", "right")) as server:
        mailer = open_mailer(server.dsn(user="metropolis", password="s3cret-wrong"))

        with pytest.raises(ConfigurationError) as first:
            await mailer.send(outgoing(1))
        with pytest.raises(ConfigurationError) as second:
            await mailer.send(outgoing(2))
        await mailer.close()

    assert not isinstance(first.value, DeliveryError)
    assert "535" in str(first.value)
    assert "s3cret-wrong" not in str(first.value) + str(second.value)
    assert server.connections == 1  # the second send did not try to log in again
    assert server.messages == []


async def test_smtp_without_credentials_on_a_server_that_requires_them_is_configuration() -> None:
    with SmtpServer(auth=("metropolis", "right")) as server:
        mailer = open_mailer(server.dsn())
        with pytest.raises(ConfigurationError, match="530"):
            await mailer.send(outgoing(1))
        await mailer.close()


async def test_smtp_starttls_always_on_a_server_without_tls_is_configuration(
    smtp_server: SmtpServer,
) -> None:
    mailer = open_mailer(smtp_server.dsn(starttls="always"))

    with pytest.raises(ConfigurationError, match="STARTTLS"):
        await mailer.send(outgoing(1))

    assert smtp_server.messages == []


async def test_smtp_upgrades_with_starttls_when_the_server_offers_it() -> None:
    with SmtpServer(tls="starttls") as server:
        mailer = open_mailer(server.dsn(verify="false"))
        await mailer.send(outgoing(1))
        await mailer.close()
        plain = open_mailer(server.dsn(starttls="never"))
        await plain.send(outgoing(2))
        await plain.close()

    assert [(m.data, m.tls) for m in server.messages] == [
        (outgoing(1).data, True),
        (outgoing(2).data, False),
    ]


async def test_smtps_uses_implicit_tls() -> None:
    with SmtpServer(tls="implicit") as server:
        mailer = open_mailer(server.dsn(verify="false"))
        await mailer.send(outgoing(1))
        await mailer.close()

    assert server.dsn().startswith("smtps://")
    assert [(m.data, m.tls) for m in server.messages] == [(outgoing(1).data, True)]


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_smtp_untrusted_certificate_is_configuration(tls: str) -> None:
    with SmtpServer(tls="starttls" if tls == "starttls" else "implicit") as server:
        mailer = open_mailer(server.dsn())
        with pytest.raises(ConfigurationError, match="verify=false"):
            await mailer.send(outgoing(1))
        await mailer.close()

    assert server.messages == []


async def test_smtp_refuses_an_envelope_address_with_a_line_break(smtp_server: SmtpServer) -> None:
    mailer = open_mailer(smtp_server.dsn())

    with pytest.raises(PermanentDeliveryError):
        await mailer.send(outgoing(1, to="mayor@city.example.org\r\nRCPT TO:<x@evil.example>"))
    await mailer.send(outgoing(2))
    await mailer.close()

    assert [m.rcpt_tos for m in smtp_server.messages] == [(outgoing(2).recipient,)]


async def test_smtp_pool_survives_a_new_event_loop(smtp_server: SmtpServer) -> None:
    mailer = open_mailer(smtp_server.dsn())
    await mailer.send(outgoing(1))

    async def job() -> str:  # as a scheduler job would: its own asyncio.run, then close
        try:
            return await mailer.send(outgoing(2))
        finally:
            await mailer.close()

    def in_another_loop() -> str:
        return asyncio.run(job())

    reply = await asyncio.to_thread(in_another_loop)
    await mailer.close()

    assert reply.startswith("250 ")
    assert len(smtp_server.messages) == 2


# ---- file and memory specifics ----


async def test_file_mailer_overwrites_the_same_delivery_and_leaves_no_temporary_files(
    tmp_path: Path,
) -> None:
    mailer = open_mailer(f"file://{tmp_path}")
    first = await mailer.send(outgoing(7, to="mayor@kraków.example.org"))
    second = await mailer.send(outgoing(7, to="mayor@kraków.example.org", city="Kraków"))

    assert first == second
    assert [p.name for p in tmp_path.iterdir()] == [Path(first).name]
    assert Path(first).name.startswith("7-mayor@krak")
    assert (
        Path(first).read_bytes() == outgoing(7, to="mayor@kraków.example.org", city="Kraków").data
    )


async def test_file_dsn_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    mailer = open_mailer("file://./outbox")

    reply = await mailer.send(outgoing(1))

    assert isinstance(mailer, FileMailer)
    assert Path(reply).parent == tmp_path / "outbox"


async def test_file_mailer_on_an_unusable_directory_is_configuration(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a directory")
    mailer = open_mailer(f"file://{tmp_path / 'taken' / 'outbox'}")

    with pytest.raises(ConfigurationError, match="outbox"):
        await mailer.send(outgoing(1))


async def test_memory_mailer_scripted_failures_once_and_always() -> None:
    mailer = MemoryMailer(failures={"a@x.example": TemporaryDeliveryError("451 try later")})
    mailer.fail("b@x.example", PermanentDeliveryError("550 no such user"), times=None)

    with pytest.raises(TemporaryDeliveryError):
        await mailer.send(outgoing(1, to="a@x.example"))
    await mailer.send(outgoing(2, to="a@x.example"))
    for number in (3, 4):
        with pytest.raises(PermanentDeliveryError):
            await mailer.send(outgoing(number, to="b@x.example"))

    assert [m.delivery_id for m in mailer.sent] == [2]
    assert mailer.messages_to("B@x.example") == []


# ---- the DSN ----


def test_parse_dsn_decodes_user_and_password_and_keeps_them_out_of_repr() -> None:
    dsn = parse_dsn(
        "smtp://news%40metropolis.example:p%40ss%2Fw%3Ard@Mail.Example.org:587?starttls=always"
    )

    assert (dsn.scheme, dsn.user, dsn.password) == ("smtp", "news@metropolis.example", "p@ss/w:rd")
    assert (dsn.host, dsn.port, dsn.options) == ("mail.example.org", 587, {"starttls": "always"})
    assert "p@ss" not in repr(dsn)
    assert "p@ss" not in dsn.redacted() and "news@" not in dsn.redacted()


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("", "empty"),
        ("user:zq9xkw7v@mail.example.org", "scheme"),
        ("smtp://user:zq9xkw7v@mail.example.org:port", "port"),
        ("smtp://user:zq9x/kw7v@mail.example.org:25", "percent-encode"),
        ("smtp://user:zq9xkw7v@mail.example.org:99999", "port"),
        ("smtp://user:zq9xkw7v@:25", "host"),
        ("smtp://user:zq9xkw7v@mail.example.org:25?starttls=sometimes", "starttls"),
        ("smtp://user:zq9xkw7v@mail.example.org?verify=maybe", "verify"),
        ("smtp://user:zq9xkw7v@mail.example.org?tls=yes", "unknown option 'tls'"),
        ("smtps://user:zq9xkw7v@mail.example.org?starttls=always", "unknown option"),
        ("smtp://user:zq9xkw7v@mail.example.org/path", "no path"),
        ("smtp://user:zq9xkw7v@mail.example.org#frag", "'#'"),
        ("carrier-pigeon://user:zq9xkw7v@loft", "unknown mailer scheme carrier-pigeon://"),
        ("sparkpost+api://zq9xkw7v@mg.example.org", "not supported yet"),
        ("file://", "directory"),
        ("memory://?fast=yes", "unknown option"),
    ],
)
def test_bad_dsn_is_explained_without_the_password(dsn: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as failure:
        open_mailer(dsn)

    message = str(failure.value)
    assert expected in message
    assert "zq9x" not in message and "kw7v" not in message
    assert message.startswith("OUTREACH_MAILER: ")


def test_smtp_dsn_defaults_ports_by_scheme() -> None:
    assert repr(open_mailer("smtp://mail.example.org")) == (
        "SmtpMailer(smtp://mail.example.org:25, concurrency=8)"
    )
    assert repr(open_mailer("smtps://u:p@mail.example.org", concurrency=2)) == (
        "SmtpMailer(smtps://mail.example.org:465, concurrency=2)"
    )
