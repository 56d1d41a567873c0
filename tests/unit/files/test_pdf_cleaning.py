"""A PDF reaches the doctor with what its pages show and nothing else (issue 16, item 1).

Each carrier below is a place where a real PDF can hold the patient's last name without
showing it on a page (the review of the deny-list found every one of them surviving). Each
builds a PDF with the canary in that one place, has it cleaned, and searches the result
everywhere: every string and name of every object, every stream's data decoded, in ASCII,
latin-1 and UTF-16 (``sample_files.pdf_carries``). A page that draws the canary keeps it, so
the search can fail; the page itself stays intact.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable

import pikepdf
import pytest
from pikepdf import Array, Dictionary, Name, String

from medchat.errors import UnreadableFile
from medchat.files import jpeg_segments, pdf_cleaning
from tests.support import sample_files as files

CANARY = "Zyxwlastname"


def _pdf(text: str = "Hello") -> pikepdf.Pdf:
    return pikepdf.open(io.BytesIO(files.pdf(text)))


def _saved(pdf: pikepdf.Pdf, *, recompress: bool = True) -> bytes:
    """``pdf`` saved; its streams compressed (the search must decode them to find anything),
    those that qpdf can decode recompressed unless ``recompress`` is False."""
    out = io.BytesIO()
    level = None if recompress else pikepdf.StreamDecodeLevel.none
    pdf.save(out, stream_decode_level=level)
    return out.getvalue()


def _add_xobject(pdf: pikepdf.Pdf, name: str, xobject: pikepdf.Stream) -> None:
    """``xobject`` among the page's resources as ``name``, and drawn."""
    resources = _page(pdf).Resources
    if "/XObject" not in resources:
        resources["/XObject"] = Dictionary()
    resources.XObject[name] = xobject
    pdf.pages[0].contents_add(pdf.make_stream(name.encode() + b" Do"))


def _page(pdf: pikepdf.Pdf) -> Dictionary:
    return pdf.pages[0].obj


def _drawn(page: pikepdf.Page) -> bytes:
    """The page's content streams, decoded and joined."""
    contents = page.obj.Contents
    parts = list(contents) if isinstance(contents, Array) else [contents]
    return b"".join(part.read_bytes() for part in parts)


def _appearance(pdf: pikepdf.Pdf, drawing: bytes = b"0 0 1 rg 0 0 20 20 re f") -> pikepdf.Stream:
    return pdf.make_stream(drawing, Type=Name.XObject, Subtype=Name.Form, BBox=[0, 0, 20, 20])


def annotation_author_and_note(pdf: pikepdf.Pdf) -> None:
    """A sticky note that shows (its icon is flattened into the page), its author and text
    and its pop-up's not."""
    note = pdf.make_indirect(
        Dictionary(
            Type=Name.Annot,
            Subtype=Name.Text,
            Rect=[10, 10, 30, 30],
            F=4,
            T=String(f"Jeanne {CANARY}"),
            Contents=String(f"Mme {CANARY} called"),
            RC=String(f"<body><p>{CANARY}</p></body>"),
            AP=Dictionary(N=_appearance(pdf)),
        )
    )
    popup = pdf.make_indirect(
        Dictionary(Type=Name.Annot, Subtype=Name.Popup, Rect=[30, 30, 90, 90], Parent=note)
    )
    note["/Popup"] = popup
    _page(pdf)["/Annots"] = Array([note, popup])


def embedded_file(pdf: pikepdf.Pdf) -> None:
    """A file attached to the document: its name, description and bytes (compressed)."""
    content = pdf.make_stream(zlib.compress(f"{CANARY} insurance card".encode()))
    content["/Filter"] = Name.FlateDecode
    content["/Type"] = Name.EmbeddedFile
    spec = pdf.make_indirect(
        Dictionary(
            Type=Name.Filespec,
            F=String(f"{CANARY}_id.txt"),
            UF=String(f"{CANARY}_id.txt".encode("utf-16-be")),
            Desc=String(f"card of {CANARY}"),
            EF=Dictionary(F=content),
        )
    )
    pdf.Root["/Names"] = Dictionary(EmbeddedFiles=Dictionary(Names=Array([String("a"), spec])))
    pdf.Root["/AF"] = Array([spec])  # PDF 2.0's associated files, on the page too
    _page(pdf)["/AF"] = Array([spec])


def file_attachment_annotation(pdf: pikepdf.Pdf) -> None:
    """A paper-clip annotation holding a file: the clip shows, the file does not."""
    content = pdf.make_stream(f"{CANARY} letter".encode(), Type=Name.EmbeddedFile)
    spec = Dictionary(Type=Name.Filespec, F=String(f"{CANARY}.txt"), EF=Dictionary(F=content))
    _page(pdf)["/Annots"] = Array(
        [
            pdf.make_indirect(
                Dictionary(
                    Type=Name.Annot,
                    Subtype=Name.FileAttachment,
                    Rect=[10, 10, 30, 30],
                    F=4,
                    FS=spec,
                    AP=Dictionary(N=_appearance(pdf)),
                )
            )
        ]
    )


def phone_photo_jpeg(pdf: pikepdf.Pdf) -> None:
    """A phone photo drawn on the page as a JPEG image XObject, its EXIF (owner, artist,
    make, GPS position), XMP, ICC profile and comment inside its bytes."""
    width, height = files.marked_image().size
    image = pikepdf.Stream(
        pdf,
        files.photo_jpeg(CANARY),
        Type=Name.XObject,
        Subtype=Name.Image,
        Width=width,
        Height=height,
        ColorSpace=Name.DeviceRGB,
        BitsPerComponent=8,
        Filter=Name.DCTDecode,
    )
    _add_xobject(pdf, "/Im0", image)


def outline_title(pdf: pikepdf.Pdf) -> None:
    with pdf.open_outline() as outline:
        outline.root.append(pikepdf.OutlineItem(f"{CANARY} bloodwork", 0))


def signature(pdf: pikepdf.Pdf) -> None:
    value = pdf.make_indirect(
        Dictionary(
            Type=Name.Sig,
            Filter=Name("/Adobe.PPKLite"),
            Name=String(f"Jeanne {CANARY}"),
            Location=String(f"12 rue {CANARY}"),
            Reason=String(f"{CANARY} approves"),
            ContactInfo=String(f"jeanne.{CANARY}@example.org"),
            M=String("D:20240101"),
            Contents=String(CANARY.encode("utf-16-be")),
        )
    )
    field = pdf.make_indirect(
        Dictionary(
            FT=Name.Sig,
            T=String("Signature1"),
            V=value,
            Type=Name.Annot,
            Subtype=Name.Widget,
            Rect=[0, 0, 0, 0],
            P=_page(pdf),
        )
    )
    _page(pdf)["/Annots"] = Array([field])
    pdf.Root["/AcroForm"] = Dictionary(Fields=Array([field]), SigFlags=3)
    pdf.Root["/Perms"] = Dictionary(DocMDP=value)


def article_thread(pdf: pikepdf.Pdf) -> None:
    thread = pdf.make_indirect(
        Dictionary(Type=Name.Thread, I=Dictionary(Title=String("t"), Author=String(CANARY)))
    )
    bead = pdf.make_indirect(Dictionary(Type=Name.Bead, T=thread, P=_page(pdf), R=[0, 0, 9, 9]))
    bead["/N"], bead["/V"] = bead, bead
    thread["/F"] = bead
    pdf.Root["/Threads"] = Array([thread])
    _page(pdf)["/B"] = Array([bead])


def private_keys(pdf: pikepdf.Pdf) -> None:
    """An application's own keys in the catalogue, on a page, in the page tree, the trailer."""
    pdf.Root["/MyAppData"] = Dictionary(Owner=String(CANARY))
    pdf.Root[f"/{CANARY}"] = True
    _page(pdf)["/MyAppPage"] = String(CANARY)
    _page(pdf)["/PieceInfo"] = Dictionary(App=Dictionary(Private=String(CANARY)))
    pdf.Root.Pages["/MyAppTree"] = String(CANARY)
    _page(pdf).Resources["/MyAppResources"] = Dictionary(Owner=String(CANARY))
    pdf.trailer["/MyAppTrailer"] = String(CANARY)
    pdf.docinfo["/Author"] = CANARY


def document_javascript(pdf: pikepdf.Pdf) -> None:
    script = pdf.make_indirect(Dictionary(S=Name.JavaScript, JS=String(f"// {CANARY}")))
    pdf.Root["/Names"] = Dictionary(JavaScript=Dictionary(Names=Array([String("x"), script])))
    pdf.Root["/OpenAction"] = script
    _page(pdf)["/AA"] = Dictionary(O=Dictionary(S=Name.JavaScript, JS=String(CANARY)))


def icc_profile(pdf: pikepdf.Pdf) -> None:
    """An ICC profile (its description tag naming a person) used by the page's drawing, an
    image's colour space and an indexed space, and the document's output intent."""
    profile = pdf.make_stream(b"....desc" + CANARY.encode() + b"....")
    profile["/N"] = 3
    space = pdf.make_indirect(Array([Name.ICCBased, profile]))
    image = pdf.make_stream(
        b"\x80\x20\x20", Type=Name.XObject, Subtype=Name.Image, Width=1, Height=1
    )
    image.update({"/BitsPerComponent": 8, "/ColorSpace": space})
    indexed = Array([Name.Indexed, Array([Name.ICCBased, profile]), 0, String(b"\x00\x00\x00")])
    _page(pdf).Resources["/ColorSpace"] = Dictionary(CS0=space, CS1=indexed)
    pdf.pages[0].contents_add(pdf.make_stream(b"/CS0 cs 1 0 0 sc 0 0 9 9 re f"))
    _add_xobject(pdf, "/Im0", image)
    pdf.Root["/OutputIntents"] = Array([Dictionary(S=Name.GTS_PDFA1, DestOutputProfile=profile)])


def form_field_value(pdf: pikepdf.Pdf) -> None:
    """A form whose fields nothing draws: a hidden one, one of an empty rectangle, and a
    field's value with no widget at all."""
    hidden = pdf.make_indirect(
        Dictionary(
            FT=Name.Tx,
            T=String("lastname"),
            V=String(CANARY),
            Type=Name.Annot,
            Subtype=Name.Widget,
            Rect=[20, 20, 180, 40],
            F=2,
            AP=Dictionary(N=_appearance(pdf, f"BT ({CANARY}) Tj ET".encode())),
        )
    )
    empty = pdf.make_indirect(
        Dictionary(
            FT=Name.Tx,
            T=String("maiden"),
            V=String(CANARY),
            Type=Name.Annot,
            Subtype=Name.Widget,
            Rect=[0, 0, 0, 0],
        )
    )
    orphan = pdf.make_indirect(Dictionary(FT=Name.Tx, T=String(CANARY), V=String(CANARY)))
    _page(pdf)["/Annots"] = Array([hidden, empty])
    pdf.Root["/AcroForm"] = Dictionary(Fields=Array([hidden, empty, orphan]))


def page_labels(pdf: pikepdf.Pdf) -> None:
    pdf.Root["/PageLabels"] = Dictionary(Nums=Array([0, Dictionary(P=String(f"{CANARY}-"))]))


def layer_names(pdf: pikepdf.Pdf) -> None:
    """Optional-content groups named after the patient: one around marked content of the
    page, one on a form XObject."""
    shown = pdf.make_indirect(Dictionary(Type=Name.OCG, Name=String(f"{CANARY} layer")))
    other = pdf.make_indirect(Dictionary(Type=Name.OCG, Name=String(CANARY.encode("utf-16-be"))))
    pdf.Root["/OCProperties"] = Dictionary(
        OCGs=Array([shown, other]), D=Dictionary(Order=Array([shown, other]), Name=String(CANARY))
    )
    form = _appearance(pdf)
    form["/OC"] = other
    _page(pdf).Resources["/Properties"] = Dictionary(oc1=shown)
    _add_xobject(pdf, "/Fm0", form)
    pdf.pages[0].contents_add(pdf.make_stream(b"/OC /oc1 BDC /Fm0 Do EMC"))


def structure_tree_alt_text(pdf: pikepdf.Pdf) -> None:
    pdf.Root["/StructTreeRoot"] = pdf.make_indirect(
        Dictionary(
            Type=Name.StructTreeRoot,
            K=Dictionary(S=Name.Figure, Alt=String(f"photo of {CANARY}"), Pg=_page(pdf)),
        )
    )
    pdf.Root["/MarkInfo"] = Dictionary(Marked=True)
    pdf.Root["/Lang"] = String("fr-FR")
    _page(pdf)["/StructParents"] = 0


def form_xobject_private_data(pdf: pikepdf.Pdf) -> None:
    """A form XObject the page draws, carrying an application's private data, XMP, an OPI
    link and a reference to an external file: all named after the patient."""
    form = _appearance(pdf)
    form["/PieceInfo"] = Dictionary(App=Dictionary(Private=String(CANARY)))
    form["/Metadata"] = pdf.make_stream(f"<x:xmpmeta>{CANARY}</x:xmpmeta>".encode())
    form["/OPI"] = Dictionary({"/2.0": Dictionary(F=String(f"C:/{CANARY}/scan.tif"))})
    form["/Ref"] = Dictionary(F=String(f"{CANARY}.pdf"), Page=0)
    form["/Name"] = Name(f"/{CANARY}")
    _add_xobject(pdf, "/Fm0", form)


def font_metadata(pdf: pikepdf.Pdf) -> None:
    """The page's font carrying XMP, an application's data and an associated file."""
    font = _page(pdf).Resources.Font.F1
    font["/Metadata"] = pdf.make_stream(f"<x:xmpmeta>{CANARY}</x:xmpmeta>".encode())
    font["/PieceInfo"] = Dictionary(App=Dictionary(Private=String(CANARY)))
    font["/AF"] = Array([Dictionary(Type=Name.Filespec, F=String(f"{CANARY}.txt"))])


def thumbnail_and_page_extras(pdf: pikepdf.Pdf) -> None:
    """A page's thumbnail image, XMP and separation information; its content stream said to
    come from a file; a PostScript XObject (which PDF viewers never draw)."""
    thumbnail = pdf.make_stream(f"{CANARY} thumbnail".encode(), Width=1, Height=1)
    page = _page(pdf)
    page.Contents["/F"] = String(f"C:/{CANARY}/page.txt")
    postscript = pdf.make_stream(f"({CANARY}) show".encode(), Type=Name.XObject)
    postscript["/Subtype"] = Name.PS
    _add_xobject(pdf, "/PS0", postscript)
    page["/Thumb"] = thumbnail
    page["/Metadata"] = pdf.make_stream(f"<x:xmpmeta>{CANARY}</x:xmpmeta>".encode())
    page["/SeparationInfo"] = Dictionary(DeviceColorant=String(CANARY))


CARRIERS: list[Callable[[pikepdf.Pdf], None]] = [
    annotation_author_and_note,
    embedded_file,
    file_attachment_annotation,
    phone_photo_jpeg,
    outline_title,
    signature,
    article_thread,
    private_keys,
    document_javascript,
    icc_profile,
    form_field_value,
    page_labels,
    layer_names,
    structure_tree_alt_text,
    form_xobject_private_data,
    font_metadata,
    thumbnail_and_page_extras,
]


@pytest.mark.parametrize("carrier", CARRIERS, ids=[c.__name__ for c in CARRIERS])
def test_a_pdf_carrying_the_name_where_no_page_shows_it_is_cleaned_of_it(carrier):
    pdf = _pdf("Results")
    carrier(pdf)
    original = _saved(pdf)
    assert files.pdf_carries(original, CANARY)  # the carrier really carries it

    cleaned = pdf_cleaning.clean(original)

    assert files.pdf_carries(cleaned, CANARY) == []
    for jpeg in files.pdf_jpegs(cleaned):
        assert files.jpeg_metadata(jpeg) == {}
    with pikepdf.open(io.BytesIO(cleaned)) as result:
        assert set(result.Root.keys()) == {"/Type", "/Pages"}
        assert set(result.trailer.keys()) <= {"/Root", "/Size", "/ID"}
        assert b"(Results) Tj" in _drawn(result.pages[0])
        assert "/Annots" not in result.pages[0].obj


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
            P=_page(pdf),
        )
    )
    _page(pdf)["/Annots"] = Array([field])
    pdf.Root["/AcroForm"] = Dictionary(
        Fields=Array([field]),
        NeedAppearances=True,
        DR=Dictionary(Font=Dictionary(Helv=helvetica)),
        DA=String("/Helv 10 Tf 0 g"),
    )


def _stamp(pdf: pikepdf.Pdf) -> None:
    """A stamp with its own appearance, its author named."""
    stamp = _appearance(pdf, b"0 0 1 rg 0 0 20 20 re f BT /F1 8 Tf (Ferritin 12 ug per L) Tj ET")
    stamp["/Resources"] = _page(pdf).Resources
    _page(pdf)["/Annots"] = Array(
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
    pdf = _pdf("Form")
    annotate(pdf)
    cleaned = pdf_cleaning.clean(_saved(pdf))
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
        content = _drawn(page)
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
        pdf_cleaning.clean(_saved(pdf))


def _image(pdf: pikepdf.Pdf, data: bytes, filters: Name | Array) -> None:
    image = pdf.make_stream(b"", Type=Name.XObject, Subtype=Name.Image, Width=1, Height=1)
    image.update({"/ColorSpace": Name.DeviceGray, "/BitsPerComponent": 8})
    image.write(data, filter=filters, type_check=False)
    _add_xobject(pdf, "/Im0", image)


def test_a_jpeg_2000_image_is_refused_with_a_reason():
    pdf = _pdf()
    _image(pdf, b"\x00\x00\x00\x0cjP  \r\n\x87\n", Name.JPXDecode)
    with pytest.raises(UnreadableFile) as refused:
        pdf_cleaning.clean(_saved(pdf))
    assert "JPEG 2000" in refused.value.message


@pytest.mark.parametrize(
    "filters",
    [Name("/PrivateDecode"), Array([Name.FlateDecode, Name.DCTDecode])],
    ids=["unknown", "jpeg-behind-flate"],
)
def test_a_stream_of_a_filter_that_is_not_understood_is_refused(filters):
    pdf = _pdf()
    _image(pdf, zlib.compress(files.photo_jpeg(CANARY)), filters)
    with pytest.raises(UnreadableFile):
        pdf_cleaning.clean(_saved(pdf, recompress=False))


def test_content_in_a_layer_stays_drawn_and_colour_profiles_become_device_spaces():
    pdf = _pdf()
    layer_names(pdf)
    icc_profile(pdf)
    cleaned = pdf_cleaning.clean(_saved(pdf))
    with pikepdf.open(io.BytesIO(cleaned)) as result:
        resources = result.pages[0].Resources
        assert dict(resources.Properties.oc1) == {}
        assert "/OC" not in resources.XObject.Fm0
        content = _drawn(result.pages[0])
        assert b"/OC /oc1 BDC /Fm0 Do EMC" in content
        assert resources.ColorSpace.CS0 == "/DeviceRGB"
        assert list(resources.ColorSpace.CS1)[:2] == [Name.Indexed, Name.DeviceRGB]
        assert resources.XObject.Im0.ColorSpace == Name.DeviceRGB


def test_inherited_page_attributes_are_kept_on_the_page():
    pdf = _pdf("Inherited")
    page, tree = _page(pdf), pdf.Root.Pages
    tree["/Resources"], tree["/MediaBox"], tree["/Rotate"] = page.Resources, page.MediaBox, 90
    del page["/Resources"], page["/MediaBox"]
    with pikepdf.open(io.BytesIO(pdf_cleaning.clean(_saved(pdf)))) as result:
        cleaned = result.pages[0].obj
        assert list(cleaned.MediaBox) == [0, 0, 200, 200] and cleaned.Rotate == 90
        assert cleaned.Resources.Font.F1.BaseFont == Name.Helvetica


def test_a_compressed_stream_stays_compressed_and_cleaning_is_deterministic():
    pdf = _pdf()
    pdf.pages[0].Contents.write(zlib.compress(b" " * 20_000_000, 9), filter=Name.FlateDecode)
    original = _saved(pdf)
    assert len(original) < 100_000
    cleaned = pdf_cleaning.clean(original)
    assert len(cleaned) < 100_000
    assert pdf_cleaning.clean(original) == cleaned


def test_an_owner_password_alone_does_not_stop_the_cleaning():
    out = io.BytesIO()
    _pdf("Readable").save(out, encryption=pikepdf.Encryption(owner="owner", user=""))
    with pikepdf.open(io.BytesIO(pdf_cleaning.clean(out.getvalue()))) as result:
        assert not result.is_encrypted
        assert b"(Readable) Tj" in result.pages[0].Contents.read_bytes()
