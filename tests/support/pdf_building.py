"""PDFs built for the tests of ``medchat.files.pdf_cleaning``: a one-page PDF opened with
pikepdf, things added to its page, the result saved; and the canary, the patient's last name.

Two of the carriers (places holding the canary where no page shows it) are here rather than
with the others in ``test_pdf_cleaning.py``: ``icc_profile`` and ``layer_names`` are also
what ``test_pdf_cleaning_kept_and_refused.py`` cleans to show that content in a layer stays
drawn and colour profiles become device spaces.
"""

from __future__ import annotations

import io

import pikepdf
from pikepdf import Array, Dictionary, Name, String

from tests.support import sample_files as files

CANARY = "Zyxwlastname"


def one_page_pdf(text: str = "Hello") -> pikepdf.Pdf:
    """``sample_files.pdf(text)`` opened with pikepdf, to be added to."""
    return pikepdf.open(io.BytesIO(files.pdf(text)))


def saved(pdf: pikepdf.Pdf, *, recompress: bool = True) -> bytes:
    """``pdf`` saved; its streams compressed (the search must decode them to find anything),
    those that qpdf can decode recompressed unless ``recompress`` is False."""
    out = io.BytesIO()
    level = None if recompress else pikepdf.StreamDecodeLevel.none
    pdf.save(out, stream_decode_level=level)
    return out.getvalue()


def add_xobject(pdf: pikepdf.Pdf, name: str, xobject: pikepdf.Stream) -> None:
    """``xobject`` among the page's resources as ``name``, and drawn."""
    resources = first_page(pdf).Resources
    if "/XObject" not in resources:
        resources["/XObject"] = Dictionary()
    resources.XObject[name] = xobject
    pdf.pages[0].contents_add(pdf.make_stream(name.encode() + b" Do"))


def first_page(pdf: pikepdf.Pdf) -> Dictionary:
    """The dictionary of ``pdf``'s (only) page."""
    return pdf.pages[0].obj


def drawn_content(page: pikepdf.Page) -> bytes:
    """The page's content streams, decoded and joined."""
    contents = page.obj.Contents
    parts = list(contents) if isinstance(contents, Array) else [contents]
    return b"".join(part.read_bytes() for part in parts)


def appearance(pdf: pikepdf.Pdf, drawing: bytes = b"0 0 1 rg 0 0 20 20 re f") -> pikepdf.Stream:
    """A 20 by 20 form XObject drawing ``drawing``: an annotation's appearance, or a form."""
    return pdf.make_stream(drawing, Type=Name.XObject, Subtype=Name.Form, BBox=[0, 0, 20, 20])


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
    first_page(pdf).Resources["/ColorSpace"] = Dictionary(CS0=space, CS1=indexed)
    pdf.pages[0].contents_add(pdf.make_stream(b"/CS0 cs 1 0 0 sc 0 0 9 9 re f"))
    add_xobject(pdf, "/Im0", image)
    pdf.Root["/OutputIntents"] = Array([Dictionary(S=Name.GTS_PDFA1, DestOutputProfile=profile)])


def layer_names(pdf: pikepdf.Pdf) -> None:
    """Optional-content groups named after the patient: one around marked content of the
    page, one on a form XObject."""
    shown = pdf.make_indirect(Dictionary(Type=Name.OCG, Name=String(f"{CANARY} layer")))
    other = pdf.make_indirect(Dictionary(Type=Name.OCG, Name=String(CANARY.encode("utf-16-be"))))
    pdf.Root["/OCProperties"] = Dictionary(
        OCGs=Array([shown, other]), D=Dictionary(Order=Array([shown, other]), Name=String(CANARY))
    )
    form = appearance(pdf)
    form["/OC"] = other
    first_page(pdf).Resources["/Properties"] = Dictionary(oc1=shown)
    add_xobject(pdf, "/Fm0", form)
    pdf.pages[0].contents_add(pdf.make_stream(b"/OC /oc1 BDC /Fm0 Do EMC"))
