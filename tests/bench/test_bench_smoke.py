"""The benchmark harness works end to end in its tiny mode (`python -m bench --quick`).

It starts its own Temporal dev server, fake model, worker and site, so it runs as a subprocess.
No timing is asserted here: speed targets live in the benchmark's report, never in unit tests.
What is asserted is that every section is in the JSON and that no job was lost or duplicated.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.runner import TASK_SPLIT

REPO = Path(__file__).resolve().parents[2]
SECTIONS = (
    "a_post_latency",
    "b_end_to_end",
    "c_floor",
    "d_naive",
    "e_concurrency",
    "f_memory",
    "g_local_model",
)

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-chart", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| target | goal | measured | met |" in done.stdout  # the table was printed
    return json.loads(out.read_text())


def test_every_section_is_reported(quick_run: dict) -> None:
    for section in SECTIONS:
        assert section in quick_run, section
    rounds = quick_run["meta"]["options"]["serial_rounds"]
    for section in ("a_post_latency", "b_end_to_end", "c_floor", "d_naive"):
        assert quick_run[section]["n"] == rounds, section
        assert quick_run[section]["p50_ms"] > 0 and quick_run[section]["p95_ms"] > 0
    assert quick_run["b_end_to_end"]["first_click_after_start_ms"] > 0
    # The click's one workflow task, split by the job row's stamps: the parts are the task.
    phases = quick_run["b_end_to_end"]["phases_ms"]
    assert phases["workflow tasks"] == 1
    split = [phases[key] for key in TASK_SPLIT]
    assert all(part >= 0 for part in split)
    assert sum(split) == pytest.approx(
        phases["workflow task run (incl. local activities)"], rel=0.5
    )
    assert quick_run["c_floor"]["b_over_c"] > 0
    assert quick_run["d_naive"]["b_over_d"] > 0
    assert quick_run["d_naive"]["product_ordinary_activities"]["n"] == rounds
    assert quick_run["a_post_latency"]["with_1s_model"]["n"] > 0
    for process in ("site", "worker"):
        memory = quick_run["f_memory"][process]
        assert memory["idle_mb"] > 0 and memory["peak_mb"] > 0
    local = quick_run["g_local_model"]
    assert local.get("skipped") or local.get("ratio") is not None
    assert {t["name"] for t in quick_run["targets"]} >= {"a: POST generate p50", "b / c (p50)"}


def test_burst_loses_and_duplicates_nothing(quick_run: dict) -> None:
    e = quick_run["e_concurrency"]
    for key in ("latency_0s", "latency_1s"):
        burst = e[key]
        assert burst["jobs"] == quick_run["meta"]["options"]["burst"]
        assert burst["refused"] == 0, (burst["http_status"], burst["errors"])
        assert burst["accepted"] == burst["applied"] == burst["jobs"]
        assert burst["lost"] == 0
        assert burst["duplicated"] == 0
        assert burst["duplicate_jobs"] == burst["duplicate_workflow_runs"] == 0
        assert burst["model_calls"] >= burst["jobs"]  # every applied page had its model call
        assert len(burst["completion_s"]) == burst["jobs"]
    assert e["lost"] == 0 and e["duplicated"] == 0 and e["refused"] == 0


def test_queries_per_job_do_not_grow_with_the_story(quick_run: dict) -> None:
    queries = quick_run["queries_per_job"]
    assert queries["story_of_4_pages"]["post_generate_view"] > 0
    assert queries["constant"] is True, queries
