"""agents.textract: type sniffing and text extraction from real bytes (hand-built PDFs included)."""

from __future__ import annotations

import io
from collections.abc import Callable

import pypdf
import pytest

from agents.textract import ExtractionError, extract_text, sniff_content_type


def build_pdf(*page_lines: bytes) -> bytes:
    """A minimal valid PDF, one page per line, Helvetica, with a correct xref table."""
    page_count = len(page_lines)
    font_ref = 3 + 2 * page_count
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % (3 + 2 * i) for i in range(page_count)), page_count),
    ]
    for i, line in enumerate(page_lines):
        content = b"BT /F1 24 Tf 72 720 Td (" + line + b") Tj ET"
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R"
            b" /Resources << /Font << /F1 %d 0 R >> >> >>" % (4 + 2 * i, font_ref)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")

    out = bytearray(b"%PDF-1.4\n")
    offsets: list[int] = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_at)
    return bytes(out)


# --- sniffing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "declared", "data", "expected"),
    [
        # magic bytes beat both the declared type and the extension
        ("https://x/doc.txt", "text/plain", b"%PDF-1.7\n...", "application/pdf"),
        ("https://x/doc.pdf", "application/pdf", b"\xef\xbb\xbf \n<!DOCTYPE HTML><p>x", "text/html"),
        ("file:///d/page.md", None, b"  <HTML lang=en><body>x", "text/html"),
        ("https://x/page", "image/png", b"<html><body>x", "text/html"),
        # then a declared type we support (parameters and case ignored)
        ("https://x/doc.html", "text/plain; charset=utf-8", b"hello", "text/plain"),
        ("https://x/doc", "Text/Markdown", b"# hi", "text/markdown"),
        ("https://x/doc", "text/x-markdown", b"# hi", "text/markdown"),
        ("https://x/doc", "application/xhtml+xml", b"<div>x</div>", "text/html"),
        ("https://x/doc", "application/pdf", b"junk", "application/pdf"),
        # then the extension of the URI path (not the query)
        ("file:///d/notes.MARKDOWN", None, b"# hi", "text/markdown"),
        ("file:///d/a%20b.md", None, b"# hi", "text/markdown"),
        ("https://x/page.htm?download=a.pdf", None, b"<div>x</div>", "text/html"),
        ("https://x/doc.pdf", "application/octet-stream", b"junk", "application/pdf"),
        ("file:///d/readme.text", None, b"hi", "text/plain"),
        # else plain text
        ("file:///d/no-extension", None, b"hi", "text/plain"),
        ("https://x/data.csv", None, b"a,b", "text/plain"),
    ],
)
def test_sniff_content_type(uri: str, declared: str | None, data: bytes, expected: str) -> None:
    assert sniff_content_type(uri, declared, data) == expected


def test_sniff_rejects_unsupported_declared_type() -> None:
    with pytest.raises(ExtractionError, match="image/png"):
        sniff_content_type("https://x/photo.txt", "image/png", b"\x89PNG\r\n\x1a\n")


# --- plain text -------------------------------------------------------------------------------------


def test_plain_text_strips_bom_and_trailing_space_and_extra_blank_lines() -> None:
    data = "\ufeff  Caf\u00e9 line one   \r\nline two\t\r\n\r\n\r\n\r\n  para two  \n\n".encode()
    assert extract_text(data, "text/plain") == "Caf\u00e9 line one\nline two\n\n  para two"


@pytest.mark.parametrize("data", [b"caf\xe9", b"ok\x00binary", b"\xff\xfeh\x00i\x00"])
def test_plain_text_must_be_utf8_without_nul(data: bytes) -> None:
    with pytest.raises(ExtractionError, match="not valid UTF-8 text"):
        extract_text(data, "text/plain")


@pytest.mark.parametrize("data", [b"", b"   \n\n\t \r\n", "\ufeff".encode()])
def test_empty_text_is_an_error(data: bytes) -> None:
    with pytest.raises(ExtractionError, match="no text extracted"):
        extract_text(data, "text/plain")


def test_extract_rejects_unknown_content_type() -> None:
    with pytest.raises(ExtractionError, match="image/png"):
        extract_text(b"\x89PNG", "image/png")


# --- Markdown ---------------------------------------------------------------------------------------

MARKDOWN = """\
# Release *notes* #

Some **bold**, *em*, _under_ and ~~struck~~ words; snake_case_name and 2*3*4 stay.
Call `run()` now. See [the docs](https://example.com/docs "Docs") or [ref][1].
![diagram](diagram.png) <span class="x">Inline</span> HTML.

> Quoted line
> - quoted bullet

* star item
- dash item
  + nested item
1. numbered item

---

```python
# a comment inside code
x = a*b*c
```

Setext Heading
==============

Escaped \\*literal stars\\* and \\# hash.

[1]: https://example.com/ref
"""

MARKDOWN_TEXT = """\
Release notes

Some bold, em, under and struck words; snake_case_name and 2*3*4 stay.
Call run() now. See the docs or ref.
Inline HTML.

Quoted line
quoted bullet

star item
dash item
  nested item
1. numbered item

# a comment inside code
x = a*b*c

Setext Heading

Escaped *literal stars* and # hash."""


def test_markdown_is_stripped_to_plain_text() -> None:
    assert extract_text(MARKDOWN.encode(), "text/markdown") == MARKDOWN_TEXT


def test_markdown_must_be_utf8() -> None:
    with pytest.raises(ExtractionError, match="not valid UTF-8 text"):
        extract_text(b"# caf\xe9", "text/markdown")


# --- HTML -------------------------------------------------------------------------------------------

HTML = b"""<!DOCTYPE html>
<html>
<head><title>Page title</title><meta charset="utf-8"><style>p { color: red }</style></head>
<body>
  <!-- a comment -->
  <script>var secret = "script text";</script>
  <noscript>Enable JavaScript</noscript>
  <template><p>template text</p></template>
  <h1>Main heading</h1>


  <p>First paragraph
     wraps here.</p>
  <style>.late { }</style>
  <ul><li>one</li><li>two &amp; three</li></ul>
</body>
</html>"""


def test_html_keeps_visible_text_only() -> None:
    text = extract_text(HTML, "text/html")
    assert text == "Main heading\n\nFirst paragraph\nwraps here.\n\none\ntwo & three"
    for hidden in ("Page title", "color", "script text", "Enable JavaScript", "template text", "comment"):
        assert hidden not in text


def test_html_honours_declared_charset() -> None:
    data = '<html><head><meta charset="iso-8859-1"></head><body><p>Caf\u00e9</p></body></html>'
    assert extract_text(data.encode("iso-8859-1"), "text/html") == "Caf\u00e9"


def test_html_without_visible_text_is_an_error() -> None:
    with pytest.raises(ExtractionError, match="no text extracted"):
        extract_text(b"<html><head><title>only a title</title></head><body> </body></html>", "text/html")


# --- PDF --------------------------------------------------------------------------------------------


def test_pdf_text_is_extracted() -> None:
    data = build_pdf(b"Hello from a hand-built PDF")
    assert sniff_content_type("file:///d/upload.bin", None, data) == "application/pdf"
    assert extract_text(data, "application/pdf") == "Hello from a hand-built PDF"


def test_pdf_pages_are_joined_with_a_blank_line() -> None:
    data = build_pdf(b"Page one text", b"Page two text")
    assert extract_text(data, "application/pdf") == "Page one text\n\nPage two text"


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda pdf: pdf[: len(pdf) // 2], id="truncated"),
        pytest.param(lambda pdf: pdf.replace(b"startxref", b"startxxxx"), id="no-startxref"),
        pytest.param(lambda pdf: b"%PDF-1.4\n" + b"\x8f garbage " * 20, id="garbage"),
    ],
)
def test_corrupted_pdf_is_an_extraction_error(corrupt: Callable[[bytes], bytes]) -> None:
    data = corrupt(build_pdf(b"Hello from a hand-built PDF"))
    with pytest.raises(ExtractionError, match="PDF could not be read"):
        extract_text(data, "application/pdf")


def test_encrypted_pdf_is_an_extraction_error() -> None:
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(build_pdf(b"Top secret")))
    writer.encrypt("user-password", algorithm="RC4-128")  # RC4 needs no optional crypto package
    buf = io.BytesIO()
    writer.write(buf)
    with pytest.raises(ExtractionError, match="encrypted"):
        extract_text(buf.getvalue(), "application/pdf")


def test_html_inline_tags_do_not_split_sentences() -> None:
    data = b"<html><body><p>Hello <b>big</b> <a href='x'>world</a>!<br>Next line</p></body></html>"
    assert extract_text(data, "text/html") == "Hello big world!\nNext line"
