"""Mail transports behind the ``Mailer`` port, chosen by one DSN (see ``dsn.py``).

``open_mailer("smtp://user:password@host:587")`` returns a ready mailer; nothing connects, and
nothing is written, until the first ``send``.
"""

from __future__ import annotations

from outreach.mailers.dsn import MailerDsn, open_mailer, parse_dsn
from outreach.mailers.file import FileMailer
from outreach.mailers.memory import MemoryMailer
from outreach.mailers.smtp import SmtpMailer

__all__ = ["FileMailer", "MailerDsn", "MemoryMailer", "SmtpMailer", "open_mailer", "parse_dsn"]
