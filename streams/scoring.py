"""Scores of one evaluation run, per workflow step: what `riverbed eval` stores and gates on.

Pure functions over expected and produced outputs, so they are tested on hand-made cases and the
pipeline run around them stays a separate concern (streams/evaluate.py).

- classification: accuracy, macro-F1, expected calibration error of the reported confidence, F1 per
  label, and the most frequent confusions (in ``details``);
- extraction: precision, recall and F1 per entity type and micro-averaged, matching (type, text)
  after case and whitespace folding;
- summaries: reference-free checks that catch what extractive and generative summarizers get wrong
  — length ratio to the source, share of the source's entities the summary keeps, and share of
  summaries containing a number that is not in the source (an invented figure is the costliest error
  in a ticket or a filing).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sklearn.metrics import f1_score

ECE_BINS = 10
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


@dataclass(frozen=True)
class Metric:
    step: str
    metric: str
    value: float
    support: int
    label: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def top1_ece(confidence: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> float:
    """Expected calibration error of a top-1 confidence: |accuracy − mean confidence| per equal-width
    bin, weighted by the bin's share (the same binning as the classifier's cross-validated ECE)."""
    if not confidence:
        return 0.0
    by_bin: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for conf, ok in zip(confidence, correct, strict=True):
        by_bin[min(max(math.ceil(conf * bins) - 1, 0), bins - 1)].append((conf, ok))
    total = 0.0
    for members in by_bin.values():
        accuracy = sum(ok for _, ok in members) / len(members)
        mean_conf = sum(c for c, _ in members) / len(members)
        total += len(members) / len(confidence) * abs(accuracy - mean_conf)
    return total


def classification(
    step: str, expected: Sequence[str], predicted: Sequence[str], confidence: Sequence[float]
) -> list[Metric]:
    n = len(expected)
    if n == 0:
        return []
    correct = [e == p for e, p in zip(expected, predicted, strict=True)]
    labels = sorted(set(expected))
    per_label = f1_score(expected, predicted, labels=labels, average=None, zero_division=0)
    confusions = Counter((e, p) for e, p in zip(expected, predicted, strict=True) if e != p)
    top = [{"expected": e, "predicted": p, "count": c} for (e, p), c in confusions.most_common(10)]
    support = Counter(expected)
    return [
        Metric(step, "accuracy", sum(correct) / n, n, details={"top_confusions": top}),
        Metric(step, "macro_f1", float(f1_score(expected, predicted, labels=labels, average="macro")), n),
        Metric(step, "ece", top1_ece(confidence, correct), n),
        *(
            Metric(step, "f1", float(f), support[label], label=label)
            for label, f in zip(labels, per_label, strict=True)
        ),
    ]


def _fold(text: str) -> str:
    return " ".join(text.lower().split())


def extraction(
    step: str, expected: Sequence[Iterable[tuple[str, str]]], produced: Sequence[Iterable[tuple[str, str]]]
) -> list[Metric]:
    """Entities as (type, text) per item; a produced entity counts once even if repeated."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for want_items, got_items in zip(expected, produced, strict=True):
        want = {(label, _fold(text)) for label, text in want_items}
        got = {(label, _fold(text)) for label, text in got_items}
        for label, _ in want & got:
            tp[label] += 1
        for label, _ in got - want:
            fp[label] += 1
        for label, _ in want - got:
            fn[label] += 1
    metrics: list[Metric] = []
    for label in sorted(tp.keys() | fp.keys() | fn.keys()):
        metrics += _prf(step, label, tp[label], fp[label], fn[label])
    metrics += _prf(step, "", sum(tp.values()), sum(fp.values()), sum(fn.values()))
    return metrics


def _prf(step: str, label: str, tp: int, fp: int, fn: int) -> list[Metric]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return [
        Metric(step, "precision", precision, tp + fp, label=label),
        Metric(step, "recall", recall, tp + fn, label=label),
        Metric(step, "f1", f1, tp + fn, label=label),
    ]


def summaries(
    step: str, sources: Sequence[str], produced: Sequence[str], source_entities: Sequence[Iterable[str]]
) -> list[Metric]:
    n = len(sources)
    if n == 0:
        return []
    ratios, coverage, invented = [], [], []
    for source, summary, entities in zip(sources, produced, source_entities, strict=True):
        ratios.append(len(summary.split()) / max(len(source.split()), 1))
        wanted = {_fold(e) for e in entities if e.strip()}
        folded = _fold(summary)
        if wanted:
            coverage.append(sum(e in folded for e in wanted) / len(wanted))
        source_numbers = set(_NUMBER.findall(source))
        invented.append(any(num not in source_numbers for num in _NUMBER.findall(summary)))
    metrics = [
        Metric(step, "length_ratio", sum(ratios) / n, n),
        Metric(step, "invented_number_rate", sum(invented) / n, n),
    ]
    if coverage:
        metrics.append(Metric(step, "entity_coverage", sum(coverage) / len(coverage), len(coverage)))
    return metrics
