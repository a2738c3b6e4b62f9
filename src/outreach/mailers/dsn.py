"""The mailer DSN: one string (``OUTREACH_MAILER``) picks and configures the mail transport.

    smtp://user:password@host:port?starttls=auto|always|never&verify=true|false
    smtps://user:password@host:port?verify=false    implicit TLS, port 465 by default
    file://./outbox                                  one .eml file per message, in a directory
    memory://                                        kept in a list, for tests and dry runs

User and password are percent-decoded, so a password containing ``@ / : ? #`` is written
``%40 %2F %3A %3F %23``. HTTP providers (``mailgun+api://KEY@DOMAIN``, ...) plug in by adding an
opener to ``_OPENERS``; until one exists, an ``+api`` scheme is refused as "not supported yet".

Error messages about a DSN name its scheme and what is wrong, never the user, password, host or
any other piece of the raw string, which may hold a secret when the DSN is malformed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from outreach.errors import ConfigurationError
from outreach.mailers.file import FileMailer
from outreach.mailers.memory import MemoryMailer
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


_OPENERS: dict[str, Callable[[MailerDsn, int, float], Mailer]] = {
    "smtp": _open_smtp,
    "smtps": _open_smtp,
    "file": _open_file,
    "memory": _open_memory,
}
