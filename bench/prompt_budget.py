"""Benchmark: fitting a 500-page story into the model's window (issue: long stories).

    .venv/bin/python -m bench.prompt_budget [--pages 500] [--repeat 30]

Renders the real templates with the real token counter (LiteLLM's, offline) and reports the
median and p95 time of `ai.prompt_budget.fit_context` plus the fitted prompt's size. Target: the
median under 50 ms on the 2-core development machine. A benchmark, not a timed unit test: the
correctness (prompt within budget, neighbours whole, visible elision) is tested in
tests/ai/test_prompt_budget.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ai.adapters.litellm import count_tokens  # noqa: E402
from ai.prompt_budget import Budget, fit_context  # noqa: E402
from ai.prompts import PromptLibrary  # noqa: E402

MODEL = "openai/gpt-4o-mini"
TARGET_MS = 50.0


def story(pages: int, current: int) -> dict:
    return {
        "story_title": "The Long Walk",
        "story_description": "A tortoise walks around the whole world, one page at a time.",
        "existing_pages": [
            {"order": i, "content": f"Page {i + 1}. " + "The tortoise kept walking. " * 12}
            for i in range(pages)
            if i != current - 1
        ],
        "current_content": "",
        "page_number": current,
    }


def measure(key: str, pages: int, repeat: int) -> dict:
    library = PromptLibrary(ROOT / "prompts")
    context = story(pages, pages // 2)
    budget = Budget(context_tokens=8192, reserved_tokens=400 + 512)

    def render(c: dict) -> str:
        return library.render(key, c).text

    def count(text: str) -> int:
        return count_tokens(MODEL, text)

    fit_context(context, budget=budget, count=count, render=render)  # warm the tokenizer
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fitted, tokens = fit_context(context, budget=budget, count=count, render=render)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "template": key,
        "pages": pages,
        "median_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 1),
        "prompt_tokens": tokens,
        "budget_tokens": budget.prompt_tokens,
        "pages_shown": len(fitted["existing_pages"]),
        "target_ms": TARGET_MS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    rows = [
        measure(key, args.pages, args.repeat) for key in ("page_content", "page_content_completion")
    ]
    print(f"{'template':<26}{'pages':>6}{'median ms':>11}{'p95 ms':>9}{'tokens':>8}{'budget':>8}")
    for row in rows:
        print(
            f"{row['template']:<26}{row['pages']:>6}{row['median_ms']:>11}{row['p95_ms']:>9}"
            f"{row['prompt_tokens']:>8}{row['budget_tokens']:>8}"
        )
    out = ROOT / "bench" / "results" / "prompt_budget.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
