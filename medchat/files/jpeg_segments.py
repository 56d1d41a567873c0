"""A JPEG's segments walked without decoding it: what a PDF's JPEG images lose.

Why a module of its own: ``medchat.files.pdf_cleaning`` rebuilds a PDF from its objects, and
this is the one place it reads inside a stream's bytes. A JPEG image (``DCTDecode``) carries
its metadata in segments of its own, which no PDF dictionary shows; walking them is a small
parser of the JPEG format (ITU-T T.81), with its own markers, lengths and errors, and is
tested on JPEG bytes alone.

``jpeg_without_metadata`` drops every APPn segment (EXIF, XMP, ICC profile, IPTC, JFIF, maker
data) and comment by a walk of the markers up to and between the scans, and anything after
the end-of-image marker; the tables, frame, scans and entropy-coded data are copied as they
are, so the pixels are the same bits. An Adobe APP14 segment is kept, rewritten with its
colour transform alone (version and flags, which no decoder reads, are set to constants): a
CMYK or YCCK JPEG needs it to decode its colours right. A JPEG whose markers cannot be walked
(``UnreadableFile``) is refused. Nothing is decoded: the walk reads the raw bytes, bounded by
the upload's size limit.
"""

from __future__ import annotations

from medchat.errors import UnreadableFile

# JPEG markers (ITU-T T.81, table B.1). Kept: the frame (SOF0-3, 5-7, 9-11, 13-15), the
# tables (DHT, DAC, DQT), scans (SOS), restart interval (DRI), number of lines (DNL) and the
# hierarchical ones (DHP, EXP). Dropped: APP0-APP15 and COM. Any other is refused.
_SOI, _EOI, _SOS, _APP14, _COM = 0xD8, 0xD9, 0xDA, 0xEE, 0xFE
_KEPT_MARKERS = frozenset(
    [*range(0xC0, 0xC8), *range(0xC9, 0xD0), _SOS, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF]
)
_DROPPED_MARKERS = frozenset([*range(0xE0, 0xF0), _COM])
#: The Adobe segment (ITU-T T.872, 6.5.3): its length, "Adobe", a version, two flag words,
#: then the colour transform (0: none or CMYK, 1: YCbCr, 2: YCCK).
_ADOBE_LENGTH = 14


def jpeg_without_metadata(data: bytes) -> bytes:
    """A JPEG's bytes without its APPn segments, comments and trailing bytes (see the module
    docstring); raises ``UnreadableFile`` if its markers cannot be walked."""
    if not data.startswith(b"\xff\xd8"):
        raise UnreadableFile
    out = [b"\xff\xd8"]
    position = 2
    while True:
        marker, position = _next_marker(data, position)
        if marker == _EOI:
            break
        if position + 2 > len(data):
            raise UnreadableFile
        length = int.from_bytes(data[position : position + 2], "big")
        end = position + length
        if length < 2 or end > len(data):
            raise UnreadableFile
        segment = data[position:end]
        position = end
        if marker in _KEPT_MARKERS:
            out.append(bytes((0xFF, marker)) + segment)
        elif marker == _APP14 and segment[2:7] == b"Adobe":
            out.append(_adobe_segment(segment))
        elif marker not in _DROPPED_MARKERS:
            raise UnreadableFile
        if marker == _SOS:
            scan_end = _entropy_coded_end(data, position)
            out.append(data[position:scan_end].rstrip(b"\xff"))
            position = scan_end
            if position == len(data):  # no end-of-image marker: decoders accept that
                break
    out.append(b"\xff\xd9")
    return b"".join(out)


def _next_marker(data: bytes, position: int) -> tuple[int, int]:
    """The marker at ``position`` (after any fill bytes) and the position after it."""
    if position >= len(data) or data[position] != 0xFF:
        raise UnreadableFile
    while position < len(data) and data[position] == 0xFF:
        position += 1
    if position >= len(data):
        raise UnreadableFile
    return data[position], position + 1


def _entropy_coded_end(data: bytes, position: int) -> int:
    """Where the entropy-coded data from ``position`` ends: at the next marker that is not a
    stuffed zero or a restart (RST0-7), or at the end of the data."""
    while True:
        found = data.find(b"\xff", position)
        if found < 0 or found + 1 >= len(data):
            return len(data)
        following = data[found + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            position = found + 1
            continue
        return found


def _adobe_segment(segment: bytes) -> bytes:
    """The Adobe APP14 segment rebuilt from its colour transform alone (version 100, no flags):
    the other fields could carry a few bytes of anything, and no decoder reads them."""
    if len(segment) != _ADOBE_LENGTH or segment[13] > 2:
        raise UnreadableFile
    return b"\xff\xee\x00\x0eAdobe\x00\x64" + b"\x00" * 4 + segment[13:14]
