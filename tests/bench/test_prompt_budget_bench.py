"""The long-story benchmark runs and reports a fitted prompt within budget (no timing asserted:
speed targets live in the benchmark, not in unit tests)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_prompt_budget_benchmark_runs():
    done = subprocess.run(
        [sys.executable, "-m", "bench.prompt_budget", "--pages", "120", "--repeat", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads((ROOT / "bench" / "results" / "prompt_budget.json").read_text())
    assert {row["template"] for row in rows} == {"page_content", "page_content_completion"}
    for row in rows:
        assert row["prompt_tokens"] <= row["budget_tokens"]
        assert row["median_ms"] > 0
