"""`riverbed eval`: the scores on hand-computed cases, the gate's rules, and the shipped smoke suite run
through the real pipeline (its own broker, worker, chdb) as CI's quality regression gate."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.local.training import train
from sinks.clickhouse import connect
from sinks.evaluations import Score
from streams.config import PROJECT_ROOT, Settings
from streams.evaluate import Suite, SuiteError, _judge, load_suite
from streams.scoring import Metric, classification, extraction, summaries, top1_ece
from tests.conftest import banking77_train_subset, cli, free_port, in_subprocess


def by_metric(metrics: Sequence[Metric], label: str = "") -> dict[str, float]:
    return {m.metric: m.value for m in metrics if m.label == label}


def test_classification_scores_by_hand() -> None:
    expected = ["a", "a", "b", "b"]
    predicted = ["a", "b", "b", "b"]
    metrics = classification("classify", expected, predicted, [0.9, 0.6, 0.8, 0.7])
    overall = by_metric(metrics)
    assert overall["accuracy"] == 0.75
    # F1(a) = 2·1·0.5/1.5 = 2/3; F1(b) = 2·(2/3)·1/(5/3) = 0.8
    assert overall["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert by_metric(metrics, "a")["f1"] == pytest.approx(2 / 3)
    (accuracy,) = [m for m in metrics if m.metric == "accuracy"]
    assert accuracy.details["top_confusions"] == [{"expected": "a", "predicted": "b", "count": 1}]
    # bins (0.5,0.6], (0.6,0.7], (0.7,0.8], (0.8,0.9] hold one each: |0-0.6|,|1-0.7|,|1-0.8|,|1-0.9| / 4
    assert overall["ece"] == pytest.approx((0.6 + 0.3 + 0.2 + 0.1) / 4)


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    assert top1_ece([0.75] * 4, [True, True, True, False]) == pytest.approx(0.0)
    assert top1_ece([1.0] * 2, [False, False]) == pytest.approx(1.0)


def test_extraction_precision_recall_per_type_and_micro() -> None:
    expected = [[("MONEY", "£20"), ("ORG", "Acme Bank")], [("DATE", "Monday")]]
    produced = [[("MONEY", "£20"), ("ORG", "acme  bank"), ("ORG", "Visa")], [("DATE", "Tuesday")]]
    metrics = extraction("extract", expected, produced)
    org = by_metric(metrics, "ORG")
    assert (org["precision"], org["recall"]) == (0.5, 1.0)  # case and spacing folded
    assert by_metric(metrics, "DATE") == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    micro = by_metric(metrics)
    assert (micro["precision"], micro["recall"]) == (2 / 4, 2 / 3)


def test_summary_checks_catch_invented_numbers() -> None:
    sources = ["I paid 20 pounds to Acme on Monday.", "My card has not arrived."]
    produced = ["Paid 25 pounds to Acme.", "Card not arrived."]
    metrics = by_metric(summaries("summarize", sources, produced, [["Acme", "Monday"], []]))
    assert metrics["invented_number_rate"] == 0.5
    assert metrics["entity_coverage"] == 0.5
    assert metrics["length_ratio"] == pytest.approx((5 / 8 + 3 / 5) / 2)


def test_gate_checks_floors_ceilings_and_regression_margin() -> None:
    suite = Suite(
        name="s",
        data=Path("x.csv"),
        floors={"classify.accuracy": 0.9},
        ceilings={"classify.ece": 0.05},
        margin=0.01,
    )

    def score(metric: str, value: float) -> Score:
        return Score("r", "s", "ticket", "v2", "classify", metric, value, 100, datetime.now(UTC))

    assert not _judge(suite, score("accuracy", 0.95), {("classify", "accuracy"): 0.955}).failed
    assert _judge(suite, score("accuracy", 0.95), {("classify", "accuracy"): 0.97}).failed  # regressed
    assert _judge(suite, score("accuracy", 0.89), {}).failed  # under the floor
    assert _judge(suite, score("ece", 0.06), {}).failed  # over the ceiling
    assert _judge(suite, score("ece", 0.045), {("classify", "ece"): 0.03}).failed  # worse by 0.015
    assert not _judge(suite, score("macro_f1", 0.1), {("classify", "macro_f1"): 0.9}).failed  # not gated


def test_suite_files_are_valid_and_errors_name_the_file(tmp_path: Path) -> None:
    for path in sorted((PROJECT_ROOT / "infra/evals").glob("*.toml")):
        suite = load_suite(path)
        assert suite.data.exists(), path
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ndata = "a.csv"\nfloor = 1\n')
    with pytest.raises(SuiteError, match=r"bad\.toml"):
        load_suite(bad)


@pytest.mark.slow
def test_smoke_suite_gates_through_the_real_pipeline(base_settings: Settings, tmp_path: Path) -> None:
    """CI's regression gate: the shipped smoke suite passes with the real classifier; then a weak
    candidate artifact is evaluated on the same suite and refused, because it regressed against the
    version before it (the comparison reads back the scores the first run stored)."""
    settings = base_settings.model_copy(
        update={"data_dir": tmp_path / "data", "kafka_bootstrap": f"127.0.0.1:{free_port()}"}
    )
    passed = cli(settings, "eval", "infra/evals/banking77-smoke.toml", timeout_s=900)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "PASS" in passed.stdout and "308/308 events" in passed.stdout

    weak_data = banking77_train_subset(tmp_path / "weak.csv", every=40)
    weak = train(settings.models_dir, "banking77-intent", weak_data)
    refused = cli(
        settings,
        "eval",
        "infra/evals/banking77-smoke.toml",
        "--model",
        f"banking77-intent@{weak.version}",
        "--limit",
        "154",
        timeout_s=900,
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "compared with ticket-1+banking77-intent@v1" in refused.stdout
    assert "FAIL" in refused.stdout

    # the queries docs/evaluation.md tells analysts to paste return rows on what these runs stored
    in_subprocess(settings, "tests.test_evaluate", "run_documented_queries")


def run_documented_queries() -> None:
    """Run in a subprocess: chdb lets one process own a data path."""
    settings = Settings()
    blocks = re.findall(r"```sql\n(.*?)```", (PROJECT_ROOT / "docs/evaluation.md").read_text(), re.S)
    # the results queries run in test_pipeline, the shadow ones in test_shadow
    queries = [q for q in blocks if "FROM evaluations" in q and "shadow:" not in q]
    assert len(queries) >= 2
    client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
    try:
        for sql in queries:
            sql = sql.replace("'banking77'", "'banking77-smoke'")  # the suite the test ran
            assert client.query_rows(sql), f"no rows from:\n{sql}"
    finally:
        client.close()
