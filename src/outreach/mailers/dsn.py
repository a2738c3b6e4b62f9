"""The mailer DSN: one string (``OUTREACH_MAILER``) picks and configures the mail transport.

    smtp://user:password@host:port?starttls=auto|always|never&verify=true|false
    smtps://user:password@host:port?verify=false    implicit TLS, port 465 by default
    file://./outbox                                  one .eml file per message, in a directory
    memory://                                        kept in a list, for tests and dry runs
    mailgun+api://KEY:DOMAIN@default?region=eu       Mailgun (region us by default)
    postmark+api://TOKEN@default?stream=broadcast    Postmark (stream outbound by default)
    sendgrid+api://KEY@default                       SendGrid
    brevo+api://KEY@default                          Brevo

User and password are percent-decoded, so a password containing ``@ / : ? #`` is written
``%40 %2F %3A %3F %23``. The HTTP providers take ``retries=N`` (5xx, 429 and connection errors
retried at most N times, 3 by default) and ``batch=false`` (one request per message). Putting
``host:port`` in place of ``default`` sends to that host: over plain http for a loopback host
(a local test server), https otherwise. Another provider plugs in by adding an opener to
``_OPENERS``; an unknown ``+api`` scheme is refused as "not supported yet".

Error messages about a DSN name its scheme and what is wrong, never the user, password, host or
any other piece of the raw string, which may hold a secret when the DSN is malformed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from outreach.errors import ConfigurationError
from outreach.mailers.brevo import BrevoMailer
from outreach.mailers.file import FileMailer
from outreach.mailers.http import HttpMailer
from outreach.mailers.http_payload import base_url_for
from outreach.mailers.mailgun import EU_API, US_API, MailgunMailer
from outreach.mailers.memory import MemoryMailer
from outreach.mailers.postmark import PostmarkMailer
from outreach.mailers.sendgrid import SendGridMailer
from outreach.mailers.smtp import SmtpMailer, StartTls
from outreach.ports import Mailer

SETTING = "OUTREACH_MAILER"
EXAMPLES = "smtp://user:password@mail.example.org:587, smtps://…, file://./outbox or memory://"
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_OPTION_NAME = re.compile(r"[a-z_]{1,30}")
_ENCODE_HINT = "percent-encode any @ / : ? # in the user or password (%40 %2F %3A %3F %23)"
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True, slots=True)
class MailerDsn:
    """The parts of a mailer DSN; ``password`` never shows in ``repr``."""

    scheme: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str = ""
    port: int | None = None
    path: str = ""
    options: dict[str, str] = field(default_factory=dict, hash=False)

    def redacted(self) -> str:
        """The DSN with user and password replaced by ``***``: safe to log."""
        auth = "***@" if self.user or self.password else ""
        port = f":{self.port}" if self.port is not None else ""
        query = "&".join(f"{key}={quote(value)}" for key, value in self.options.items())
        return f"{self.scheme}://{auth}{self.host}{port}{self.path}" + (
            f"?{query}" if query else ""
        )


def _problem(message: str) -> ConfigurationError:
    return ConfigurationError(f"{SETTING}: {message}")


def parse_dsn(dsn: str) -> MailerDsn:
    """Split a mailer DSN into its parts; ``ConfigurationError`` when it cannot be read."""
    raw = dsn.strip()
    if not raw:
        raise _problem(f"the mailer DSN is empty; use for example {EXAMPLES}")
    scheme, separator, rest = raw.partition("://")
    scheme = scheme.lower()
    if not separator or not _SCHEME.fullmatch(scheme):
        raise _problem(f"the mailer DSN must start with a scheme such as {EXAMPLES}")
    if scheme == "file":
        location, _, query = rest.partition("?")
        return MailerDsn(scheme=scheme, path=unquote(location), options=_options(scheme, query))
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise _problem(
            f"the {scheme}:// DSN has no valid host or port (the port must be a number "
            f"from 1 to 65535); {_ENCODE_HINT}"
        ) from None
    if parts.fragment:
        raise _problem(f"the {scheme}:// DSN cannot contain '#'; {_ENCODE_HINT}")
    return MailerDsn(
        scheme=scheme,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        host=parts.hostname or "",
        port=port,
        path=unquote(parts.path),
        options=_options(scheme, parts.query),
    )


def _options(scheme: str, query: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        name = key.strip().lower()
        if not _OPTION_NAME.fullmatch(name):
            raise _problem(f"the {scheme}:// DSN has an option whose name cannot be read")
        options[name] = value.strip()
    return options


def open_mailer(dsn: str, *, concurrency: int = 8, timeout: float = 30.0) -> Mailer:
    """Build the mailer a DSN names. Nothing is connected or written until the first send."""
    if concurrency < 1:
        raise ConfigurationError(f"mailer concurrency must be at least 1, not {concurrency}")
    if timeout <= 0:
        raise ConfigurationError("mailer timeout must be a positive number of seconds")
    parsed = parse_dsn(dsn)
    opener = _OPENERS.get(parsed.scheme)
    if opener is not None:
        return opener(parsed, concurrency, timeout)
    if parsed.scheme.endswith("+api") or "+" in parsed.scheme:
        raise _problem(
            f"the {parsed.scheme}:// mailer is not supported yet; use {', '.join(_known())}"
        )
    raise _problem(f"unknown mailer scheme {parsed.scheme}://; use {', '.join(_known())}")


def _known() -> list[str]:
    return [f"{scheme}://" for scheme in _OPENERS]


def _allow(dsn: MailerDsn, *names: str) -> None:
    for name in dsn.options:
        if name not in names:
            known = f" (known: {', '.join(names)})" if names else " (it takes none)"
            raise _problem(f"the {dsn.scheme}:// DSN has an unknown option {name!r}{known}")


def _flag(dsn: MailerDsn, name: str, *, default: bool) -> bool:
    value = dsn.options.get(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise _problem(f"the {dsn.scheme}:// option {name} must be true or false")


def _starttls(dsn: MailerDsn) -> StartTls:
    value = dsn.options.get("starttls", "auto").lower()
    if value == "never":
        return "never"
    if value == "always":
        return "always"
    if value == "auto":
        return "auto"
    raise _problem(f"the {dsn.scheme}:// option starttls must be never, auto or always")


def _open_smtp(dsn: MailerDsn, concurrency: int, timeout: float) -> Mailer:
    implicit_tls = dsn.scheme == "smtps"
    if implicit_tls:
        _allow(dsn, "verify")
    else:
        _allow(dsn, "starttls", "verify")
    if not dsn.host:
        raise _problem(
            f"the {dsn.scheme}:// DSN needs a host, e.g. {dsn.scheme}://mail.example.org"
        )
    if dsn.path not in ("", "/"):
        raise _problem(f"the {dsn.scheme}:// DSN takes no path after host:port; {_ENCODE_HINT}")
    return SmtpMailer(
        host=dsn.host,
        port=dsn.port or (465 if implicit_tls else 25),
        username=dsn.user,
        password=dsn.password,
        implicit_tls=implicit_tls,
        starttls="never" if implicit_tls else _starttls(dsn),
        verify=_flag(dsn, "verify", default=True),
        concurrency=concurrency,
        timeout=timeout,
    )


def _open_file(dsn: MailerDsn, concurrency: int, timeout: float) -> Mailer:
    _allow(dsn)
    if not dsn.path:
        raise _problem("the file:// DSN needs a directory, e.g. file://./outbox")
    return FileMailer(Path(dsn.path).expanduser().absolute())


def _open_memory(dsn: MailerDsn, concurrency: int, timeout: float) -> Mailer:
    _allow(dsn)
    return MemoryMailer(concurrency=concurrency)


class _HttpOptions(TypedDict):
    base_url: str
    concurrency: int
    timeout: float
    retries: int
    batch: bool


def _http_options(
    dsn: MailerDsn, provider: type[HttpMailer], concurrency: int, timeout: float, *extra: str
) -> _HttpOptions:
    """What every HTTP provider's DSN says: where to send, retries, batch; the secret in the
    user part (never in an error message)."""
    _allow(dsn, "retries", "batch", *extra)
    if dsn.path not in ("", "/"):
        raise _problem(f"the {dsn.scheme}:// DSN takes no path after the host")
    if not dsn.user:
        raise _problem(f"the {dsn.scheme}:// DSN needs the API key before '@'")
    retries = dsn.options.get("retries", "3")
    if not retries.isdigit() or int(retries) > 10:
        raise _problem(f"the {dsn.scheme}:// option retries must be a number from 0 to 10")
    return {
        "base_url": base_url_for(host=dsn.host, port=dsn.port, default=provider.default_base_url),
        "concurrency": concurrency,
        "timeout": timeout,
        "retries": int(retries),
        "batch": _flag(dsn, "batch", default=True),
    }


def _open_mailgun(dsn: MailerDsn, concurrency: int, timeout: float) -> Mailer:
    options = _http_options(dsn, MailgunMailer, concurrency, timeout, "region")
    if not dsn.password:
        raise _problem(
            "the mailgun+api:// DSN needs KEY:DOMAIN, e.g. mailgun+api://KEY:mg.example.org@default"
        )
    region = dsn.options.get("region", "us").lower()
    if region not in ("us", "eu"):
        raise _problem("the mailgun+api:// option region must be us or eu")
    if dsn.host in ("", "default"):
        options["base_url"] = EU_API if region == "eu" else US_API
    return MailgunMailer(api_key=dsn.user or "", domain=dsn.password, **options)


def _open_postmark(dsn: MailerDsn, concurrency: int, timeout: float) -> Mailer:
    options = _http_options(dsn, PostmarkMailer, concurrency, timeout, "stream")
    stream = dsn.options.get("stream", "outbound")
    if not re.fullmatch(r"[a-z0-9-]{1,64}", stream):
        raise _problem("the postmark+api:// option stream must be a message stream id")
    return PostmarkMailer(server_token=dsn.user or "", stream=stream, **options)


def _open_sendgrid(dsn: MailerDsn, concurrency: int, timeout: float) -> Mailer:
    options = _http_options(dsn, SendGridMailer, concurrency, timeout)
    return SendGridMailer(api_key=dsn.user or "", **options)


def _open_brevo(dsn: MailerDsn, concurrency: int, timeout: float) -> Mailer:
    options = _http_options(dsn, BrevoMailer, concurrency, timeout)
    return BrevoMailer(api_key=dsn.user or "", **options)


_OPENERS: dict[str, Callable[[MailerDsn, int, float], Mailer]] = {
    "smtp": _open_smtp,
    "smtps": _open_smtp,
    "file": _open_file,
    "memory": _open_memory,
    "mailgun+api": _open_mailgun,
    "postmark+api": _open_postmark,
    "sendgrid+api": _open_sendgrid,
    "brevo+api": _open_brevo,
}
