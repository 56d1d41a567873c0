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
