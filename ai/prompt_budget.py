"""Fit a story into the model's context window.

The title, the summary, the page being written and its nearest neighbours matter most and stay
whole; pages further away are shortened to their opening words with a visible "[…]", then left
out behind one "[… N pages left out …]" line, farthest first, until the prompt fits. The result
never exceeds the budget: when even the essentials do not fit, the neighbours and at last the
current page are cut too, always with the visible elision.

No Django: the caller passes the token counter (LiteLLM's for the configured model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ELISION = " […]"
SHORT_CHARS = 160  # an opening line or two: enough to keep who-did-what in view
SAMPLE_CHARS = 8000


@dataclass(frozen=True)
class Budget:
    context_tokens: int  # the model's window
    reserved_tokens: int  # kept free for the answer (max_tokens) and a safety margin

    @property
    def prompt_tokens(self) -> int:
        return max(self.context_tokens - self.reserved_tokens, 1)


def _short(text: str, chars: int = SHORT_CHARS) -> str:
    text = " ".join(text.split())
    if len(text) <= chars:
        return text
    cut = text[:chars].rsplit(" ", 1)[0]
    return cut + ELISION


def fit_context(
    context: dict[str, Any],
    *,
    budget: Budget,
    count: Callable[[str], int],
    render: Callable[[dict[str, Any]], str],
    neighbours: int = 1,
) -> tuple[dict[str, Any], int]:
    """(context that renders within budget, its token count or an upper bound of it).
    `context` is not modified.

    The plan is made by arithmetic on characters (with this story's tokens-per-character,
    measured on a sample), then the fitted prompt is rendered and counted exactly once to
    confirm, and trimmed further in the rare case the estimate was short. Linear in the number
    of pages and a handful of tokenizer calls, so a 500-page story stays fast."""
    limit = budget.prompt_tokens
    # A byte-level tokenizer never makes more tokens than the text has bytes: a prompt with
    # no more bytes than the budget has tokens fits without running the tokenizer at all (the
    # common case, and the hot path of every click). The byte count is the bound returned.
    whole = render(context)
    size = len(whole.encode())
    if size <= limit:
        return context, size
    number = int(context.get("page_number") or 1)
    pages = sorted(
        (dict(p) for p in context.get("existing_pages", [])), key=lambda p: int(p["order"])
    )

    def distance(page: dict[str, Any]) -> int:
        return abs(int(page["order"]) + 1 - number)

    def text_of(page: dict[str, Any]) -> str:
        return f"Page {int(page['order']) + 1}: {page['content']}\n"

    base = count(render({**context, "existing_pages": []}))
    # Tokens per character of this story's pages, measured on a sample: planning by characters
    # keeps the cost linear and small; the final count is exact.
    all_text = "".join(text_of(p) for p in pages)
    sample = all_text[:SAMPLE_CHARS]
    per_char = count(sample) / max(len(sample), 1)
    tokens = base + len(all_text) * per_char
    if tokens <= limit * 0.9:  # comfortably inside: confirm exactly, usually done
        exact = count(whole)
        if exact <= limit:
            return context, exact

    def cost_of(page: dict[str, Any]) -> float:
        return len(text_of(page)) * per_char

    marker_cost = len("Page 1: [… 999 pages left out …]\n") * per_char
    # Farthest first; on a tie the earlier page goes first (the later one is closer in time).
    far = sorted(
        (p for p in pages if distance(p) > neighbours),
        key=lambda p: (-distance(p), int(p["order"])),
    )
    total = float(tokens)
    target = limit * 0.97  # the estimate's slack; the exact count below has the last word
    # 1. Shorten far pages, farthest first.
    for page in far:
        if total <= target:
            break
        short = _short(page["content"])
        if short != page["content"]:
            before = cost_of(page)
            page["content"] = short
            total += cost_of(page) - before
    # 2. Leave far pages out, farthest first (one marker line stands for them).
    omitted: set[int] = set()
    for page in far:
        if total <= target:
            break
        if not omitted:
            total += marker_cost
        omitted.add(id(page))
        total -= cost_of(page)

    def build(kept: list[dict[str, Any]], n_omitted: int, **extra: Any) -> dict[str, Any]:
        shown = list(kept)
        if n_omitted:
            first_order = int(shown[0]["order"]) - 1 if shown else number - 2
            plural = "s" if n_omitted != 1 else ""
            shown.insert(
                0,
                {
                    "order": max(first_order, 0),
                    "content": f"[… {n_omitted} page{plural} left out …]",
                },
            )
        return {**context, "existing_pages": shown, **extra}

    kept = [p for p in pages if id(p) not in omitted]
    candidate = build(kept, len(omitted))
    tokens = count(render(candidate))
    # The estimate was short: leave out more far pages, one at a time, counting exactly.
    for page in far:
        if tokens <= limit:
            break
        if id(page) in omitted:
            continue
        omitted.add(id(page))
        kept = [p for p in kept if id(p) not in omitted]
        candidate = build(kept, len(omitted))
        tokens = count(render(candidate))
    # 3. Still too long (the essentials alone, or estimates were short): cut what is left,
    #    shorter and shorter, always visibly; at last the current page too.
    chars = 2000
    while tokens > limit and chars >= 20:
        cut = [{**p, "content": _short(p["content"], chars)} for p in kept]
        extra = {}
        if context.get("current_content"):
            extra["current_content"] = _short(context["current_content"], chars * 2)
        candidate = build(cut, len(omitted), **extra)
        tokens = count(render(candidate))
        chars //= 2
    if tokens > limit:
        candidate = build(
            [], len(pages), current_content=_short(context.get("current_content") or "", 20)
        )
        tokens = count(render(candidate))
    if tokens > limit:
        raise ValueError(
            f"Even the story's title and summary need {tokens} tokens; the model's window "
            f"allows {limit}. Shorten the summary or use a model with a larger context."
        )
    return candidate, tokens
