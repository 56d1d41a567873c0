"""The mail port: a folder of RFC 5322 files, an SMTP relay (STARTTLS, implicit TLS), the URL
that chooses between them, and delivery after commit on a background thread
(``medchat.services.mail``).
"""

from __future__ import annotations

import logging
import ssl
import stat
import threading
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from medchat.errors import ConfigurationError
from medchat.services.mail import (
    FolderMailer,
    Postman,
    SmtpMailer,
    compose,
    deliver_after_commit,
    mailer_from_url,
)
from tests.support.smtp_server import SmtpServer, self_signed_certificate

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def message(body: str = "Hello Camille,\n\nreset_token: mcp_abc\n") -> EmailMessage:
    return compose("camille@example.org", "Your medchat password reset code", body, at=AT)


def parse(raw: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(raw)  # type: ignore[return-value]


# -- the folder adapter ----------------------------------------------------------------


def test_folder_mailer_writes_one_parseable_rfc5322_file_per_message_mode_0600(tmp_path):
    folder = tmp_path / "mail"
    mailer = FolderMailer(folder)

    mailer.send(message("first\n"))
    mailer.send(message("second\n"))

    files = sorted(folder.iterdir())
    assert len(files) == 2
    bodies = set()
    for path in files:
        assert path.suffix == ".eml"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        parsed = parse(path.read_bytes())
        assert parsed["To"] == "camille@example.org"
        assert parsed["From"] == "medchat <no-reply@medchat.invalid>"
        assert parsed["Subject"] == "Your medchat password reset code"
        assert parsed["Message-ID"]
        assert parsed["Date"].datetime == AT
        bodies.add(parsed.get_content())
    assert bodies == {"first\n", "second\n"}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


# -- choosing the adapter --------------------------------------------------------------


def test_file_urls_choose_the_folder_adapter(tmp_path):
    absolute = mailer_from_url(f"file://{tmp_path}/out")
    relative = mailer_from_url("file://var/mail")

    assert isinstance(absolute, FolderMailer) and absolute.folder == tmp_path / "out"
    assert isinstance(relative, FolderMailer) and relative.folder == Path("var/mail")


@pytest.mark.parametrize(
    ("url", "host", "port", "starttls", "implicit"),
    [
        ("smtp://relay.example.org:2525", "relay.example.org", 2525, False, False),
        ("smtp://relay.example.org", "relay.example.org", 25, False, False),
        ("smtp+starttls://relay.example.org:587", "relay.example.org", 587, True, False),
        ("smtp://relay.example.org:587?starttls=1", "relay.example.org", 587, True, False),
        ("smtp://relay.example.org:587?starttls=0", "relay.example.org", 587, False, False),
        ("smtps://relay.example.org", "relay.example.org", 465, False, True),
    ],
)
def test_smtp_urls_choose_tls_and_port(url, host, port, starttls, implicit):
    mailer = mailer_from_url(url)

    assert isinstance(mailer, SmtpMailer)
    assert (mailer.host, mailer.port) == (host, port)
    assert (mailer.starttls, mailer.implicit_tls) == (starttls, implicit)
    assert mailer.username is None and mailer.password is None
    assert mailer.context is None  # production verifies with the system's trust store


def test_smtp_url_credentials_are_unquoted_and_not_shown():
    mailer = mailer_from_url("smtp+starttls://mailer%40clinic:p%3Ass%2Fword@relay:587")

    assert isinstance(mailer, SmtpMailer)
    assert mailer.username == "mailer@clinic"
    assert mailer.password == "p:ss/word"
    assert "p:ss/word" not in repr(mailer)


@pytest.mark.parametrize("url", ["http://relay", "smtpx://relay", "sendmail:///usr/sbin", ""])
def test_unknown_mail_url_schemes_are_refused(url):
    with pytest.raises(ConfigurationError, match="MEDCHAT_MAIL_URL"):
        mailer_from_url(url)


# -- the SMTP adapter ------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def server_context(certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def client_context(certificate) -> ssl.SSLContext:
    """Verifying, exactly like the default, but trusting only the test certificate."""
    return ssl.create_default_context(cafile=str(certificate[0]))


def test_smtp_mailer_delivers_in_clear_when_no_tls_is_asked():
    with SmtpServer() as server:
        mailer = SmtpMailer(
            "127.0.0.1",
            server.port,
            starttls=False,
            implicit_tls=False,
            username=None,
            password=None,
        )
        mailer.send(message())

    (received,) = server.received
    assert received.tls is False
    assert received.recipients == ["<camille@example.org>"]
    body = parse(received.data).get_content().replace("\r\n", "\n")  # CRLF on the wire
    assert body == "Hello Camille,\n\nreset_token: mcp_abc\n"


def test_smtp_mailer_upgrades_with_starttls_and_then_authenticates(certificate):
    with SmtpServer(tls=server_context(certificate)) as server:
        mailer = mailer_from_url(f"smtp+starttls://relay-user:relay-pass@127.0.0.1:{server.port}")
        assert isinstance(mailer, SmtpMailer)
        mailer.context = client_context(certificate)
        mailer.send(message())

    (received,) = server.received
    assert received.tls is True
    assert received.login == ("relay-user", "relay-pass")
    assert parse(received.data)["Subject"] == "Your medchat password reset code"


def test_smtp_mailer_speaks_implicit_tls_for_smtps(certificate):
    with SmtpServer(tls=server_context(certificate), implicit_tls=True) as server:
        mailer = SmtpMailer(
            "127.0.0.1",
            server.port,
            starttls=False,
            implicit_tls=True,
            username=None,
            password=None,
            context=client_context(certificate),
        )
        mailer.send(message())

    (received,) = server.received
    assert received.tls is True


def test_the_default_context_refuses_a_certificate_it_cannot_verify(certificate):
    with SmtpServer(tls=server_context(certificate)) as server:
        mailer = mailer_from_url(f"smtp://127.0.0.1:{server.port}?starttls=1")
        with pytest.raises(ssl.SSLCertVerificationError):
            mailer.send(message())

    assert server.received == []


def test_starttls_asked_but_not_offered_fails_instead_of_sending_in_clear():
    with SmtpServer() as server:
        mailer = mailer_from_url(f"smtp+starttls://127.0.0.1:{server.port}")
        with pytest.raises(Exception, match="STARTTLS"):
            mailer.send(message())

    assert server.received == []


# -- background delivery after commit --------------------------------------------------


class Recording:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[EmailMessage, int]] = []
        self.fail = fail

    def send(self, message: EmailMessage) -> None:
        self.sent.append((message, threading.get_ident()))
        if self.fail:
            raise ConnectionRefusedError("550 <camille@example.org> relay refused")


def test_the_postman_delivers_on_its_own_thread():
    mailer = Recording()
    postman = Postman(mailer)

    postman.post(message())

    assert postman.wait()
    ((sent, thread),) = mailer.sent
    assert sent["To"] == "camille@example.org"
    assert thread != threading.get_ident()


def test_a_failed_delivery_is_logged_without_the_address_and_never_raised(caplog):
    postman = Postman(Recording(fail=True))

    with caplog.at_level(logging.ERROR, logger="medchat.services.mail"):
        postman.post(message())
        assert postman.wait()

    (record,) = caplog.records
    assert "ConnectionRefusedError" in record.getMessage()
    assert "camille" not in caplog.text


def test_mail_is_posted_only_when_the_unit_of_work_commits(runtime):
    mailer = Recording()
    postman = Postman(mailer)

    with runtime.database.transaction() as session:
        deliver_after_commit(session, postman, message("kept\n"))
        with session.begin_nested():
            pass  # releasing a savepoint is not the commit
        assert postman.wait() and mailer.sent == []
    with pytest.raises(RuntimeError), runtime.database.transaction() as session:
        deliver_after_commit(session, postman, message("undone\n"))
        raise RuntimeError

    assert postman.wait()
    assert [sent.get_content() for sent, _ in mailer.sent] == ["kept\n"]
