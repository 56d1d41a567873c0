"""A tiny SMTP server on 127.0.0.1 for delivering test mail, with STARTTLS and implicit TLS.

Just enough of RFC 5321 for ``smtplib``: EHLO/HELO, STARTTLS (RFC 3207), AUTH PLAIN, MAIL,
RCPT, DATA, RSET, NOOP, QUIT. Each received message is recorded with whether it arrived over
TLS and who authenticated. The certificate is a self-signed one made with ``cryptography``
for ``localhost`` and ``127.0.0.1``, so a client can verify it against that file alone.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """Write a certificate and key for localhost/127.0.0.1; return (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Received:
    mail_from: str
    recipients: list[str]
    data: bytes
    tls: bool
    login: tuple[str, str] | None


@dataclass
class SmtpServer:
    """Records messages in ``received``; ``tls`` offers STARTTLS, ``implicit_tls`` wraps at once."""

    tls: ssl.SSLContext | None = None
    implicit_tls: bool = False
    received: list[Received] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                _Session(owner, self.request).run()

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SmtpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Session:
    def __init__(self, server: SmtpServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.secure = False
        self.login: tuple[str, str] | None = None
        self.mail_from = ""
        self.recipients: list[str] = []
        if server.implicit_tls:
            self._wrap()
        self.file = self.sock.makefile("rb")

    def _wrap(self) -> None:
        assert self.server.tls is not None
        self.sock = self.server.tls.wrap_socket(self.sock, server_side=True)
        self.secure = True

    def reply(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def run(self) -> None:
        try:
            self.reply("220 localhost test SMTP")
            while True:
                raw = self.file.readline()
                if not raw:
                    return
                verb, _, argument = raw.decode().rstrip("\r\n").partition(" ")
                if not self.command(verb.upper(), argument):
                    return
        except (OSError, ssl.SSLError):
            return

    def command(self, verb: str, argument: str) -> bool:
        if verb == "EHLO":
            lines = ["250-localhost", "250-AUTH PLAIN", "250-8BITMIME"]
            if self.server.tls is not None and not self.secure:
                lines.append("250-STARTTLS")
            lines.append("250 SMTPUTF8")
            for line in lines:
                self.reply(line)
        elif verb == "HELO":
            self.reply("250 localhost")
        elif verb == "STARTTLS" and self.server.tls is not None and not self.secure:
            self.reply("220 ready to start TLS")
            self._wrap()
            self.file = self.sock.makefile("rb")
        elif verb == "AUTH" and argument.upper().startswith("PLAIN "):
            _, user, password = base64.b64decode(argument.split(" ", 1)[1]).split(b"\0")
            self.login = (user.decode(), password.decode())
            self.reply("235 authenticated")
        elif verb == "MAIL":
            self.mail_from, self.recipients = argument.partition(":")[2].strip(), []
            self.reply("250 ok")
        elif verb == "RCPT":
            self.recipients.append(argument.partition(":")[2].strip())
            self.reply("250 ok")
        elif verb == "DATA":
            self.reply("354 end with <CRLF>.<CRLF>")
            self.server.received.append(
                Received(self.mail_from, self.recipients, self._data(), self.secure, self.login)
            )
            self.reply("250 queued")
        elif verb in ("RSET", "NOOP"):
            self.reply("250 ok")
        elif verb == "QUIT":
            self.reply("221 bye")
            return False
        else:
            self.reply("502 not implemented")
        return True

    def _data(self) -> bytes:
        lines = []
        while True:
            line = self.file.readline()
            if line in (b".\r\n", b""):
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b"..") else line)
