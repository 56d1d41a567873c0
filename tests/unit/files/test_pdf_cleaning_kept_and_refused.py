"""What cleaning a PDF keeps and what it refuses (issue 16, item 1).

The other half of ``test_pdf_cleaning.py`` (where the canary goes from every place no page
shows it): a page that draws the canary keeps it intact, so the search for it can fail;
annotations that show stay visible as page content; a CMYK JPEG keeps its Adobe segment and
its pixels; content in a layer stays drawn and colour profiles become device spaces;
inherited page attributes, compressed streams and an owner password alone do not stop the
cleaning, which is deterministic. Refused: JPEG 2000 images and streams of a filter that is
not understood. The walk of a JPEG's own segments is proved in ``test_jpeg_segments.py``.
"""

from __future__ import annotations

import io
import zlib

import pikepdf
import pytest
from pikepdf import Array, Dictionary, Name, String

from medchat.errors import UnreadableFile
from medchat.files import pdf_cleaning
from tests.support import sample_files as files
from tests.support.pdf_building import (
    CANARY,
    add_xobject,
    appearance,
    drawn_content,
    first_page,
    icc_profile,
    layer_names,
    one_page_pdf,
    saved,
)


def test_a_page_that_draws_the_name_keeps_it_intact():
    original = files.pdf(f"Dear Mme {CANARY}")
    cleaned = pdf_cleaning.clean(original)
    assert files.pdf_carries(cleaned, CANARY) == ["ascii", "latin-1"]
    with (
        pikepdf.open(io.BytesIO(original)) as before,
        pikepdf.open(io.BytesIO(cleaned)) as after,
    ):
        page = after.pages[0]
        assert page.Contents.read_bytes() == before.pages[0].Contents.read_bytes()
        assert page.mediabox == before.pages[0].mediabox
        assert page.Resources.Font.F1.BaseFont == Name.Helvetica


def _filled_form(pdf: pikepdf.Pdf) -> None:
    """A text field filled in, whose appearance the viewer is asked to draw."""
    helvetica = Dictionary(
        Type=Name.Font, Subtype=Name.Type1, BaseFont=Name.Helvetica, Encoding=Name.WinAnsiEncoding
    )
    field = pdf.make_indirect(
        Dictionary(
            Type=Name.Annot,
            Subtype=Name.Widget,
            FT=Name.Tx,
            T=String(f"{CANARY} field"),
            TU=String(f"{CANARY} tooltip"),
            V=String("Ferritin 12 ug per L"),
            DA=String("/Helv 10 Tf 0 g"),
            Rect=[20, 20, 180, 40],
            F=4,
            P=first_page(pdf),
        )
    )
    first_page(pdf)["/Annots"] = Array([field])
    pdf.Root["/AcroForm"] = Dictionary(
        Fields=Array([field]),
        NeedAppearances=True,
        DR=Dictionary(Font=Dictionary(Helv=helvetica)),
        DA=String("/Helv 10 Tf 0 g"),
    )


def _stamp(pdf: pikepdf.Pdf) -> None:
    """A stamp with its own appearance, its author named."""
    stamp = appearance(pdf, b"0 0 1 rg 0 0 20 20 re f BT /F1 8 Tf (Ferritin 12 ug per L) Tj ET")
    stamp["/Resources"] = first_page(pdf).Resources
    first_page(pdf)["/Annots"] = Array(
        [
            pdf.make_indirect(
                Dictionary(
                    Type=Name.Annot,
                    Subtype=Name.Stamp,
                    Rect=[100, 100, 120, 120],
                    F=4,
                    T=String(CANARY),
                    AP=Dictionary(N=stamp),
                )
            )
        ]
    )


@pytest.mark.parametrize("annotate", [_filled_form, _stamp], ids=["filled-form", "stamp"])
def test_an_annotation_that_shows_stays_visible_as_page_content(annotate):
    pdf = one_page_pdf("Form")
    annotate(pdf)
    cleaned = pdf_cleaning.clean(saved(pdf))
    assert files.pdf_carries(cleaned, CANARY) == []
    with pikepdf.open(io.BytesIO(cleaned)) as result:
        page = result.pages[0]
        assert "/AcroForm" not in result.Root and "/Annots" not in page.obj
        drawn = [
            form.read_bytes()
            for form in page.Resources.XObject.values()
            if form.Subtype == Name.Form
        ]
        assert any(b"(Ferritin 12 ug per L) Tj" in content for content in drawn)
        # The page's content draws the flattened form XObject, where the field was.
        names = [str(name) for name, _ in page.Resources.XObject.items()]
        content = drawn_content(page)
        assert all(name.encode() + b" Do" in content for name in names)


def test_a_cmyk_jpeg_keeps_its_adobe_segment_and_decodes_to_the_same_pixels():
    original = files.image_pdf(files.cmyk_jpeg(CANARY), (16, 8), "/DeviceCMYK")
    [before] = files.pdf_jpegs(original)
    assert set(files.jpeg_metadata(before)) >= {"exif", "comment"}
    cleaned = pdf_cleaning.clean(original)
    [after] = files.pdf_jpegs(cleaned)
    assert files.jpeg_metadata(after) == {}  # but for the Adobe APP14
    assert files.pdf_carries(cleaned, CANARY) == []
    picture = files.opened(after)
    assert picture.mode == "CMYK" and picture.info["adobe_transform"] == 0
    assert picture.tobytes() == files.opened(before).tobytes()


def _image(pdf: pikepdf.Pdf, data: bytes, filters: Name | Array) -> None:
    image = pdf.make_stream(b"", Type=Name.XObject, Subtype=Name.Image, Width=1, Height=1)
    image.update({"/ColorSpace": Name.DeviceGray, "/BitsPerComponent": 8})
    image.write(data, filter=filters, type_check=False)
    add_xobject(pdf, "/Im0", image)


def test_a_jpeg_2000_image_is_refused_with_a_reason():
    pdf = one_page_pdf()
    _image(pdf, b"\x00\x00\x00\x0cjP  \r\n\x87\n", Name.JPXDecode)
    with pytest.raises(UnreadableFile) as refused:
        pdf_cleaning.clean(saved(pdf))
    assert "JPEG 2000" in refused.value.message


@pytest.mark.parametrize(
    "filters",
    [Name("/PrivateDecode"), Array([Name.FlateDecode, Name.DCTDecode])],
    ids=["unknown", "jpeg-behind-flate"],
)
def test_a_stream_of_a_filter_that_is_not_understood_is_refused(filters):
    pdf = one_page_pdf()
    _image(pdf, zlib.compress(files.photo_jpeg(CANARY)), filters)
    with pytest.raises(UnreadableFile):
        pdf_cleaning.clean(saved(pdf, recompress=False))


def test_content_in_a_layer_stays_drawn_and_colour_profiles_become_device_spaces():
    pdf = one_page_pdf()
    layer_names(pdf)
    icc_profile(pdf)
    cleaned = pdf_cleaning.clean(saved(pdf))
    with pikepdf.open(io.BytesIO(cleaned)) as result:
        resources = result.pages[0].Resources
        assert dict(resources.Properties.oc1) == {}
        assert "/OC" not in resources.XObject.Fm0
        content = drawn_content(result.pages[0])
        assert b"/OC /oc1 BDC /Fm0 Do EMC" in content
        assert resources.ColorSpace.CS0 == "/DeviceRGB"
        assert list(resources.ColorSpace.CS1)[:2] == [Name.Indexed, Name.DeviceRGB]
        assert resources.XObject.Im0.ColorSpace == Name.DeviceRGB


def test_inherited_page_attributes_are_kept_on_the_page():
    pdf = one_page_pdf("Inherited")
    page, tree = first_page(pdf), pdf.Root.Pages
    tree["/Resources"], tree["/MediaBox"], tree["/Rotate"] = page.Resources, page.MediaBox, 90
    del page["/Resources"], page["/MediaBox"]
    with pikepdf.open(io.BytesIO(pdf_cleaning.clean(saved(pdf)))) as result:
        cleaned = result.pages[0].obj
        assert list(cleaned.MediaBox) == [0, 0, 200, 200] and cleaned.Rotate == 90
        assert cleaned.Resources.Font.F1.BaseFont == Name.Helvetica


def test_a_compressed_stream_stays_compressed_and_cleaning_is_deterministic():
    pdf = one_page_pdf()
    pdf.pages[0].Contents.write(zlib.compress(b" " * 20_000_000, 9), filter=Name.FlateDecode)
    original = saved(pdf)
    assert len(original) < 100_000
    cleaned = pdf_cleaning.clean(original)
    assert len(cleaned) < 100_000
    assert pdf_cleaning.clean(original) == cleaned


def test_an_owner_password_alone_does_not_stop_the_cleaning():
    out = io.BytesIO()
    one_page_pdf("Readable").save(out, encryption=pikepdf.Encryption(owner="owner", user=""))
    with pikepdf.open(io.BytesIO(pdf_cleaning.clean(out.getvalue()))) as result:
        assert not result.is_encrypted
        assert b"(Readable) Tj" in result.pages[0].Contents.read_bytes()
