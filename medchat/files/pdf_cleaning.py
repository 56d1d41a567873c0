"""A PDF rebuilt from what its pages show, so nothing else it carries reaches the doctor.

Why a module of its own: a PDF can name the patient in far more places than an image (the
review that led here found twelve), and cleaning it by deleting the places one knows of (a
deny-list) leaves every place one does not. So the file is rebuilt from an allow-list instead,
and that takes more code than the rest of ``medchat.files.metadata``, which calls ``clean``
(``metadata.strip`` stays the one entry point).

What is built (a new ``Pdf``; only what is reachable from its catalogue is written, so an
earlier revision kept by an incremental update, or any object nothing shows, is not):

- The trailer holds only ``/Root`` (and the ``/ID`` written from the content,
  ``deterministic_id``). The catalogue holds only ``/Type`` and ``/Pages``: no document
  information, XMP, outlines (bookmark titles), name trees (embedded files, document
  JavaScript, named destinations), article threads, form (``/AcroForm``), signatures, page
  labels, optional-content layer names, structure tree (``/Alt`` text), output intents,
  actions, permissions or any application's own entry.
- Each page keeps only ``_PAGE_KEYS`` (its boxes, rotation, user unit, transparency group,
  resources and content); inherited boxes, rotation and resources are copied onto it.
  Annotations that show (not hidden, not ``NoView``, not a pop-up, of a non-empty rectangle)
  are first flattened into the page (qpdf ``flatten_annotations("screen")``, after qpdf has
  drawn the appearance of form fields that ask for it, ``/NeedAppearances``): a filled form or
  a stamp stays visible as content, while the author, the note's text, field names and values
  nothing draws, pop-ups, links and the form itself go with ``/Annots``.
- Everything the pages reach (resources, form XObjects, patterns, Type 3 fonts, appearance
  streams, soft masks) is walked once (``_clean_graph``): ``_DROPPED_KEYS`` go from every
  dictionary (XMP, private application data, structure and optional-content membership,
  associated files, geospatial data, OPI file names); resource dictionaries keep only the
  standard kinds (``_RESOURCE_KINDS``), image and form XObjects only ``_IMAGE_KEYS`` /
  ``_FORM_KEYS``; every marked-content property list in ``/Properties`` is replaced by an
  empty one, so a layer's name goes and its content is drawn as if it had no layer (a layer
  that was off shows too: what a page holds is shown, never hidden); an
  ``ICCBased`` colour space becomes the device space of as many components (its profile's
  description can name a person or a device); a PostScript XObject (never drawn by PDF
  viewers) is emptied; a stream stored outside the file (``/F``) loses that reference.
- JPEG images (``DCTDecode``) lose their metadata by a walk of their segments
  (``medchat.files.jpeg_segments``); one behind another filter is refused.
- JPEG 2000 images (``JPXDecode``) are refused (``JPEG2000_PDF``): their XML, UUID and
  colour-profile boxes and codestream comments would need a parser of their own, and a
  re-encoding from pixels cannot tell a CMYK picture from an RGB one with transparency.
  Phones and office suites write JPEG; scanners set to JPEG 2000 are asked to save again.
- A stream whose filter is not one of the standard ones is refused.

What is left as content (what the page draws, which the doctor is meant to read): content
streams as written, with any marked-content text or inline images they hold (rewriting them
would mean inflating them); resources a page lists but does not draw (telling which it draws
would too); fonts (font programs, their names, encodings, their dictionaries but for
``_DROPPED_KEYS``); images of the other codings (Flate, LZW, run-length, CCITT fax, JBIG2)
as they are: their bytes are samples (a JBIG2 stream may also hold comment extension
segments, which no common encoder writes); colorant names of spot colours. Links, bookmarks
and fillable fields do not survive: a form arrives filled in, no longer fillable.

Decompression bombs: no stream is decoded (``stream_decode_level=none`` when saving); the
JPEG walk reads the raw bytes of a ``DCTDecode`` stream, bounded by the upload's size limit.
A password-protected PDF is refused (``ENCRYPTED_PDF``); a PDF qpdf cannot read, or one that
does not parse as expected, is refused as ``UnreadableFile``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pikepdf
from pikepdf import Array, Dictionary, Name, Stream

from medchat.errors import UnreadableFile
from medchat.files.jpeg_segments import jpeg_without_metadata

log = logging.getLogger("medchat.attachments")

ENCRYPTED_PDF = "Password-protected PDFs are not accepted; send the file without a password."
JPEG2000_PDF = (
    "PDFs holding JPEG 2000 images are not accepted: their metadata cannot be removed."
    " Save the document again with JPEG images, or send photos of its pages."
)

#: What a page keeps: its geometry, transparency group, resources and content.
_PAGE_KEYS = (
    "/MediaBox",
    "/CropBox",
    "/BleedBox",
    "/TrimBox",
    "/ArtBox",
    "/Rotate",
    "/UserUnit",
    "/Group",
    "/Resources",
    "/Contents",
)
#: The page attributes a page may take from its ancestors in the page tree (ISO 32000-1, 7.7.3.4).
_INHERITABLE = frozenset({"/Resources", "/MediaBox", "/CropBox", "/Rotate"})
#: A page tree deeper than this is not a page tree (qpdf refuses far shallower loops itself).
_MAX_TREE_DEPTH = 256
#: Annotation flags (ISO 32000-1, 12.5.3) of annotations that do not show on screen.
_HIDDEN, _NO_VIEW = 2, 32
#: What an image XObject keeps (ISO 32000-1, table 89): how to draw its samples.
_IMAGE_KEYS = frozenset(
    {
        "/Type",
        "/Subtype",
        "/Width",
        "/Height",
        "/ColorSpace",
        "/BitsPerComponent",
        "/Intent",
        "/ImageMask",
        "/Mask",
        "/Decode",
        "/Interpolate",
        "/SMask",
        "/SMaskInData",
        "/Matte",
        "/Length",
        "/Filter",
        "/DecodeParms",
    }
)
#: What a form XObject keeps (ISO 32000-1, table 95): how to draw its content.
_FORM_KEYS = frozenset(
    {
        "/Type",
        "/Subtype",
        "/FormType",
        "/BBox",
        "/Matrix",
        "/Resources",
        "/Group",
        "/Length",
        "/Filter",
        "/DecodeParms",
    }
)
#: The kinds of resources (ISO 32000-1, table 33); any other entry is an application's own.
_RESOURCE_KINDS = frozenset(
    {
        "/ExtGState",
        "/ColorSpace",
        "/Pattern",
        "/Shading",
        "/XObject",
        "/Font",
        "/ProcSet",
        "/Properties",
    }
)
#: Removed from every dictionary the pages reach: XMP, applications' private data, links into
#: the structure tree and optional content, associated (embedded) files, geospatial data,
#: OPI's file names of the original images, modification dates.
_DROPPED_KEYS = (
    "/Metadata",
    "/PieceInfo",
    "/OC",
    "/StructParent",
    "/StructParents",
    "/AF",
    "/Measure",
    "/PtData",
    "/OPI",
    "/LastModified",
)
#: Removed from every stream: data kept in another file, named by a file specification.
_EXTERNAL_STREAM_KEYS = ("/F", "/FFilter", "/FDecodeParms", "/DL")
#: The standard filters (ISO 32000-1, 7.4.1); ``Crypt`` and any other name are refused.
_FILTERS = frozenset(
    {
        "/ASCIIHexDecode",
        "/ASCII85Decode",
        "/LZWDecode",
        "/FlateDecode",
        "/RunLengthDecode",
        "/CCITTFaxDecode",
        "/JBIG2Decode",
        "/DCTDecode",
        "/JPXDecode",
    }
)
#: The device colour space of an ICC profile's number of components.
_DEVICE_SPACES: dict[object, Name] = {1: Name.DeviceGray, 3: Name.DeviceRGB, 4: Name.DeviceCMYK}


def clean(data: bytes) -> bytes:
    """``data``, a PDF, rebuilt from its pages (see the module's docstring).

    Raises ``UnreadableFile`` (with ``ENCRYPTED_PDF`` or ``JPEG2000_PDF`` where that is why)
    for a PDF that cannot be cleaned.
    """
    try:
        with pikepdf.open(io.BytesIO(data)) as source, pikepdf.new() as rebuilt:
            _flatten_annotations(source)
            for page in source.pages:
                view = source.make_indirect(_page_view(page.obj))
                rebuilt.pages.append(pikepdf.Page(view))
            _clean_graph(rebuilt.Root)
            out = io.BytesIO()
            rebuilt.save(
                out,
                # A file identifier from the content, not from the time and the file's path.
                deterministic_id=True,
                # Streams are copied as they are, neither inflated (a compressed bomb stays
                # compressed) nor compressed: what a page holds is the uploader's.
                stream_decode_level=pikepdf.StreamDecodeLevel.none,
                compress_streams=False,
                encryption=False,
                fix_metadata_version=False,
                min_version=source.pdf_version,
            )
            return out.getvalue()
    except pikepdf.PasswordError as exc:
        raise UnreadableFile(ENCRYPTED_PDF) from exc
    except UnreadableFile:
        raise
    except Exception as exc:
        # As for images: qpdf's errors on untrusted bytes (and a structure of the wrong
        # types) are "not a readable PDF".
        log.info("an uploaded PDF could not be read: %s", type(exc).__name__)
        raise UnreadableFile from exc


def _flatten_annotations(pdf: pikepdf.Pdf) -> None:
    """Annotations that show drawn into their pages' content; the others left to be dropped."""
    for page in pdf.pages:
        annotations = page.obj.get("/Annots")
        if annotations is None:
            continue
        shown = [a for a in annotations if _shows(a)] if isinstance(annotations, Array) else []
        page.obj["/Annots"] = Array(shown)
    form = pdf.Root.get("/AcroForm")
    if isinstance(form, Dictionary) and bool(form.get("/NeedAppearances", False)):
        pdf.generate_appearance_streams()
    pdf.flatten_annotations("screen")


def _shows(annotation: object) -> bool:
    if not isinstance(annotation, Dictionary) or annotation.get("/Subtype") == Name.Popup:
        return False
    flags = annotation.get("/F", 0)
    if not isinstance(flags, int) or flags & (_HIDDEN | _NO_VIEW):
        return False
    rect = annotation.get("/Rect")
    if not isinstance(rect, Array) or len(rect) != 4:
        return False
    try:
        x1, y1, x2, y2 = (float(value) for value in rect)
    except (TypeError, ValueError):
        return False
    return x1 != x2 and y1 != y2


def _page_view(page: Dictionary) -> Dictionary:
    """A new page dictionary with only the allowed keys of ``page``, inherited ones included."""
    view = Dictionary(Type=Name.Page)
    for key in _PAGE_KEYS:
        value = _inherited(page, key) if key in _INHERITABLE else page.get(key)
        if value is not None:
            view[key] = value
    if "/Resources" not in view:
        view["/Resources"] = Dictionary()
    return view


def _inherited(page: Dictionary, key: str) -> object | None:
    node: object = page
    for _ in range(_MAX_TREE_DEPTH):
        if not isinstance(node, Dictionary):
            return None
        if key in node:
            return node[key]
        node = node.get("/Parent")
    raise UnreadableFile


def _clean_graph(root: pikepdf.Object) -> None:
    """Every dictionary, array and stream reachable from ``root`` cleaned, each once."""
    seen = pikepdf.ObjectSet()
    pending: list[pikepdf.Object] = [root]
    while pending:
        item = pending.pop()
        if not seen.add(item):
            continue
        if isinstance(item, Dictionary | Stream):
            pending.extend(_clean_dictionary(item))
        elif isinstance(item, Array):
            pending.extend(_clean_array(item))


def _clean_dictionary(item: Dictionary | Stream) -> Iterator[pikepdf.Object]:
    """``item`` cleaned in place; yields the containers it holds, to be walked."""
    if isinstance(item, Stream):
        _clean_stream(item)
    for key in _DROPPED_KEYS:
        if key in item:
            del item[key]
    resources = item.get("/Resources")
    if isinstance(resources, Dictionary):
        _clean_resources(resources)
    for key in list(item.keys()):
        value = item[key]
        device = _device_space(value)
        if device is not None:
            item[key] = device
        elif isinstance(value, Dictionary | Stream | Array):
            yield value


def _clean_resources(resources: Dictionary) -> None:
    """Only the standard kinds of resources kept; every property list emptied."""
    for key in list(resources.keys()):
        if key not in _RESOURCE_KINDS:
            del resources[key]
    properties = resources.get("/Properties")
    if isinstance(properties, Dictionary):
        for name in list(properties.keys()):
            properties[name] = Dictionary()


def _clean_array(item: Array) -> Iterator[pikepdf.Object]:
    for index, value in enumerate(list(item)):
        device = _device_space(value)
        if device is not None:
            item[index] = device
        elif isinstance(value, Dictionary | Stream | Array):
            yield value


def _device_space(value: object) -> Name | None:
    """The device space replacing ``value`` if it is an ``ICCBased`` colour space, else None."""
    if not (isinstance(value, Array) and len(value) == 2 and value[0] == Name.ICCBased):
        return None
    profile = value[1]
    device = _DEVICE_SPACES.get(profile.get("/N") if isinstance(profile, Stream) else None)
    if device is None:
        raise UnreadableFile  # a profile of another number of components is no colour space
    return device


def _clean_stream(stream: Stream) -> None:
    subtype = stream.get("/Subtype")
    if subtype == Name.Image:
        _keep_only(stream, _IMAGE_KEYS)
    elif subtype == Name.Form:
        _keep_only(stream, _FORM_KEYS)
    elif subtype == Name.PS and stream.get("/Type") == Name.XObject:
        stream.write(b"")  # PostScript for printers of the 1990s: no PDF viewer draws it
    for key in _EXTERNAL_STREAM_KEYS:
        if key in stream:
            del stream[key]
    filters = _filters(stream)
    if "/JPXDecode" in filters:
        raise UnreadableFile(JPEG2000_PDF)
    if "/DCTDecode" in filters:
        if filters != ["/DCTDecode"]:
            raise UnreadableFile  # a JPEG behind another filter: not walked, so not kept
        parameters = stream.get("/DecodeParms")
        stream.write(
            jpeg_without_metadata(stream.read_raw_bytes()),
            filter=Name.DCTDecode,
            decode_parms=parameters if isinstance(parameters, Dictionary | Array) else None,
        )


def _keep_only(stream: Stream, allowed: frozenset[str]) -> None:
    for key in list(stream.keys()):
        if key not in allowed:
            del stream[key]


def _filters(stream: Stream) -> list[str]:
    value = stream.get("/Filter")
    names = [] if value is None else list(value) if isinstance(value, Array) else [value]
    if not all(isinstance(name, Name) and str(name) in _FILTERS for name in names):
        raise UnreadableFile
    return [str(name) for name in names]
