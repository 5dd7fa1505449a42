"""Evaluation figures: intent accuracy and calibration on BANKING77's official test split, measured
the way `riverbed eval` measures them — every ticket published as an event through a real worker and
read back as a result — on a broker and data dir of the benchmark's own.

    python bench/evaluation.py [--suite infra/evals/banking77.toml]

Prints every step-level score of the suite, then ``banking77_accuracy`` (target ≥ 0.937) and
``intent_ece`` (target ≤ 0.05). ``shadow_time_ratio`` needs shadow runs, which are not built yet.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import embedded_stack, figure
from sinks.clickhouse import connect, migrate
from streams.config import PROJECT_ROOT
from streams.evaluate import load_suite, run_suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite", type=Path, default=PROJECT_ROOT / "infra/evals/banking77.toml")
    args = parser.parse_args()
    suite = load_suite(args.suite)
    with embedded_stack("evaluation") as settings:
        client = connect(settings.effective_clickhouse_dsn, settings.clickhouse_database)
        try:
            migrate(client)
            started = time.monotonic()
            report = run_suite(settings, suite, client)
            print(
                f"{suite.name}: {report.completed:,}/{report.published:,} events under "
                f"{report.workflow_version} in {time.monotonic() - started:.1f}s (training included)"
            )
        finally:
            client.close()
    scores = {(v.score.step, v.score.metric): v.score.value for v in report.verdicts}
    for (step, metric), value in sorted(scores.items()):
        print(f"{step}.{metric} = {value:.4f}")
    figure("banking77_accuracy", scores[("classify", "accuracy")])
    figure("intent_ece", scores[("classify", "ece")])
    print("shadow_time_ratio: not measured (shadow runs are not built yet)")


if __name__ == "__main__":
    main()
