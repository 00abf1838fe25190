"""The benchmark's report (bench/report.py) on the committed results of the last run.

The figures themselves are the bench's business (never a timing threshold here); this
checks that every docs/design.md §6 target is judged, that a verdict agrees with its figure,
and that the Markdown report renders every section from the results file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((BENCH / "results" / "latest.json").read_text())
    return loaded


def test_every_target_is_judged(results: dict[str, Any]) -> None:
    judged = " ".join(v["what"] for v in report.judge(results))
    for what in ("/v1/check req/s vs ceiling, 1 worker", "/v1/check req/s vs ceiling, 2 worker",
                 "bulk records/s over HTTP", "bulk HTTP vs in-process", "build 33M",
                 "ready on 33M", "p99 at 80% of peak", "worker RSS minus Bloom"):
        assert what in judged


def test_a_verdict_agrees_with_its_figure(results: dict[str, Any]) -> None:
    for verdict in report.judge(results):
        if verdict["met"] is None:  # shown, not judged (a quick run's 1M start-up)
            assert verdict["how"].startswith("not judged")
            continue
        higher = verdict["what"].startswith(("/v1", "bulk"))
        value, target = verdict["value"], verdict["target"]
        assert verdict["met"] == (value >= target if higher else value <= target), verdict


def test_the_markdown_has_every_section(results: dict[str, Any]) -> None:
    results = {**results, "verdicts": report.judge(results)}
    text = report.markdown(results)
    for heading in ("## Against the targets", "## Throughput", "## Latency at 80% of peak",
                    "## Bulk", "## Build", "## Start-up and memory per worker"):
        assert heading in text
    if "private" in results:
        assert "## Private lookups" in text
    rows = [line for line in text.splitlines() if line.startswith("| /v1/check req/s")]
    assert len(rows) == len(results["throughput"])


def test_the_p99_verdict_names_the_machine_control_when_the_run_has_it(
    results: dict[str, Any],
) -> None:
    verdicts = {v["what"]: v for v in report.judge(results)}
    for entry in results["throughput"]:
        verdict = verdicts[f"p99 at 80% of peak, {entry['workers']} worker(s)"]
        own = entry["latency_at_80pct"].get("ceiling_own_80")
        if own is None:
            assert "its own peak" not in verdict["note"]
        else:
            assert f"p99 {own['p99_ms']} ms" in verdict["note"].split("its own peak")[1]


def test_the_chart_renders_from_the_results(results: dict[str, Any], tmp_path: Path) -> None:
    png = tmp_path / "chart.png"
    report.chart(results, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_quick_run_with_one_index_size_does_not_judge_the_33m_start_up(
    results: dict[str, Any],
) -> None:
    one_size = {**results, "startup": [s for s in results["startup"]
                                       if s["records"] == 1_000_000]}
    verdicts = [v for v in report.judge(one_size) if v["what"].startswith("ready on 33M")]
    assert verdicts and all(v["met"] is None for v in verdicts)
    assert "n/a" in report.summary_text({**one_size, "verdicts": verdicts})
