"""An attachment's file name: the client's base name only, safe to store and to hand back.

Threats: a path in the name (``../../etc/passwd``, ``C:\\Users\\x\\scan.pdf``) that a careless
consumer would follow; control characters that split headers or logs; bidirectional overrides
(U+202E) that make ``invoice<RLO>fdp.exe`` display as ``invoiceexe.pdf``; a name whose
extension makes the recipient's system open a PDF with a browser or a shell. The name is
content (SECURITY-MODEL "What counts as content"): it is sealed under the DEK by the service
and never logged. Answers carry it per RFC 6266 with an ASCII ``filename`` fallback and the
exact name in ``filename*`` (RFC 8187, which obsoletes RFC 5987).

The name is the uploader's words, and a member's often names them (``Jeanne_Moreau_bloodwork
.pdf``): only the member sees it. Clinicians, and every staff reader, are shown a neutral name
made of the file's kind and its order among the conversation's files of that kind
(``neutral_name``; who sees which is ``medchat.services.patient_view.sees_upload_names``).
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

from medchat.files import types as attachment_types

DEFAULT_NAME = "attachment"
#: Most file systems allow 255 bytes per name; a longer one would be cut by the receiver.
MAX_NAME_BYTES = 255
#: RFC 8187 ``attr-char`` beyond what ``quote`` always keeps (letters, digits, ``_.-~``).
_ATTR_CHAR_EXTRA = "!#$&+^`|"
#: Removed from the quoted ASCII fallback: they end or escape the quoted-string, and some
#: user agents percent-decode ``filename`` (RFC 6266, appendix D).
_FALLBACK_REMOVED = frozenset('"\\%')


def _is_visible(char: str) -> bool:
    # C*: control, format (bidi overrides, zero-width), surrogates, private use, unassigned;
    # Zl/Zp: line and paragraph separators.
    category = unicodedata.category(char)
    return not category.startswith("C") and category not in ("Zl", "Zp")


def clean_filename(raw: str | None) -> str:
    """The client's name reduced to a safe base name; ``""`` when nothing usable is left.

    Keeps only the last path segment (``/`` and ``\\`` both count), normalises to NFC (so
    "é" typed on macOS and on Android is one name), drops invisible characters, and strips
    leading dots (hidden files, ``..``) and trailing dots and spaces (Windows drops them).
    """
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(char for char in name if _is_visible(char))
    return name.strip().lstrip(".").rstrip(". ").strip()


def _truncate_utf8(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")[:limit]
    return encoded.decode("utf-8", "ignore")


def with_extension(name: str, media_type: str) -> str:
    """The stored name: ``name`` with an extension of the sniffed type, at most 255 bytes.

    A name without a fitting extension gets the canonical one appended (``scan`` ->
    ``scan.pdf``, ``page.html`` -> ``page.html.pdf``), so the saved file opens with a viewer
    for what it is. An empty name becomes ``attachment.<ext>``. Truncation cuts the stem at a
    character boundary and keeps the extension.
    """
    if not name:
        name = DEFAULT_NAME
    if attachment_types.has_fitting_extension(media_type, name):
        stem, _, extension = name.rpartition(".")
        extension = "." + extension
    else:
        stem, extension = name, attachment_types.canonical_extension(media_type)
    room = MAX_NAME_BYTES - len(extension.encode("utf-8"))
    stem = _truncate_utf8(stem, room).rstrip(". ") or DEFAULT_NAME
    return stem + extension


def ascii_fallback(filename: str) -> str:
    """An ASCII stand-in for old user agents: accents folded, unsafe characters removed."""
    folded = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    text = "".join(
        char for char in folded if 0x20 <= ord(char) < 0x7F and char not in _FALLBACK_REMOVED
    ).strip()
    stem, dot, extension = text.rpartition(".")
    if not text or (dot and not stem.strip(" .")):
        # Nothing but an extension survived (a name written entirely in another script).
        return DEFAULT_NAME + (dot + extension if dot else "")
    return text


def content_disposition(filename: str) -> str:
    """``attachment; filename="<ascii>"; filename*=UTF-8''<percent-encoded>`` (RFC 6266 4.3).

    User agents that understand ``filename*`` use the exact name; the rest get the fallback.
    Both are always ``attachment``: content is saved, never rendered inline by the browser.
    """
    encoded = quote(filename, safe=_ATTR_CHAR_EXTRA, encoding="utf-8")
    return f"attachment; filename=\"{ascii_fallback(filename)}\"; filename*=UTF-8''{encoded}"


#: The word a neutral name starts with, by kind: every accepted image is a "photo".
DOCUMENT_KIND, PHOTO_KIND = "document", "photo"


def kind_of(media_type: str) -> str:
    return DOCUMENT_KIND if media_type == attachment_types.PDF else PHOTO_KIND


def neutral_name(media_type: str, ordinal: int) -> str:
    """``photo-2.jpg``, ``document-1.pdf``: the ``ordinal``-th file of its kind in the
    conversation (from 1), with the canonical extension of its sniffed type. It says nothing
    the reader of the conversation could not count themselves."""
    return f"{kind_of(media_type)}-{ordinal}{attachment_types.canonical_extension(media_type)}"
