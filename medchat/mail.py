"""Outgoing mail: one small port, two adapters chosen by ``MEDCHAT_MAIL_URL``.

- ``smtp://host:port`` (``smtp+starttls://`` or ``?starttls=1`` to upgrade the connection,
  ``smtps://`` for implicit TLS; ``user:password@`` for authentication), through ``smtplib``;
- ``file:///a/folder`` (or ``file://relative/folder``): one RFC 5322 file per message, for
  development and tests.

Mails carry no health content and no personal data beyond the greeting name: they say that
something happened and, for a reset, carry the single-use token.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import time
import uuid
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from medchat.errors import ConfigurationError

SENDER = "medchat <no-reply@medchat.invalid>"


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...


def compose(
    to: str, subject: str, body: str, *, at: datetime, sender: str = SENDER
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(at)
    message["Message-ID"] = make_msgid(domain="medchat.invalid")
    message.set_content(body)
    return message


class FolderMailer:
    """Writes each message to ``<folder>/<time>-<id>.eml`` (mode 0600)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        fd = os.open(self.folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(bytes(message))


class SmtpMailer:
    """Delivers through an SMTP relay; STARTTLS or implicit TLS when the URL asks."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        starttls: bool,
        implicit_tls: bool,
        username: str | None,
        password: str | None,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port = host, port
        self.starttls, self.implicit_tls = starttls, implicit_tls
        self.username, self.password = username, password
        self.timeout = timeout

    def send(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        if self.implicit_tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=context
            )
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            if self.starttls:
                client.starttls(context=context)
            if self.username:
                client.login(self.username, self.password or "")
            client.send_message(message)


def mailer_from_url(url: str) -> Mailer:
    """Build the adapter named by ``MEDCHAT_MAIL_URL``; refuse anything else."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = unquote((parts.netloc or "") + parts.path)
        return FolderMailer(Path(path))
    if parts.scheme in ("smtp", "smtp+starttls", "smtps"):
        query = parse_qs(parts.query)
        implicit = parts.scheme == "smtps"
        return SmtpMailer(
            parts.hostname or "localhost",
            parts.port or (465 if implicit else 25),
            starttls=parts.scheme == "smtp+starttls" or query.get("starttls") == ["1"],
            implicit_tls=implicit,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )
    raise ConfigurationError(f"MEDCHAT_MAIL_URL: unsupported scheme {parts.scheme!r}")
