"""An attachment's type is read from its bytes, never taken from the client's word.

Threat: a client (or malware on the phone) labels an HTML page, a script or an executable as
``report.pdf``; a viewer trusting the label or the name would render or run it. So the type
comes from the first bytes (magic numbers), only four families are accepted, and a label that
names another accepted type (the multipart part's ``Content-Type``, the file name's extension)
is refused as mislabelled instead of being silently corrected: the sender meant something
else, and guessing which half to believe is how polyglots get through.

Specs: PDF (ISO 32000-1, 7.5.2 "File header"), PNG (ISO/IEC 15948, 5.2 "PNG signature"), JPEG
(ITU-T T.81, B.1.1.3: the SOI marker ``FFD8`` followed by another marker), HEIF (ISO/IEC
23008-12 brands in the ISO-BMFF ``ftyp`` box, ISO/IEC 14496-12, 4.3). Only headers are checked:
nothing here decodes the file, so nothing here can be exploited by a malformed one.
"""

from __future__ import annotations

from dataclasses import dataclass

from medchat.errors import UnsupportedMediaType

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
HEIC = "image/heic"
#: A HEIF container without an HEVC brand (AVIF, for one, is ``avif`` + ``mif1``): labelling
#: it ``image/heic`` would send viewers to the wrong decoder, so it keeps the generic type.
HEIF = "image/heif"

_HEVC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})
#: Real ``ftyp`` boxes list a handful of brands; a longer one is not worth scanning.
_MAX_FTYP_BOX = 4096
#: Labels that say "I don't know": they disagree with nothing.
_NEUTRAL_LABELS = frozenset({"", "application/octet-stream"})

NOT_ACCEPTED = "Only PDF, PNG, JPEG and HEIC files are accepted."
MISLABELLED = "The file's declared type or name does not match its content."


@dataclass(frozen=True)
class MediaFamily:
    """One accepted type: its canonical name, the labels clients use for it, its extensions."""

    media_type: str
    labels: frozenset[str]
    #: The first one is appended to names that carry no fitting extension.
    extensions: tuple[str, ...]


_HEIF_LABELS = frozenset({HEIC, HEIF, "image/heic-sequence", "image/heif-sequence"})
_HEIF_EXTENSIONS = (".heic", ".heif", ".hif")

FAMILIES: dict[str, MediaFamily] = {
    PDF: MediaFamily(PDF, frozenset({PDF, "application/x-pdf"}), (".pdf",)),
    PNG: MediaFamily(PNG, frozenset({PNG, "image/x-png"}), (".png",)),
    JPEG: MediaFamily(
        JPEG,
        frozenset({JPEG, "image/jpg", "image/pjpeg"}),
        (".jpg", ".jpeg", ".jpe", ".jfif"),
    ),
    HEIC: MediaFamily(HEIC, _HEIF_LABELS, _HEIF_EXTENSIONS),
    HEIF: MediaFamily(HEIF, _HEIF_LABELS, (".heif", ".heic", ".hif")),
}
_ALL_EXTENSIONS = frozenset(ext for family in FAMILIES.values() for ext in family.extensions)


def sniff(data: bytes) -> str:
    """The canonical media type of ``data``, read from its first bytes.

    Raises ``UnsupportedMediaType`` for anything but PDF, PNG, JPEG and HEIC/HEIF (an empty
    file included).
    """
    if data.startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    brands = heif_brands(data)
    if brands & _HEVC_BRANDS:
        return HEIC
    if brands & _HEIF_BRANDS:
        return HEIF
    raise UnsupportedMediaType(NOT_ACCEPTED)


def heif_brands(data: bytes) -> frozenset[bytes]:
    """The major and compatible brands of a leading ``ftyp`` box; empty if there is none.

    Layout: size (u32 big-endian), ``ftyp``, major brand, minor version (not a brand), then
    compatible brands to the end of the box. A box that is shorter than its header, longer
    than the data, not a whole number of brands, or uses the 64-bit size form is not one a
    HEIF writer produces, and is refused rather than half-read.
    """
    if len(data) < 16 or data[4:8] != b"ftyp":
        return frozenset()
    size = int.from_bytes(data[:4], "big")
    if size < 16 or size % 4 or size > min(len(data), _MAX_FTYP_BOX):
        return frozenset()
    compatible = (data[offset : offset + 4] for offset in range(16, size, 4))
    return frozenset({data[8:12], *compatible})


def extension_of(filename: str) -> str:
    """The lower-cased extension with its dot (``.pdf``), or ``""`` when there is none."""
    stem, dot, extension = filename.rpartition(".")
    if not dot or not stem or not extension:
        return ""
    return "." + extension.lower()


def check_label(media_type: str, declared_type: str | None, filename: str) -> None:
    """Refuse a file whose label names another type than its bytes.

    ``declared_type`` is the multipart part's ``Content-Type`` (parameters and case ignored;
    missing or ``application/octet-stream`` says nothing). ``filename`` is the cleaned base
    name: an extension belonging to another accepted type (PDF bytes named ``x.png``) is a
    mislabel; an extension of no accepted type (``x.html``) is not, as the name will get the
    right extension appended (``medchat.files.names.with_extension``).
    Raises ``UnsupportedMediaType``.
    """
    family = FAMILIES[media_type]
    label = (declared_type or "").split(";", 1)[0].strip().lower()
    if label not in _NEUTRAL_LABELS and label not in family.labels:
        raise UnsupportedMediaType(MISLABELLED)
    extension = extension_of(filename)
    if extension in _ALL_EXTENSIONS and extension not in family.extensions:
        raise UnsupportedMediaType(MISLABELLED)


def has_fitting_extension(media_type: str, filename: str) -> bool:
    return extension_of(filename) in FAMILIES[media_type].extensions


def canonical_extension(media_type: str) -> str:
    return FAMILIES[media_type].extensions[0]
