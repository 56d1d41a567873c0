"""Small real files of each accepted type (and some refused ones).

``pdf``, ``png``, ``jpeg`` and ``heic`` are built byte by byte (``jpeg`` and ``heic`` are
headers only: enough to sniff, not to decode). The photos and the PDF with metadata are made
with Pillow, pillow-heif and pikepdf, carrying what a phone or an office suite writes: EXIF
with a GPS position, device and owner, PNG text chunks, a document information dictionary
and XMP.
"""

from __future__ import annotations

import io
import struct
import zlib

import pikepdf
from PIL import Image, ImageCms, PngImagePlugin

from medchat.files import metadata as attachment_metadata
from medchat.files import types as attachment_types

#: The colour of the top-left corner of ``marked_image``, elsewhere ``BACKGROUND``: where it
#: lands after a rotation shows whether the orientation was applied.
MARK, BACKGROUND = (10, 200, 10), (200, 10, 10)
#: EXIF tags (TIFF/EXIF 2.32): what names the owner, the device, the place.
ARTIST, MAKE, MODEL, ORIENTATION, COPYRIGHT = 0x013B, 0x010F, 0x0110, 0x0112, 0x8298
GPS_IFD, EXIF_IFD = 0x8825, 0x8769
OWNER_NAME = 0xA430  # CameraOwnerName, in the EXIF IFD


def pdf(text: str = "Hello", encoding: str = "latin-1") -> bytes:
    """A minimal valid one-page PDF 1.4 with ``text`` in its (uncompressed) content stream
    and a right xref. ``encoding`` "utf-8" puts the text's UTF-8 bytes there, as a canary."""
    stream = f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET".encode(encoding)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int = 1, height: int = 1, padding: int = 0) -> bytes:
    """A valid RGB PNG; ``padding`` adds an ancillary ``tEXt`` chunk to reach a given size."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80\x20\x20" * width for _ in range(height))
    extra = _png_chunk(b"tEXt", b"Comment\x00" + b"x" * padding) if padding else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + extra
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


def jpeg() -> bytes:
    """SOI, a JFIF APP0 segment and EOI: the header every JPEG starts with."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return b"\xff\xd8\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0 + b"\xff\xd9"


def ftyp(major: bytes, *compatible: bytes, minor: bytes = b"\x00\x00\x00\x00") -> bytes:
    body = major + minor + b"".join(compatible)
    return struct.pack(">I", len(body) + 8) + b"ftyp" + body


def heic() -> bytes:
    """An iPhone-style HEIC start: ``ftyp`` (heic; mif1, heic) and an empty ``meta`` box."""
    return ftyp(b"heic", b"mif1", b"heic") + struct.pack(">I", 12) + b"meta" + b"\x00" * 4


EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48
TEXT = b"Just some notes about my symptoms.\n"
HTML = b"<!doctype html><script>alert(1)</script>"


def marked_image(width: int = 40, height: int = 20) -> Image.Image:
    """An RGB picture with a 10x10 ``MARK`` square in its top-left corner."""
    image = Image.new("RGB", (width, height), BACKGROUND)
    image.paste(MARK, (0, 0, 10, 10))
    return image


def identifying_exif(canary: str, *, orientation: int = 1) -> Image.Exif:
    """EXIF as a phone writes it: owner, device, copyright, GPS position, orientation."""
    exif = Image.Exif()
    exif[ARTIST] = f"{canary} artist"
    exif[COPYRIGHT] = f"(c) {canary}"
    exif[MAKE] = f"{canary}Phone"
    exif[MODEL] = f"{canary} Model 15"
    exif[ORIENTATION] = orientation
    exif.get_ifd(EXIF_IFD)[OWNER_NAME] = f"{canary} owner"
    gps = exif.get_ifd(GPS_IFD)
    gps[1], gps[2] = "N", (48.0, 51.0, 24.0)  # GPSLatitudeRef, GPSLatitude
    gps[3], gps[4] = "E", (2.0, 21.0, 3.0)  # GPSLongitudeRef, GPSLongitude
    return exif


def _icc_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def photo_jpeg(canary: str = "", *, orientation: int = 1) -> bytes:
    """A JPEG with ``canary`` in its EXIF, a comment and XMP (no canary: no metadata)."""
    out = io.BytesIO()
    options: dict[str, object] = {"quality": 90}
    if canary:
        options.update(
            exif=identifying_exif(canary, orientation=orientation),
            comment=f"{canary} comment".encode(),
            xmp=f"<x:xmpmeta><dc:creator>{canary}</dc:creator></x:xmpmeta>".encode(),
            icc_profile=_icc_profile(),
        )
    marked_image().save(out, "JPEG", **options)
    return out.getvalue()


def photo_png(canary: str = "") -> bytes:
    """A PNG with ``canary`` in tEXt, iTXt and zTXt chunks and in eXIf."""
    info = PngImagePlugin.PngInfo()
    options: dict[str, object] = {}
    if canary:
        info.add_text("Author", f"{canary} author")
        info.add_itxt("Description", f"{canary} description", lang="fr")
        info.add_text("Comment", f"{canary} comment", zip=True)
        options["exif"] = identifying_exif(canary)
    out = io.BytesIO()
    marked_image().save(out, "PNG", pnginfo=info, **options)
    return out.getvalue()


def photo_heic(canary: str = "", *, orientation: int = 1) -> bytes:
    """A HEIC (HEVC, by pillow-heif) with ``canary`` in its EXIF and XMP; the orientation is
    written as the file's rotation (``irot``), as a phone does. (pillow-heif's writer is
    registered by ``medchat.files.metadata``.)"""
    options: dict[str, object] = {"quality": 90}
    if canary:
        options["exif"] = identifying_exif(canary, orientation=orientation).tobytes()
        options["xmp"] = f"<x:xmpmeta><dc:creator>{canary}</dc:creator></x:xmpmeta>".encode()
    out = io.BytesIO()
    marked_image().save(out, "HEIF", **options)
    return out.getvalue()


def pdf_with_metadata(canary: str, text: str = "Results") -> bytes:
    """``pdf(text)`` saved by pikepdf with ``canary`` as Author and Title, in the catalogue's
    XMP, in a page's own XMP stream and in ``/PieceInfo``; then an incremental update that
    changes the title again, so an earlier revision holds a document information dictionary."""
    source = pikepdf.open(io.BytesIO(pdf(text)))
    source.docinfo["/Author"] = f"{canary} author"
    source.docinfo["/Title"] = f"{canary} bloodwork"
    with source.open_metadata(set_pikepdf_as_editor=False) as xmp:
        xmp["dc:creator"] = [f"{canary} creator"]
        xmp["dc:title"] = f"{canary} title"
    page = source.pages[0].obj
    page["/Metadata"] = source.make_stream(f"<x:xmpmeta>{canary} page</x:xmpmeta>".encode())
    page["/PieceInfo"] = pikepdf.Dictionary(
        {"/Writer": pikepdf.Dictionary({"/Private": pikepdf.String(f"{canary} private")})}
    )
    out = io.BytesIO()
    source.save(out, compress_streams=False)
    first = out.getvalue()
    # An incremental update appended by hand (ISO 32000-1, 7.5.6): a new Info object and a
    # trailer whose /Prev points at the first cross-reference table.
    reopened = pikepdf.open(io.BytesIO(first))
    size = len(reopened.objects) + 1
    root = reopened.Root.objgen[0]
    previous = int(first.rsplit(b"startxref", 1)[1].split()[0])
    info = f"{size} 0 obj\n<< /Title ({canary} revised) >>\nendobj\n".encode()
    update = bytearray(b"\n")
    offset = len(first) + len(update)
    update += info
    xref = len(first) + len(update)
    update += b"xref\n%d 1\n%010d 00000 n \n" % (size, offset)
    update += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R /Prev %d >>\n" % (
        size + 1,
        root,
        size,
        previous,
    )
    update += b"startxref\n%d\n%%%%EOF\n" % xref
    return first + bytes(update)


def cmyk_jpeg(canary: str = "") -> bytes:
    """A CMYK JPEG, as Pillow (libjpeg) writes one: with the Adobe APP14 segment that tells
    decoders its colours are stored inverted; with ``canary`` in its EXIF and a comment too."""
    image = Image.new("CMYK", (16, 8), (0, 180, 200, 20))
    image.paste((200, 0, 40, 0), (0, 0, 8, 8))
    options: dict[str, object] = {"quality": 95}
    if canary:
        options.update(exif=identifying_exif(canary), comment=f"{canary} comment".encode())
    out = io.BytesIO()
    image.save(out, "JPEG", **options)
    return out.getvalue()


def image_pdf(jpeg: bytes, size: tuple[int, int], colour_space: str = "/DeviceRGB") -> bytes:
    """A one-page PDF showing ``jpeg`` over the whole page, its bytes copied unchanged (a
    ``DCTDecode`` image XObject, metadata and all), as phone apps make a PDF of a photo."""
    width, height = size
    pdf = pikepdf.new()
    page = pdf.add_blank_page(page_size=size)
    image = pikepdf.Stream(
        pdf,
        jpeg,
        Type=pikepdf.Name.XObject,
        Subtype=pikepdf.Name.Image,
        Width=width,
        Height=height,
        ColorSpace=pikepdf.Name(colour_space),
        BitsPerComponent=8,
        Filter=pikepdf.Name.DCTDecode,
    )
    page.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=image))
    page.Contents = pdf.make_stream(b"q %d 0 0 %d 0 0 cm /Im0 Do Q" % (width, height))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def photo_pdf(canary: str) -> bytes:
    """``photo_jpeg(canary)`` (EXIF with owner, device and GPS position, XMP, an ICC profile, a
    comment) turned into a PDF by ``image_pdf``."""
    return image_pdf(photo_jpeg(canary), marked_image().size)


#: The filters whose bytes are a picture's own coding: searched as they are, not decoded.
PICTURE_FILTERS = frozenset({"/DCTDecode", "/JPXDecode", "/JBIG2Decode", "/CCITTFaxDecode"})


def pdf_texts(data: bytes) -> list[bytes]:
    """Everything a PDF holds, as bytes to search: the file as it is, then every string and
    name of every object and of the trailer, and every stream's data, decoded (all of its
    filters undone, but a picture's coding: ``PICTURE_FILTERS``, where metadata lives)."""
    texts = [data]
    with pikepdf.open(io.BytesIO(data)) as pdf:
        pending: list[object] = [pdf.trailer, *pdf.objects]
        while pending:
            item = pending.pop()
            if isinstance(item, pikepdf.String):
                texts.append(bytes(item))
            elif isinstance(item, pikepdf.Name):
                texts.append(str(item).encode())
            elif isinstance(item, pikepdf.Dictionary | pikepdf.Stream):
                for key, value in item.items():
                    texts.append(key.encode())
                    if not _is_indirect(value):  # an indirect one is in pdf.objects itself
                        pending.append(value)
                if isinstance(item, pikepdf.Stream):
                    texts.append(_stream_data(item))
            elif isinstance(item, pikepdf.Array):
                pending.extend(v for v in item if not _is_indirect(v))
    return texts


def _is_indirect(value: object) -> bool:
    return isinstance(value, pikepdf.Object) and value.is_indirect


def _stream_data(stream: pikepdf.Stream) -> bytes:
    value = stream.get("/Filter")
    names = list(value) if isinstance(value, pikepdf.Array) else [value] if value else []
    if {str(name) for name in names} & PICTURE_FILTERS:
        return stream.read_raw_bytes()
    return stream.read_bytes()


def pdf_carries(data: bytes, canary: str) -> list[str]:
    """The encodings (ASCII, latin-1, UTF-16 either way) in which ``canary``, in any case,
    is somewhere in ``pdf_texts(data)``; none, for a PDF that does not carry it."""
    texts = [text.lower() for text in pdf_texts(data)]
    return [
        encoding
        for encoding in ("ascii", "latin-1", "utf-16-be", "utf-16-le")
        if any(canary.lower().encode(encoding) in text for text in texts)
    ]


def pdf_jpegs(data: bytes) -> list[bytes]:
    """The bytes of every JPEG (``DCTDecode`` stream) in a PDF."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return [
            item.read_raw_bytes()
            for item in pdf.objects
            if isinstance(item, pikepdf.Stream) and item.get("/Filter") == pikepdf.Name.DCTDecode
        ]


def jpeg_metadata(jpeg: bytes) -> dict[str, object]:
    """What Pillow reads of a JPEG beyond its pixels: EXIF, XMP, ICC profile, comment and the
    APPn segments it met (by marker and first bytes). Empty but for an Adobe APP14, for a
    JPEG without metadata."""
    with Image.open(io.BytesIO(jpeg)) as image:
        found: dict[str, object] = {
            key: image.info[key]
            for key in ("exif", "xmp", "icc_profile", "comment")
            if key in image.info
        }
        if image.getexif():
            found["parsed exif"] = dict(image.getexif())
        segments = [(marker, body[:5]) for marker, body in image.applist]  # type: ignore[attr-defined]
        others = [segment for segment in segments if segment != ("APP14", b"Adobe")]
        if others:
            found["segments"] = others
    return found


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few dozen bytes that claim ``width`` x ``height`` pixels (a decompression bomb's
    header: the pixels would take tens of gigabytes once decoded)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def png_chunk_types(data: bytes) -> list[bytes]:
    """The chunk types of a PNG, in order (ISO/IEC 15948, 5.3)."""
    types, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        types.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return types


def as_stored(data: bytes) -> bytes:
    """What medchat stores (and serves) for an upload of ``data``: its cleaned form."""
    return attachment_metadata.strip(
        data, attachment_types.sniff(data), max_pixels=Image.MAX_IMAGE_PIXELS or 1 << 30
    )


def opened(data: bytes) -> Image.Image:
    """The decoded picture (every pixel read: a truncated file fails here)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
