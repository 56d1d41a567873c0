"""A JPEG's segments walked without decoding it (``medchat.files.jpeg_segments``): what a
PDF's JPEG images lose (issue 16, item 1).

The walk drops the APPn segments and comments between scans and the bytes after the end, and
decodes to the same pixels; a JPEG whose markers cannot be walked is refused, alone and inside
a PDF.
"""

from __future__ import annotations

import io

import pikepdf
import pytest
from pikepdf import Name

from medchat.errors import UnreadableFile
from medchat.files import jpeg_segments, pdf_cleaning
from tests.support import sample_files as files
from tests.support.pdf_building import CANARY, saved


def _segments(jpeg: bytes) -> list[int]:
    """The markers of a JPEG's segments before its first scan."""
    markers, position = [], 2
    while jpeg[position + 1] != 0xDA:
        markers.append(jpeg[position + 1])
        position += 2 + int.from_bytes(jpeg[position + 2 : position + 4], "big")
    return markers


def test_the_jpeg_walk_drops_segments_between_scans_and_bytes_after_the_end():
    out = io.BytesIO()
    files.marked_image(64, 64).save(out, "JPEG", progressive=True, comment=b"x")
    original = out.getvalue()
    second_scan = original.index(b"\xff\xda", original.index(b"\xff\xda") + 2)
    comment = b"\xff\xfe\x00\x0e" + CANARY.encode()
    app = b"\xff\xe1\x00\x0e" + CANARY.encode()
    tampered = original[:second_scan] + comment + app + original[second_scan:] + CANARY.encode() * 2
    assert files.opened(tampered).tobytes() == files.opened(original).tobytes()

    cleaned = jpeg_segments.jpeg_without_metadata(tampered)

    assert CANARY.encode() not in cleaned and b"\xff\xfe" not in cleaned
    assert cleaned.endswith(b"\xff\xd9")
    assert not {marker for marker in _segments(cleaned) if marker >= 0xE0}
    assert cleaned.count(b"\xff\xda") == original.count(b"\xff\xda")
    assert files.opened(cleaned).tobytes() == files.opened(original).tobytes()


@pytest.mark.parametrize(
    "jpeg",
    [
        b"not a jpeg",
        b"\xff\xd8\xff\xe1\x00",  # a segment's length cut off
        b"\xff\xd8\xff\xe1\x00\x40Exif\x00\x00",  # a segment longer than the file
        b"\xff\xd8\xff\xe1\x00\x01",  # a length shorter than itself
        b"\xff\xd8\x00\x00",  # no marker where one must be
        b"\xff\xd8\xff\xd0\x00\x04\x00\x00",  # a restart marker outside a scan
        b"\xff\xd8\xff\xee\x00\x10Adobe\x00\x64\x00\x00\x00\x00\x01\x00\x00",  # Adobe, too long
        b"\xff\xd8\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x07",  # no such transform
    ],
    ids=[
        "no-soi",
        "cut-length",
        "overlong",
        "short-length",
        "no-marker",
        "stray-restart",
        "long-adobe",
        "bad-transform",
    ],
)
def test_a_jpeg_whose_markers_cannot_be_walked_is_refused(jpeg):
    with pytest.raises(UnreadableFile):
        jpeg_segments.jpeg_without_metadata(jpeg)
    pdf = pikepdf.open(io.BytesIO(files.image_pdf(files.photo_jpeg(), (40, 20))))
    [image] = [
        item for item in pdf.objects if isinstance(item, pikepdf.Stream) and "/Width" in item
    ]
    image.write(jpeg, filter=Name.DCTDecode)
    with pytest.raises(UnreadableFile):
        pdf_cleaning.clean(saved(pdf))
