"""Attachments are typed by their bytes; labels that disagree are refused."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medchat.errors import UnsupportedMediaType
from medchat.files import types as attachment_types
from medchat.files.types import HEIC, HEIF, JPEG, PDF, PNG, check_label, sniff
from tests.support import sample_files as files
from tests.support.sample_files import ftyp


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (files.pdf(), PDF),
        (files.png(), PNG),
        (files.jpeg(), JPEG),
        (files.heic(), HEIC),
        (ftyp(b"mif1", b"heic"), HEIC),  # HEVC brand only among the compatible ones
        (ftyp(b"heix", b"mif1"), HEIC),
        (ftyp(b"msf1", b"hevc"), HEIC),  # image sequence
        (ftyp(b"mif1", b"miaf"), HEIF),  # generic HEIF: not claimed to be HEVC
        (ftyp(b"avif", b"mif1", b"miaf"), HEIF),
    ],
)
def test_accepted_types_are_recognised_by_their_first_bytes(data, expected):
    assert sniff(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"",
        files.EXE,
        files.TEXT,
        files.HTML,
        b"GIF89a\x01\x00\x01\x00",
        b"PK\x03\x04" + b"\x00" * 26,  # zip, docx
        b"%PDF",  # the header needs its dash
        b" %PDF-1.7",  # and must come first
        b"\x89PNG\r\n",  # a truncated signature
        b"\xff\xd8",  # SOI without a following marker
        ftyp(b"isom", b"mp41"),  # an MP4 video
        ftyp(b"isom", b"mp41", minor=b"heic"),  # the minor version is not a brand
    ],
)
def test_other_content_is_refused(data):
    with pytest.raises(UnsupportedMediaType):
        sniff(data)


@pytest.mark.parametrize(
    "data",
    [
        ftyp(b"heic")[:12] + b"\x00",  # shorter than a box header
        b"\x00\x00\x00\x40ftypheic\x00\x00\x00\x00mif1",  # size says more than there is
        b"\x00\x00\x00\x13ftypheic\x00\x00\x00\x00mif",  # not a whole number of brands
        b"\x00\x00\x00\x01ftypheic" + b"\x00" * 16,  # 64-bit size form: never in HEIF
        b"\x00\x00\x00\x00ftypheic\x00\x00\x00\x00",  # "to the end of file" size
        b"\x00\x00\x00\x18moovheic\x00\x00\x00\x00mif1heic",  # not an ftyp box
    ],
)
def test_malformed_ftyp_boxes_are_refused_not_half_read(data):
    with pytest.raises(UnsupportedMediaType):
        sniff(data)


def test_brands_far_beyond_a_real_ftyp_box_are_not_scanned():
    huge = ftyp(b"isom", *([b"mp41"] * 2000), b"heic")
    with pytest.raises(UnsupportedMediaType):
        sniff(huge)


@given(st.binary(max_size=64))
def test_sniffing_arbitrary_bytes_answers_a_known_type_or_refuses(data):
    with contextlib.suppress(UnsupportedMediaType):
        assert sniff(data) in attachment_types.FAMILIES


@pytest.mark.parametrize(
    ("media_type", "declared", "filename"),
    [
        (PDF, None, "report.pdf"),
        (PDF, "", "report"),
        (PDF, "application/octet-stream", "report.PDF"),
        (PDF, "Application/PDF; name=report.pdf", "report.pdf"),
        (PDF, "application/x-pdf", "scan.html"),  # unknown extension: fixed, not refused
        (JPEG, "image/jpg", "photo.JPG"),
        (JPEG, "image/jpeg", "photo.jpeg"),
        (PNG, "image/png", "x.png"),
        (HEIC, "image/heif", "IMG_0001.HEIC"),
        (HEIF, "image/heic", "picture.heic"),
    ],
)
def test_labels_agreeing_with_the_content_pass(media_type, declared, filename):
    check_label(media_type, declared, filename)


@pytest.mark.parametrize(
    ("media_type", "declared", "filename"),
    [
        (PNG, "application/pdf", "x.png"),  # PNG bytes declared as a PDF
        (PDF, "image/png", "x.pdf"),
        (PDF, "text/html", "x.pdf"),
        (PDF, "application/octet-stream", "x.png"),  # PDF bytes named as a PNG
        (JPEG, None, "photo.heic"),
        (HEIC, "image/jpeg", "IMG_0001.HEIC"),
    ],
)
def test_labels_naming_another_type_are_refused_as_mislabelled(media_type, declared, filename):
    with pytest.raises(UnsupportedMediaType) as caught:
        check_label(media_type, declared, filename)
    assert caught.value.message == attachment_types.MISLABELLED
