"""Consent texts are versioned by the server: the member agrees to a text the server serves.

A grant names the version of the text the member was shown (API.md "Member"). The server, not
the app, decides which version is current (``MEDCHAT_CONSENT_VERSION``), serves its words
(``GET /api/v1/consent``) and asks again before a new question when a member's grant names an
older one (``ConsentService.require_current_version``, 403 ``consent_outdated``). A grant to a
version other than the current one is refused: nobody agrees to a text the server does not
show now.

The texts are plain files, ``<folder>/health_messaging/<version>.txt``: the ones shipped in the
package (``medchat/consent_texts``) or, when ``MEDCHAT_CONSENT_TEXT_DIR`` names a folder, the
insurer's own. A version whose file is missing is a configuration error, raised at the first
use (the app factory reads it at start).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from medchat.config import Settings
from medchat.errors import ConfigurationError

HEALTH_MESSAGING = "health_messaging"
#: The texts shipped with the package.
SHIPPED = Path(__file__).resolve().parent.parent / "consent_texts"


@dataclass(frozen=True)
class ConsentText:
    """One version of a consent text, with the SHA-256 of its bytes so a client can show
    which exact words were agreed to."""

    purpose: str
    version: str
    text: str
    sha256: str


@lru_cache(maxsize=16)
def _load(folder: Path, purpose: str, version: str) -> ConsentText:
    path = folder / purpose / f"{version}.txt"
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigurationError(
            f"consent text {purpose}/{version}.txt not found in {folder}: "
            "check MEDCHAT_CONSENT_VERSION and MEDCHAT_CONSENT_TEXT_DIR"
        ) from error
    return ConsentText(
        purpose=purpose,
        version=version,
        text=raw.decode("utf-8"),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def current_text(settings: Settings, purpose: str = HEALTH_MESSAGING) -> ConsentText:
    """The text members agree to now. Raises ``ConfigurationError`` when its file is missing."""
    folder = Path(settings.consent_text_dir) if settings.consent_text_dir else SHIPPED
    return _load(folder, purpose, settings.consent_version)
