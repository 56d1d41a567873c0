"""What a file says about the person who made it is removed before the file is sealed.

Threat: a phone photo carries EXIF (GPS position, device make and model, owner or artist
name, capture time), XMP, IPTC and comments; a PDF carries a document information dictionary
(Author, Title, Creator) and XMP metadata streams, often naming the patient. A clinician may
know of the patient only first name, birth date and sex (SECURITY-MODEL "Who uses it"), so
every upload is rewritten here, from what the file shows, before ``AttachmentService`` seals
it; the member's own download is the cleaned file too (nothing else is stored).

- Images (JPEG, PNG, HEIC/HEIF) are decoded and re-encoded from their pixels, so no metadata
  segment or chunk survives, whichever it is: only the pixels and, for palette and
  grey images, their palette and transparency are carried over. The EXIF orientation is
  applied to the pixels first, so the picture stands as it was taken; a colour profile
  (which can name the device) is applied to the pixels too (converted to sRGB) and dropped.
  JPEGs keep their quantisation tables, so the quality is the uploader's. Only the primary
  image is kept: thumbnails, depth maps and the extra frames of an animated or multi-picture
  file are dropped.
- PDFs are rebuilt from what their pages show (``medchat.files.pdf_cleaning``, where the
  allow-list is described): a new file holding the pages (their geometry, resources and
  content, annotations that show flattened into them) and nothing of the catalogue, the
  trailer or the annotations themselves; inside what the pages use, XMP, private data and
  layer names are dropped, colour profiles replaced by device spaces and JPEG images stripped
  of their APPn segments and comments (EXIF, XMP, ICC) by a walk of their markers. Only the
  rebuilt objects are written, so an earlier revision kept by an incremental update goes too.
  Streams are copied as they are (never inflated). What a page shows is content and is kept.

Decompression bombs: an image over ``max_image_pixels`` is refused from its header, before any
pixel is decoded (``ImageTooLarge``, 413). Pillow's own limit stays as a second net. A file
that its decoder cannot read is refused (``UnreadableFile``, 422): what cannot be parsed cannot
be cleaned. The decoders are Pillow, pillow-heif (libheif) and pikepdf (qpdf), maintained
parsers of these formats, rather than segment surgery of our own (a PDF's embedded JPEGs,
which must keep their bits, are the one exception); the type was sniffed before
(``medchat.files.types``) and only that format's decoder is tried.
"""

from __future__ import annotations

import io
import logging

import pillow_heif
from PIL import Image, ImageCms, ImageOps, JpegImagePlugin

from medchat.errors import ImageTooLarge, UnreadableFile
from medchat.files import pdf_cleaning
from medchat.files import types as attachment_types

log = logging.getLogger("medchat.attachments")

# HEIC and HEIF through Pillow's Image.open (libheif applies their rotation and mirror boxes
# as it decodes, so the pixels come upright). Pillow reads AVIF (a HEIF brand) itself.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

#: The Pillow decoders allowed for each sniffed type: no other is ever tried on the bytes.
_DECODERS = {
    attachment_types.JPEG: ("JPEG",),
    attachment_types.PNG: ("PNG",),
    attachment_types.HEIC: ("HEIF",),
    attachment_types.HEIF: ("HEIF", "AVIF"),
}
#: Re-encoding quality of the HEVC and AV1 codecs (their files carry no quantisation tables
#: to keep): high enough that a skin lesion keeps its detail.
_HEIF_QUALITY = 90
#: ``info`` entries that describe pixels, not people: kept when re-encoding.
_PIXEL_INFO = ("transparency",)
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def strip(data: bytes, media_type: str, *, max_pixels: int) -> bytes:
    """``data`` (of the sniffed ``media_type``) rewritten without its metadata.

    Raises ``ImageTooLarge`` for an image over ``max_pixels`` and ``UnreadableFile`` for a
    file its decoder cannot read.
    """
    if media_type == attachment_types.PDF:
        return pdf_cleaning.clean(data)
    return _strip_image(data, media_type, max_pixels)


def _strip_image(data: bytes, media_type: str, max_pixels: int) -> bytes:
    try:
        with Image.open(io.BytesIO(data), formats=_DECODERS[media_type]) as source:
            # The header alone gives the size: refused before a single pixel is decoded.
            width, height = source.size
            if width * height > max_pixels:
                raise _too_large(width * height, max_pixels)
            output_format = source.format or ""
            jpeg_options = _jpeg_options(source)
            source.seek(0)  # the primary image: frames and thumbnails stay behind
            source.load()
            # A new image, upright, from the pixels: the EXIF the source parsed (and caches,
            # where encoders such as pillow-heif's would find it) stays with the source.
            image = _to_srgb(ImageOps.exif_transpose(source), source.info.get("icc_profile"))
            image.info = {key: source.info[key] for key in _PIXEL_INFO if key in source.info}
            return _encode(image, output_format, jpeg_options)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"Images may have at most {max_pixels:,} pixels.") from exc
    except ImageTooLarge:
        raise
    except Exception as exc:
        # Decoders of untrusted bytes raise many kinds of errors (OSError, ValueError,
        # SyntaxError, struct.error, EOFError, libheif's RuntimeError ...): each means
        # "not a readable file of this type", answered as such, never as a 500.
        log.info("an uploaded %s could not be decoded: %s", media_type, type(exc).__name__)
        raise UnreadableFile from exc


def _too_large(pixels: int, max_pixels: int) -> ImageTooLarge:
    return ImageTooLarge(f"Images may have at most {max_pixels:,} pixels; this one has {pixels:,}.")


def _jpeg_options(source: Image.Image) -> dict[str, object]:
    """Encoder settings that keep a JPEG's quality: its own quantisation tables and sampling."""
    if source.format not in ("JPEG", "MPO"):
        return {}
    options: dict[str, object] = {}
    tables = getattr(source, "quantization", None)
    if tables:
        options["qtables"] = [tables[index] for index in sorted(tables)]
    sampling = JpegImagePlugin.get_sampling(source)
    if sampling != -1:
        options["subsampling"] = sampling
    return options


def _to_srgb(image: Image.Image, profile: bytes | None) -> Image.Image:
    """The pixels converted from their colour ``profile`` to sRGB, so it can be dropped.

    A profile that cannot be read or applied (or a mode with none to apply) is dropped as it
    is: the colours then read as sRGB, slightly off at worst, never a refusal.
    """
    if not profile or image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        mode = "RGB" if image.mode == "CMYK" else image.mode
        converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image
    return converted if converted is not None else image


def _encode(image: Image.Image, output_format: str, jpeg_options: dict[str, object]) -> bytes:
    out = io.BytesIO()
    if output_format in ("JPEG", "MPO"):
        image.save(out, "JPEG", **jpeg_options)
    elif output_format == "PNG":
        image.save(out, "PNG")
    elif output_format in ("HEIF", "AVIF"):
        image.save(out, output_format, quality=_HEIF_QUALITY)
    else:  # not reached: _DECODERS names only the formats above
        raise UnreadableFile
    return out.getvalue()
