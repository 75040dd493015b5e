"""Long stories still fit: the prompt never exceeds the model's window, the essentials stay
whole and what was cut is visibly elided."""

from pathlib import Path

import pytest

from ai.adapters.litellm import count_tokens
from ai.prompt_budget import ELISION, Budget, fit_context
from ai.prompts import PromptLibrary

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
MODEL = "openai/gpt-4o-mini"


def story(pages: int, current: int, current_text: str = "") -> dict:
    return {
        "story_title": "The Long Walk",
        "story_description": "A tortoise walks around the whole world, one page at a time.",
        "existing_pages": [
            {"order": i, "content": f"Page {i + 1} text. " + "The tortoise kept walking. " * 12}
            for i in range(pages)
            if i != current - 1
        ],
        "current_content": current_text,
        "page_number": current,
    }


@pytest.fixture(params=["page_content", "page_content_completion"])
def render(request):
    library = PromptLibrary(PROMPTS)
    return lambda context: library.render(request.param, context).text


def count(text: str) -> int:
    return count_tokens(MODEL, text)


def test_a_short_story_is_untouched(render):
    context = story(5, 3)
    calls = []

    def counting(text: str) -> int:
        calls.append(text)
        return count(text)

    fitted, tokens = fit_context(context, budget=Budget(8192, 400), count=counting, render=render)
    assert fitted == context
    assert count(render(context)) <= tokens == len(render(context).encode())
    assert calls == []  # small enough to need no tokenizer at all


@pytest.mark.parametrize("current", [1, 250, 500])
def test_a_500_page_story_fits_with_visible_elision(render, current):
    context = story(500, current, current_text="The tortoise met a hare." if current == 250 else "")
    budget = Budget(context_tokens=4096, reserved_tokens=400)
    assert count(render(context)) > budget.prompt_tokens  # it really needs cutting

    fitted, tokens = fit_context(context, budget=budget, count=count, render=render)
    text = render(fitted)

    assert tokens == count(text) <= budget.prompt_tokens
    assert "The Long Walk" in text
    assert "one page at a time" in text
    if current == 250:
        assert "The tortoise met a hare." in text  # the page being revised stays whole
    whole = {p["order"]: p["content"] for p in context["existing_pages"]}
    shown = {p["order"]: p["content"] for p in fitted["existing_pages"]}
    for neighbour in (current - 2, current):  # orders of the pages just before and after
        if neighbour in whole:
            assert shown[neighbour] == whole[neighbour]
    assert "pages left out" in text or ELISION.strip() in text


def test_the_cut_is_farthest_first(render):
    context = story(60, 60)
    fitted, _ = fit_context(context, budget=Budget(2000, 200), count=count, render=render)
    orders = [p["order"] for p in fitted["existing_pages"]]
    assert orders == sorted(orders)
    assert 58 in orders  # the page right before stays
    assert fitted["existing_pages"][0]["content"].startswith("[…")


def test_when_even_the_essentials_are_too_long_they_are_cut_visibly(render):
    context = story(3, 2, current_text="word " * 3000)
    fitted, tokens = fit_context(context, budget=Budget(1200, 200), count=count, render=render)
    assert tokens <= 1000
    assert fitted["current_content"].endswith(ELISION)


def test_an_impossible_budget_is_a_clear_error(render):
    with pytest.raises(ValueError, match="title and summary"):
        fit_context(story(3, 2), budget=Budget(30, 20), count=count, render=render)
