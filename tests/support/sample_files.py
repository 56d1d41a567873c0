"""Small real files of each accepted type (and some refused ones), built byte by byte."""

from __future__ import annotations

import struct
import zlib


def pdf(text: str = "Hello") -> bytes:
    """A minimal valid one-page PDF 1.4 with ``text`` in its content stream and a right xref."""
    stream = f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET".encode("latin-1")
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
