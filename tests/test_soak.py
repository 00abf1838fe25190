"""The soak of bench/soak.py, shortened to 30 seconds for the test suite.

The service runs at 80% of the peak the script measures first, on the session's
synthetic index: no request may fail and its resident memory may not grow by more
than 5% (plus a little absolute slack for the allocator). No latency threshold: the
machine is shared, and the latency target is checked by the full soak in bench/
(`python bench/soak.py`, 10 minutes).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Breach
from live_server import REPO, clean_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SLACK = 8 << 20  # bytes: allocator arenas settling in, whatever the load


def test_thirty_seconds_at_80_percent_of_peak(breach: Breach, tmp_path: Path) -> None:
    report_file = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--seconds", "30",
         "--peak-seconds", "5", "--index", str(breach.index_dir),
         "--pepper-file", str(breach.pepper_file), "--members", str(breach.dir / "members.csv"),
         "--json", str(report_file)],
        capture_output=True, text=True, timeout=200, cwd=REPO, env=clean_env())
    assert report_file.exists(), run.stdout + run.stderr
    report = json.loads(report_file.read_text())
    assert report["requests"] > 0 and report["peak_requests_per_second"] > 0
    assert report["errors"] == 0, report["error_kinds"]
    assert report["service_error_lines"] == [], report["service_error_lines"]
    rss = report["rss_bytes"]
    assert rss["end"] <= rss["start"] * 1.05 + SLACK, rss
    assert run.returncode == 0, run.stdout + run.stderr
