"""Turn fetched document bytes (plain text, Markdown, HTML, PDF) into plain text for chunking.

The type is sniffed from the bytes before trusting labels: servers and object stores routinely
send ``application/octet-stream`` or ``text/plain`` for anything, and file URIs carry no type at
all, so magic bytes win, then a declared type we understand, then the file extension. Everything
ends in the same whitespace normalisation so downstream chunking and embedding see one shape of
text whatever the source format, and an empty result is an error rather than a silent no-op (a
scanned PDF without a text layer should be visible to the operator, not indexed as nothing).
"""

from __future__ import annotations

import io
import re
from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

import pypdf
from bs4 import BeautifulSoup

PLAIN = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
PDF = "application/pdf"
SUPPORTED_TYPES = frozenset({PLAIN, MARKDOWN, HTML, PDF})

_DECLARED_ALIASES = {
    PLAIN: PLAIN,
    MARKDOWN: MARKDOWN,
    "text/x-markdown": MARKDOWN,
    HTML: HTML,
    "application/xhtml+xml": HTML,
    PDF: PDF,
}
# Labels that say "unknown" rather than naming a type: fall through to the extension.
_UNINFORMATIVE_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_EXTENSIONS = {
    ".txt": PLAIN,
    ".text": PLAIN,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".pdf": PDF,
}
_UTF8_BOM = b"\xef\xbb\xbf"
_HTML_DROP_TAGS = ["script", "style", "noscript", "template", "head"]


class ExtractionError(Exception):
    """The bytes are not a supported document type, or no text could be extracted from them."""


# --- sniffing ---------------------------------------------------------------------------------------


def sniff_content_type(uri: str, declared: str | None, data: bytes) -> str:
    """Return one of ``text/plain``, ``text/markdown``, ``text/html``, ``application/pdf``.

    Raises :class:`ExtractionError` when ``declared`` names a type we cannot extract (``image/png``)
    and the bytes do not prove otherwise.
    """
    by_magic = _type_from_magic(data)
    if by_magic is not None:
        return by_magic
    media_type = (declared or "").split(";", 1)[0].strip().lower()
    if media_type in _DECLARED_ALIASES:
        return _DECLARED_ALIASES[media_type]
    if media_type not in _UNINFORMATIVE_TYPES:
        raise ExtractionError(f"unsupported content type {media_type!r} for {uri}")
    suffix = PurePosixPath(unquote(urlparse(uri).path)).suffix.lower()
    return _EXTENSIONS.get(suffix, PLAIN)


def _type_from_magic(data: bytes) -> str | None:
    if data.startswith(b"%PDF-"):
        return PDF
    head = data[:512].removeprefix(_UTF8_BOM).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return HTML
    return None


# --- extraction -------------------------------------------------------------------------------------


def extract_text(data: bytes, content_type: str) -> str:
    """Extract normalised plain text; raise :class:`ExtractionError` if there is none or it fails."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == PLAIN:
        text = _decode_utf8(data)
    elif media_type == MARKDOWN:
        text = _strip_markdown(_decode_utf8(data))
    elif media_type == HTML:
        text = _html_text(data)
    elif media_type == PDF:
        text = _pdf_text(data)
    else:
        raise ExtractionError(f"cannot extract text from content type {content_type!r}")
    normalised = normalise_whitespace(text)
    if not normalised:
        raise ExtractionError(f"no text extracted ({media_type}, {len(data)} bytes)")
    return normalised


def normalise_whitespace(text: str) -> str:
    """Unify newlines, strip trailing spaces, allow at most one blank line in a row, trim the ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _decode_utf8(data: bytes) -> str:
    data = data.removeprefix(_UTF8_BOM)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ExtractionError(f"not valid UTF-8 text (NUL byte at offset {nul})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExtractionError(f"not valid UTF-8 text (invalid byte at offset {exc.start})") from exc


# --- Markdown ---------------------------------------------------------------------------------------

# Fenced code blocks are kept verbatim (minus the fences) so "# comment" lines survive.
_FENCE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL)
# Applied in order to the prose between fences.
_MARKDOWN_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"<!--.*?-->", re.DOTALL), ""),  # HTML comments
    (re.compile(r"</?[A-Za-z][^>\n]*>"), ""),  # HTML tags
    (re.compile(r"!\[[^\]]*\](?:\([^)]*\)|\[[^\]]*\])[ \t]*"), ""),  # images, inline or by reference
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # inline links
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # reference links
    (re.compile(r"^[ \t]{0,3}\[[^\]]+\]:[ \t]+\S.*$", re.MULTILINE), ""),  # link definitions
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE), r"\1"),  # ATX headings
    (re.compile(r"^[ \t]{0,3}(?:=+|-+)[ \t]*$", re.MULTILINE), ""),  # setext underlines, rules
    (re.compile(r"^[ \t]{0,3}([*_])(?:[ \t]*\1){2,}[ \t]*$", re.MULTILINE), ""),  # * * * rules
    (re.compile(r"^[ \t]*(?:>[ \t]?)+", re.MULTILINE), ""),  # blockquote markers
    (re.compile(r"^([ \t]*)[-*+][ \t]+", re.MULTILINE), r"\1"),  # list bullets
    (re.compile(r"(`+)(.+?)\1", re.DOTALL), r"\2"),  # inline code
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # strong
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),  # *em*
    (re.compile(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"), r"\1"),  # _em_ (not snake_case)
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),  # strikethrough
]


def _strip_markdown(text: str) -> str:
    text = text.replace("\r\n", "\n")
    parts = _FENCE.split(text)
    # re.split with two groups yields [prose, fence, code, prose, fence, code, ..., prose].
    out: list[str] = []
    for i in range(0, len(parts), 3):
        out.append(_strip_markdown_prose(parts[i]))
        if i + 2 < len(parts):
            out.append(parts[i + 2])
    return "".join(out)


# Backslash-escaped punctuation is parked in a private-use plane while the rules run, so "\*" is
# not taken for emphasis, then restored as the bare character.
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!>~|<])")
_PARKED = re.compile("[\U000f0000-\U000f007f]")
_PARK_BASE = 0xF0000


def _strip_markdown_prose(text: str) -> str:
    text = _ESCAPE.sub(lambda m: chr(_PARK_BASE + ord(m[1])), text)
    for pattern, replacement in _MARKDOWN_RULES:
        text = pattern.sub(replacement, text)
    return _PARKED.sub(lambda m: chr(ord(m[0]) - _PARK_BASE), text)


# --- HTML -------------------------------------------------------------------------------------------


_HTML_BLOCK_TAGS = [
    "p",
    "div",
    "section",
    "article",
    "header",
    "footer",
    "main",
    "aside",
    "nav",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "table",
    "tr",
    "td",
    "th",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "pre",
    "blockquote",
    "figure",
    "figcaption",
    "hr",
    "form",
    "fieldset",
    "address",
    "body",
    "title",
]
_HTML_ITEM_TAGS = frozenset({"li", "dt", "dd", "tr", "td", "th"})


def _html_text(data: bytes) -> str:
    try:
        soup = BeautifulSoup(data, "html.parser")
    except Exception as exc:  # bs4 raises several types (ParserRejectedMarkup, AssertionError, ...)
        raise ExtractionError(f"HTML could not be parsed: {exc}") from exc
    for tag in soup(_HTML_DROP_TAGS):
        tag.decompose()
    # Line breaks only where the layout breaks lines: inline tags (<b>, <a>) must not split sentences.
    for tag in soup.find_all(_HTML_BLOCK_TAGS):
        tag.insert_before("\n")
        if tag.name not in _HTML_ITEM_TAGS:
            tag.insert_after("\n")
    for br in soup.find_all("br"):
        br.replace_with("\n")
    text = soup.get_text()
    # Source indentation and wrapping are not content.
    return "\n".join(" ".join(line.split()) for line in text.split("\n"))


# --- PDF --------------------------------------------------------------------------------------------


def _pdf_text(data: bytes) -> str:
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ExtractionError("PDF is encrypted; cannot extract text")
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except ExtractionError:
        raise
    except Exception as exc:  # pypdf surfaces malformed files as many exception types, not only PdfError
        raise ExtractionError(f"PDF could not be read: {type(exc).__name__}: {exc}") from exc
