"""Reading what the folder mailer delivered: the RFC 5322 files of ``file://`` mail URLs."""

from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

_TOKEN = re.compile(r"^reset_token: (\S+)$", re.MULTILINE)


def delivered(runtime: Any, folder: Path) -> list[tuple[EmailMessage, bytes]]:
    """Every message in ``folder`` (oldest first) with its raw bytes, once the postman is idle."""
    assert runtime.postman.wait(), "mail still queued after 10 seconds"
    if not folder.exists():
        return []
    parser = BytesParser(policy=policy.default)
    return [
        (parser.parsebytes(path.read_bytes()), path.read_bytes())  # type: ignore[misc]
        for path in sorted(folder.iterdir())
    ]


def reset_token_in(message: EmailMessage) -> str:
    match = _TOKEN.search(message.get_content())
    assert match, "no reset_token line in the mail"
    return match.group(1)
