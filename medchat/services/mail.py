"""Outgoing mail: one small port, two adapters chosen by ``MEDCHAT_MAIL_URL``.

- ``smtp://host:port`` (``smtp+starttls://`` or ``?starttls=1`` to upgrade the connection,
  ``smtps://`` for implicit TLS; ``user:password@`` for authentication), through ``smtplib``;
- ``file:///a/folder`` (or ``file://relative/folder``): one RFC 5322 file per message, for
  development and tests.

Mails carry no health content and no personal data beyond the greeting name: they say that
something happened and, for a reset, carry the single-use token.

Delivery never happens inside a request. ``deliver_after_commit`` hands a message to the
``Postman`` only once the unit of work that decided to send it has committed (a rolled-back
reset mails nothing), and the postman delivers on a background thread. Two reasons: a password
reset for a known address must answer in the same time class as one for an unknown address
(which sends nothing), so the request may not wait on an SMTP round trip; and a relay that is
down must not turn a reset into an error for the client. A failed delivery is logged (the
exception type only: SMTP errors quote recipients) and never raised to anyone.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import smtplib
import ssl
import threading
import time
import uuid
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import event
from sqlalchemy.orm import Session

from medchat.errors import ConfigurationError

log = logging.getLogger("medchat.services.mail")

SENDER = "medchat <no-reply@medchat.invalid>"
EXIT_GRACE_SECONDS = 5.0


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
        context: ssl.SSLContext | None = None,
    ) -> None:
        """``context`` is for tests (a private CA); production verifies with the defaults."""
        self.host, self.port = host, port
        self.starttls, self.implicit_tls = starttls, implicit_tls
        self.username, self.password = username, password
        self.timeout = timeout
        self.context = context

    def __repr__(self) -> str:
        return f"SmtpMailer({self.host}:{self.port}, starttls={self.starttls})"

    def send(self, message: EmailMessage) -> None:
        context = self.context or ssl.create_default_context()
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


class Postman:
    """Delivers messages on one background thread, so no request waits on a mail relay.

    ``post`` never blocks and never raises; ``send`` failures are logged and dropped (the
    reset token still works for its 30 minutes, and the member can ask again). ``wait``
    lets tests and the CLI see the outbox empty. The thread starts on first use in the
    process that posts, so a pre-forking server gets one per worker.
    """

    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer
        self._outbox: queue.Queue[EmailMessage] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def __repr__(self) -> str:
        return f"Postman({self.mailer!r}, queued={self._outbox.qsize()})"

    def post(self, message: EmailMessage) -> None:
        """Queue ``message`` for delivery and return at once."""
        self._ensure_thread()
        self._outbox.put(message)

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until every posted message was handled; False if ``timeout`` ran out."""
        deadline = time.monotonic() + timeout
        with self._outbox.all_tasks_done:
            while self._outbox.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._outbox.all_tasks_done.wait(remaining)
        return True

    def _ensure_thread(self) -> None:
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
            if alive and self._pid == os.getpid():
                return
            first = self._thread is None
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="medchat-mail", daemon=True)
            self._thread.start()
            if first:
                # A worker stopping gracefully gives queued mail a moment to leave (the
                # thread is a daemon, so a hung relay cannot keep the process alive).
                atexit.register(self.wait, EXIT_GRACE_SECONDS)

    def _run(self) -> None:
        while True:
            message = self._outbox.get()
            try:
                self.mailer.send(message)
            except Exception as exc:
                # The type only: SMTP error texts quote addresses, which logs must not hold.
                log.error("mail delivery failed (%s); the message was dropped", type(exc).__name__)
            finally:
                self._outbox.task_done()


_AFTER_COMMIT = "mail_after_commit"


def deliver_after_commit(session: Session, postman: Postman, message: EmailMessage) -> None:
    """Post ``message`` once this unit of work commits; drop it if it rolls back.

    So a mail never announces a change that was not kept (a reset refused after the mail
    was composed sends nothing), and the request never waits on delivery.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append((postman, message))


@event.listens_for(Session, "after_commit")
def _post_on_commit(session: Session) -> None:
    # Releasing a SAVEPOINT fires this too: only the outermost commit makes mail real.
    if session.in_nested_transaction():
        return
    for postman, message in session.info.pop(_AFTER_COMMIT, []):
        postman.post(message)


@event.listens_for(Session, "after_rollback")
def _drop_on_rollback(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_AFTER_COMMIT, None)
