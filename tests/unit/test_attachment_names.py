"""File names are reduced to a safe base name and handed back per RFC 6266 / RFC 8187."""

from __future__ import annotations

import pytest

from medchat.files.names import (
    MAX_NAME_BYTES,
    ascii_fallback,
    clean_filename,
    content_disposition,
    with_extension,
)
from medchat.files.types import HEIC, JPEG, PDF


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("/var/tmp/scan.pdf", "scan.pdf"),
        ("C:\\Users\\camille\\Desktop\\bilan.pdf", "bilan.pdf"),
        ("..", ""),
        (".hidden.pdf", "hidden.pdf"),
        ("name. . ", "name"),
        ("line\r\nX-Injected: 1.pdf", "lineX-Injected: 1.pdf"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # right-to-left override
        ("zero\u200bwidth.pdf", "zerowidth.pdf"),
        ("re\u0301sultats.pdf", "r\u00e9sultats.pdf"),  # NFD typed on macOS -> NFC
        ("", ""),
        (None, ""),
    ],
)
def test_clean_filename_keeps_a_visible_base_name(raw, expected):
    assert clean_filename(raw) == expected


@pytest.mark.parametrize(
    ("name", "media_type", "expected"),
    [
        ("bilan.pdf", PDF, "bilan.pdf"),
        ("photo.JPG", JPEG, "photo.JPG"),
        ("scan", PDF, "scan.pdf"),
        ("page.html", PDF, "page.html.pdf"),
        ("", PDF, "attachment.pdf"),
        ("", HEIC, "attachment.heic"),
    ],
)
def test_stored_names_carry_an_extension_of_the_sniffed_type(name, media_type, expected):
    assert with_extension(name, media_type) == expected


def test_long_names_are_cut_at_a_character_boundary_keeping_the_extension():
    name = with_extension("é" * 300 + ".pdf", PDF)
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert name.endswith(".pdf")
    assert name.startswith("é" * 100)


def test_content_disposition_gives_an_ascii_fallback_and_the_exact_utf8_name():
    assert content_disposition("résultats analyse.pdf") == (
        'attachment; filename="resultats analyse.pdf"; '
        "filename*=UTF-8''r%C3%A9sultats%20analyse.pdf"
    )


@pytest.mark.parametrize(
    ("name", "fallback"),
    [
        ('say "hi"\\now.pdf', "say hinow.pdf"),
        ("100%.pdf", "100.pdf"),
        ("診断書.pdf", "attachment.pdf"),
        ("Ærø.png", "r.png"),
        ("ok\x7f.pdf", "ok.pdf"),
    ],
)
def test_the_fallback_holds_no_quote_backslash_percent_or_control_character(name, fallback):
    assert ascii_fallback(name) == fallback


def test_filename_star_percent_encodes_everything_outside_attr_char():
    header = content_disposition('a b;"c"\\d%.pdf')
    assert header.endswith("filename*=UTF-8''a%20b%3B%22c%22%5Cd%25.pdf")
