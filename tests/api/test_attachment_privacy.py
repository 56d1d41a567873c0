"""Attachments reach the doctor without the patient's identity (issue 16, item 1).

Real files made here, as a phone or an office suite writes them, carry a canary in their
metadata (EXIF owner, device and GPS position; PNG text chunks; a PDF's Author, Title, XMP,
an earlier revision and a photo's EXIF inside it) and in their file name. What the clinician
downloads holds none of it, read back by the decoders themselves, and is named by kind and
order (``photo-1.jpg``); the member keeps the name they gave. Images over the pixel limit are
refused unread.
"""

from __future__ import annotations

import io
import re

import pikepdf
import pytest
from flask import Flask

from tests.support import sample_files as files
from tests.support.attachments import (
    BASELINE,
    CLINICIAN_DOWNLOAD,
    CLINICIAN_UPLOAD,
    MEMBER_DOWNLOAD,
    Clinic,
    build_clinic,
    post_file,
    stored,
)
from tests.support.audit import audit_entries
from tests.support.console import console_login
from tests.support.messaging import claim
from tests.support.responses import error_code

CANARY = "Jeanne Zzmoreau"
NAME_CANARY = "Jeanne_Zzmoreau"
CLINICIAN_MESSAGES = "/api/v1/clinician/conversations/{}/messages?order=asc"
MEMBER_MESSAGES = "/api/v1/conversations/{}/messages?order=asc"


@pytest.fixture
def clinic(app: Flask) -> Clinic:
    return build_clinic(app)


def _uploaded(clinic: Clinic, data: bytes, name: str) -> str:
    response = post_file(clinic, data, name, "application/octet-stream")
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]  # type: ignore[no-any-return]


def _as_clinician(clinic: Clinic, attachment_id: str) -> tuple[bytes, str]:
    """The bytes and the ``Content-Disposition`` a clinician's download gets."""
    response = clinic.client.get(
        CLINICIAN_DOWNLOAD.format(attachment_id), headers=clinic.clinician_auth
    )
    assert response.status_code == 200, response.get_json()
    return response.data, response.headers["Content-Disposition"]


def _no_canary(data: bytes) -> None:
    for canary in ("Zzmoreau", "zzmoreau"):
        for encoding in ("ascii", "utf-16-be", "utf-16-le"):
            assert canary.encode(encoding) not in data, (canary, encoding)


def _names_seen_by(clinic: Clinic, path: str, auth: dict[str, str]) -> list[str]:
    page = clinic.client.get(path.format(clinic.conversation_id), headers=auth).get_json()
    return [a["filename"] for m in page["items"] for a in m["attachments"]]


def test_a_phone_photo_reaches_the_doctor_without_owner_device_or_position_and_upright(clinic):
    # Orientation 6: the camera was turned; a viewer rotates the picture 90 degrees clockwise,
    # so the top-left mark of the stored pixels shows top-right.
    original = files.photo_jpeg(CANARY, orientation=6)
    assert original.count(b"Zzmoreau") >= 5  # the file really carries the identity
    attachment_id = _uploaded(clinic, original, f"{NAME_CANARY}_rash.jpg")

    data, disposition = _as_clinician(clinic, attachment_id)
    _no_canary(data)
    picture = files.opened(data)
    assert picture.format == "JPEG"
    exif = picture.getexif()
    for tag in (files.ARTIST, files.MAKE, files.MODEL, files.COPYRIGHT, files.GPS_IFD):
        assert tag not in exif, hex(tag)
    assert exif.get_ifd(files.GPS_IFD) == {} and exif.get_ifd(files.EXIF_IFD) == {}
    assert exif.get(files.ORIENTATION, 1) == 1
    assert not {"exif", "comment", "xmp", "icc_profile"} & set(picture.info)
    # Upright as it was shown: 20 wide, 40 high, the mark in the top-right corner.
    assert picture.size == (20, 40)
    assert _close(picture.getpixel((15, 4)), files.MARK)
    assert _close(picture.getpixel((4, 4)), files.BACKGROUND)
    assert disposition == "attachment; filename=\"photo-1.jpg\"; filename*=UTF-8''photo-1.jpg"

    # The member keeps their name; the bytes are the cleaned ones for everybody.
    mine = clinic.client.get(MEMBER_DOWNLOAD.format(attachment_id), headers=clinic.member_auth)
    assert mine.data == data
    assert f"{NAME_CANARY}_rash.jpg" in mine.headers["Content-Disposition"]


def _close(pixel: tuple[int, ...], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 12 for a, b in zip(pixel, expected, strict=False))


def test_a_png_loses_its_text_and_exif_chunks_and_keeps_its_pixels(clinic):
    original = files.photo_png(CANARY)
    attachment_id = _uploaded(clinic, original, f"{NAME_CANARY}.png")
    data, disposition = _as_clinician(clinic, attachment_id)
    _no_canary(data)
    assert files.png_chunk_types(data) == [b"IHDR", b"IDAT", b"IEND"]
    picture = files.opened(data)
    assert picture.getexif() == {} and picture.text == {}  # type: ignore[attr-defined]
    assert picture.tobytes() == files.opened(original).tobytes()
    assert "photo-1.png" in disposition


def test_a_pdf_loses_author_title_xmp_and_earlier_revisions_and_keeps_its_page(clinic):
    original = files.pdf_with_metadata(CANARY, text="Ferritin 12 ug per L")
    attachment_id = _uploaded(clinic, original, f"{NAME_CANARY}_bloodwork.pdf")
    data, disposition = _as_clinician(clinic, attachment_id)
    _no_canary(data)
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert "/Info" not in pdf.trailer and dict(pdf.docinfo) == {}
        assert "/Metadata" not in pdf.Root
        assert [item for item in pdf.objects if _has_metadata(item)] == []
        assert len(pdf.open_metadata()) == 0
        # What the page shows is content, and is kept.
        assert b"Ferritin 12 ug per L" in pdf.pages[0].Contents.read_bytes()
    assert "document-1.pdf" in disposition


def _has_metadata(item: object) -> bool:
    return isinstance(item, pikepdf.Dictionary | pikepdf.Stream) and (
        "/Metadata" in item or "/PieceInfo" in item
    )


def test_a_phone_photo_made_into_a_pdf_reaches_the_doctor_without_its_exif(clinic):
    original = files.photo_pdf(CANARY)
    assert files.pdf_carries(original, "Zzmoreau")  # the JPEG inside carries the identity
    attachment_id = _uploaded(clinic, original, f"{NAME_CANARY}_rash.pdf")
    data, disposition = _as_clinician(clinic, attachment_id)
    _no_canary(data)
    assert files.pdf_carries(data, "Zzmoreau") == []
    [jpeg] = files.pdf_jpegs(data)
    assert files.jpeg_metadata(jpeg) == {}
    picture = files.opened(jpeg)
    assert picture.getexif() == {} and picture.size == files.marked_image().size
    # The same pixels: the JPEG lost its segments, not a bit of its picture.
    [before] = files.pdf_jpegs(original)
    assert picture.tobytes() == files.opened(before).tobytes()
    assert "document-1.pdf" in disposition


def test_a_heic_loses_its_exif_and_xmp_and_stays_upright(clinic):
    original = files.photo_heic(CANARY, orientation=6)
    assert b"Zzmoreau" in original
    assert files.opened(original).size == (20, 40)  # the file's rotation, applied by libheif
    attachment_id = _uploaded(clinic, original, f"{NAME_CANARY}.HEIC")
    data, disposition = _as_clinician(clinic, attachment_id)
    _no_canary(data)
    picture = files.opened(data)
    assert picture.format == "HEIF"
    exif = picture.getexif()
    assert not {files.ARTIST, files.MAKE, files.MODEL, files.GPS_IFD} & set(exif)
    assert picture.info.get("xmp") is None
    assert picture.size == (20, 40)
    assert _close(picture.getpixel((15, 4)), files.MARK)
    assert "photo-1.heic" in disposition


def test_the_clinician_sees_neutral_names_by_kind_and_order_and_the_member_their_own(clinic):
    uploads = [
        (files.pdf("one"), f"{NAME_CANARY}_bloodwork.pdf"),
        (files.photo_jpeg(), "IMG_0042.JPG"),
        (files.photo_png(), f"{NAME_CANARY} screenshot.png"),
        (files.pdf("two"), "ordonnance Zzmoreau.pdf"),
    ]
    ids = [_uploaded(clinic, data, name) for data, name in uploads]
    neutral = ["document-1.pdf", "photo-1.jpg", "photo-2.png", "document-2.pdf"]
    assert _names_seen_by(clinic, CLINICIAN_MESSAGES, clinic.clinician_auth) == neutral
    assert _names_seen_by(clinic, MEMBER_MESSAGES, clinic.member_auth) == [n for _, n in uploads]
    # A page of the newest message alone still numbers its file among the whole conversation.
    newest = clinic.client.get(
        f"/api/v1/clinician/conversations/{clinic.conversation_id}/messages?limit=1",
        headers=clinic.clinician_auth,
    ).get_json()["items"]
    assert [a["filename"] for a in newest[0]["attachments"]] == ["document-2.pdf"]
    for attachment_id, name in zip(ids, neutral, strict=True):
        assert f'filename="{name}"' in _as_clinician(clinic, attachment_id)[1]

    # A clinician's own upload is named for them the same way; the member sees its name.
    claim(clinic.client, clinic.clinician_auth, clinic.conversation_id)
    sent = post_file(
        clinic, files.pdf(), "care plan.pdf", path=CLINICIAN_UPLOAD, auth=clinic.clinician_auth
    )
    assert sent.status_code == 201
    assert sent.get_json()["filename"] == "document-3.pdf"
    assert _names_seen_by(clinic, MEMBER_MESSAGES, clinic.member_auth)[-1] == "care plan.pdf"
    # ... and a replayed upload answers as the first one did.
    replay = [
        post_file(
            clinic,
            files.pdf("r"),
            "x.pdf",
            path=CLINICIAN_UPLOAD,
            auth=clinic.clinician_auth,
            key="clinician-upload-1",
        )
        for _ in range(2)
    ]
    assert [r.get_json()["filename"] for r in replay] == ["document-4.pdf"] * 2


def test_the_console_shows_neutral_names_only(app, clinic):
    _uploaded(clinic, files.photo_jpeg(CANARY), f"{NAME_CANARY}_rash.jpg")
    console = app.test_client()
    console_login(console, clinic.runtime, clinic.team.clinician)
    html = console.get(f"/console/conversations/{clinic.conversation_id}").get_data(as_text=True)
    assert "photo-1.jpg" in html
    assert "Zzmoreau" not in html
    download = re.search(r'href="(/console/attachments/[^"]+)"', html).group(1)  # type: ignore[union-attr]
    file = console.get(download)
    assert "photo-1.jpg" in file.headers["Content-Disposition"]
    _no_canary(file.data)


@pytest.mark.parametrize(
    ("data", "limit"),
    [(files.png_bomb(), None), (files.png_bomb(200, 100), 10_000)],
    ids=["over-pillow-limit", "over-setting"],
)
def test_a_decompression_bomb_is_refused_and_nothing_is_stored(make_app, data, limit):
    app = make_app(**({"max_image_pixels": limit} if limit else {}))
    clinic = build_clinic(app)
    assert len(data) < 200
    response = post_file(clinic, data, "scan.png")
    assert (response.status_code, error_code(response)) == (413, "image_too_large")
    assert "pixels" in response.get_json()["error"]["message"]
    assert stored(clinic.runtime) == BASELINE
    assert audit_entries(clinic.runtime, "attachment.upload") == []
    if limit:  # a real picture of exactly the limit is accepted
        assert post_file(clinic, files.png(100, 100), "ok.png").status_code == 201


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (files.jpeg(), "damaged"),  # a JPEG header and nothing to decode
        (files.heic(), "damaged"),
        (b"%PDF-1.4\nnot really", "damaged"),
        (files.pdf()[:60], "damaged"),
    ],
    ids=["jpeg-header", "heic-header", "pdf-garbage", "pdf-truncated"],
)
def test_a_file_that_cannot_be_read_is_422_and_nothing_is_stored(clinic, data, message):
    response = post_file(clinic, data, "x", "application/octet-stream")
    assert (response.status_code, error_code(response)) == (422, "unreadable_file")
    assert message in response.get_json()["error"]["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    assert stored(clinic.runtime) == BASELINE


def test_a_password_protected_pdf_is_refused_with_a_reason(clinic):
    locked = pikepdf.new()
    locked.add_blank_page()
    out = io.BytesIO()
    locked.save(out, encryption=pikepdf.Encryption(owner="owner", user="user"))
    response = post_file(clinic, out.getvalue(), "locked.pdf")
    assert (response.status_code, error_code(response)) == (422, "unreadable_file")
    assert "password" in response.get_json()["error"]["message"]
    assert stored(clinic.runtime) == BASELINE
