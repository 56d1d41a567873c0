"""A PDF reaches the doctor with what its pages show and nothing else (issue 16, item 1).

Each carrier below is a place where a real PDF can hold the patient's last name without
showing it on a page (the review of the deny-list found every one of them surviving). Each
builds a PDF with the canary in that one place, has it cleaned, and searches the result
everywhere: every string and name of every object, every stream's data decoded, in ASCII,
latin-1 and UTF-16 (``sample_files.pdf_carries``). Two carriers, ``icc_profile`` and
``layer_names``, are in ``tests/support/pdf_building.py``, shared with
``test_pdf_cleaning_kept_and_refused.py``: what must stay (a page that draws the canary keeps
it, so the search can fail) and what is refused is proved there.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable

import pikepdf
import pytest
from pikepdf import Array, Dictionary, Name, String

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
            AP=Dictionary(N=appearance(pdf)),
        )
    )
    popup = pdf.make_indirect(
        Dictionary(Type=Name.Annot, Subtype=Name.Popup, Rect=[30, 30, 90, 90], Parent=note)
    )
    note["/Popup"] = popup
    first_page(pdf)["/Annots"] = Array([note, popup])


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
    first_page(pdf)["/AF"] = Array([spec])


def file_attachment_annotation(pdf: pikepdf.Pdf) -> None:
    """A paper-clip annotation holding a file: the clip shows, the file does not."""
    content = pdf.make_stream(f"{CANARY} letter".encode(), Type=Name.EmbeddedFile)
    spec = Dictionary(Type=Name.Filespec, F=String(f"{CANARY}.txt"), EF=Dictionary(F=content))
    first_page(pdf)["/Annots"] = Array(
        [
            pdf.make_indirect(
                Dictionary(
                    Type=Name.Annot,
                    Subtype=Name.FileAttachment,
                    Rect=[10, 10, 30, 30],
                    F=4,
                    FS=spec,
                    AP=Dictionary(N=appearance(pdf)),
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
    add_xobject(pdf, "/Im0", image)


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
            P=first_page(pdf),
        )
    )
    first_page(pdf)["/Annots"] = Array([field])
    pdf.Root["/AcroForm"] = Dictionary(Fields=Array([field]), SigFlags=3)
    pdf.Root["/Perms"] = Dictionary(DocMDP=value)


def article_thread(pdf: pikepdf.Pdf) -> None:
    thread = pdf.make_indirect(
        Dictionary(Type=Name.Thread, I=Dictionary(Title=String("t"), Author=String(CANARY)))
    )
    bead = pdf.make_indirect(
        Dictionary(Type=Name.Bead, T=thread, P=first_page(pdf), R=[0, 0, 9, 9])
    )
    bead["/N"], bead["/V"] = bead, bead
    thread["/F"] = bead
    pdf.Root["/Threads"] = Array([thread])
    first_page(pdf)["/B"] = Array([bead])


def private_keys(pdf: pikepdf.Pdf) -> None:
    """An application's own keys in the catalogue, on a page, in the page tree, the trailer."""
    pdf.Root["/MyAppData"] = Dictionary(Owner=String(CANARY))
    pdf.Root[f"/{CANARY}"] = True
    first_page(pdf)["/MyAppPage"] = String(CANARY)
    first_page(pdf)["/PieceInfo"] = Dictionary(App=Dictionary(Private=String(CANARY)))
    pdf.Root.Pages["/MyAppTree"] = String(CANARY)
    first_page(pdf).Resources["/MyAppResources"] = Dictionary(Owner=String(CANARY))
    pdf.trailer["/MyAppTrailer"] = String(CANARY)
    pdf.docinfo["/Author"] = CANARY


def document_javascript(pdf: pikepdf.Pdf) -> None:
    script = pdf.make_indirect(Dictionary(S=Name.JavaScript, JS=String(f"// {CANARY}")))
    pdf.Root["/Names"] = Dictionary(JavaScript=Dictionary(Names=Array([String("x"), script])))
    pdf.Root["/OpenAction"] = script
    first_page(pdf)["/AA"] = Dictionary(O=Dictionary(S=Name.JavaScript, JS=String(CANARY)))


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
            AP=Dictionary(N=appearance(pdf, f"BT ({CANARY}) Tj ET".encode())),
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
    first_page(pdf)["/Annots"] = Array([hidden, empty])
    pdf.Root["/AcroForm"] = Dictionary(Fields=Array([hidden, empty, orphan]))


def page_labels(pdf: pikepdf.Pdf) -> None:
    pdf.Root["/PageLabels"] = Dictionary(Nums=Array([0, Dictionary(P=String(f"{CANARY}-"))]))


def structure_tree_alt_text(pdf: pikepdf.Pdf) -> None:
    pdf.Root["/StructTreeRoot"] = pdf.make_indirect(
        Dictionary(
            Type=Name.StructTreeRoot,
            K=Dictionary(S=Name.Figure, Alt=String(f"photo of {CANARY}"), Pg=first_page(pdf)),
        )
    )
    pdf.Root["/MarkInfo"] = Dictionary(Marked=True)
    pdf.Root["/Lang"] = String("fr-FR")
    first_page(pdf)["/StructParents"] = 0


def form_xobject_private_data(pdf: pikepdf.Pdf) -> None:
    """A form XObject the page draws, carrying an application's private data, XMP, an OPI
    link and a reference to an external file: all named after the patient."""
    form = appearance(pdf)
    form["/PieceInfo"] = Dictionary(App=Dictionary(Private=String(CANARY)))
    form["/Metadata"] = pdf.make_stream(f"<x:xmpmeta>{CANARY}</x:xmpmeta>".encode())
    form["/OPI"] = Dictionary({"/2.0": Dictionary(F=String(f"C:/{CANARY}/scan.tif"))})
    form["/Ref"] = Dictionary(F=String(f"{CANARY}.pdf"), Page=0)
    form["/Name"] = Name(f"/{CANARY}")
    add_xobject(pdf, "/Fm0", form)


def font_metadata(pdf: pikepdf.Pdf) -> None:
    """The page's font carrying XMP, an application's data and an associated file."""
    font = first_page(pdf).Resources.Font.F1
    font["/Metadata"] = pdf.make_stream(f"<x:xmpmeta>{CANARY}</x:xmpmeta>".encode())
    font["/PieceInfo"] = Dictionary(App=Dictionary(Private=String(CANARY)))
    font["/AF"] = Array([Dictionary(Type=Name.Filespec, F=String(f"{CANARY}.txt"))])


def thumbnail_and_page_extras(pdf: pikepdf.Pdf) -> None:
    """A page's thumbnail image, XMP and separation information; its content stream said to
    come from a file; a PostScript XObject (which PDF viewers never draw)."""
    thumbnail = pdf.make_stream(f"{CANARY} thumbnail".encode(), Width=1, Height=1)
    page = first_page(pdf)
    page.Contents["/F"] = String(f"C:/{CANARY}/page.txt")
    postscript = pdf.make_stream(f"({CANARY}) show".encode(), Type=Name.XObject)
    postscript["/Subtype"] = Name.PS
    add_xobject(pdf, "/PS0", postscript)
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
    pdf = one_page_pdf("Results")
    carrier(pdf)
    original = saved(pdf)
    assert files.pdf_carries(original, CANARY)  # the carrier really carries it

    cleaned = pdf_cleaning.clean(original)

    assert files.pdf_carries(cleaned, CANARY) == []
    for jpeg in files.pdf_jpegs(cleaned):
        assert files.jpeg_metadata(jpeg) == {}
    with pikepdf.open(io.BytesIO(cleaned)) as result:
        assert set(result.Root.keys()) == {"/Type", "/Pages"}
        assert set(result.trailer.keys()) <= {"/Root", "/Size", "/ID"}
        assert b"(Results) Tj" in drawn_content(result.pages[0])
        assert "/Annots" not in result.pages[0].obj
