"""Beyond the basic wand, in a real browser: text streaming into the editor, Stop, Undo, and
Try again with picking a version."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from ai.models import AiJob
from tests.browser.conftest import GENERATION_TIMEOUT_MS
from tests.browser.test_author_journey import card, open_editor, story_url
from tests.fakes.llm_server import Reply

pytestmark = pytest.mark.browser


def test_streamed_text_grows_in_the_editor_before_the_final_text(
    signed_in, live_server, lantern_story, ai_stack
):
    page = signed_in
    story, _, blank = lantern_story
    chunks = ["Fern ", "lifted ", "the ", "lantern ", "and ", "the ", "wood ", "glowed."]
    ai_stack.llm.script(Reply(chunks=chunks, chunk_delay=0.45))
    page.goto(story_url(live_server, story))
    the_card = open_editor(page, 2)
    the_card.get_by_test_id("generate-button").click()

    seen: list[str] = []
    poller = card(page, 2).get_by_test_id("job-poller")
    expect(poller).to_be_attached()
    deadline = time.monotonic() + GENERATION_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        value = card(page, 2).get_by_test_id("page-textarea").input_value()
        if value and (not seen or seen[-1] != value):
            seen.append(value)
        if poller.count() == 0:
            break
        page.wait_for_timeout(60)
    job = AiJob.objects.get(target_object_id=blank.pk)
    assert job.status == AiJob.Status.SUCCEEDED, (job.status, job.error, seen)
    partials = [v for v in seen[:-1] if v != seen[-1]]
    assert len(set(partials)) >= 2, seen  # the text grew in front of the author
    assert all(seen[-1].startswith(p.rstrip(".")) for p in partials), seen  # never two halves
    expect(card(page, 2).get_by_test_id("page-textarea")).to_have_value(
        "Fern lifted the lantern and the wood glowed."
    )


def test_stop_cancels_and_restores_the_text(signed_in, live_server, lantern_story, ai_stack, gate):
    page = signed_in
    story, first, _ = lantern_story
    ai_stack.llm.script(Reply(text="This must never reach the page.", latency=5))
    page.goto(story_url(live_server, story))
    the_card = open_editor(page, 1)
    the_card.get_by_test_id("generate-button").click()
    gate.wait_until_held()

    stop = card(page, 1).get_by_role("button", name=re.compile("Stop"))
    stop.click()
    textarea = card(page, 1).get_by_test_id("page-textarea")
    expect(textarea).to_be_editable(timeout=GENERATION_TIMEOUT_MS)
    expect(textarea).to_have_value(first.content)
    expect(page.get_by_test_id("toast").first).to_contain_text(re.compile("stop", re.I))
    gate.release()

    job = AiJob.objects.get(target_object_id=first.pk)
    deadline = time.monotonic() + 20
    while job.status != AiJob.Status.CANCELLED and time.monotonic() < deadline:
        time.sleep(0.1)
        job.refresh_from_db()
    assert job.status == AiJob.Status.CANCELLED
    first.refresh_from_db()
    assert first.content == "Fern the fox lived at the edge of the dark, dark wood."


def test_undo_then_try_again_and_pick_a_version(signed_in, live_server, lantern_story, ai_stack):
    page = signed_in
    story, first, _ = lantern_story
    original = first.content
    ai_stack.llm.script(
        Reply(text="Fern the fox loved the night."),
        Reply(text="Fern the fox was never afraid of the dark."),
    )
    page.goto(story_url(live_server, story))
    open_editor(page, 1).get_by_test_id("generate-button").click()
    textarea = card(page, 1).get_by_test_id("page-textarea")
    expect(textarea).to_have_value("Fern the fox loved the night.", timeout=GENERATION_TIMEOUT_MS)

    card(page, 1).get_by_test_id("try-again-button").click()
    suggestion = card(page, 1).get_by_test_id("suggestion")
    expect(suggestion).to_contain_text("never afraid of the dark", timeout=GENERATION_TIMEOUT_MS)
    expect(textarea).to_have_value("Fern the fox loved the night.")  # the first is not lost

    suggestion.get_by_test_id("pick-button").click()
    expect(card(page, 1).get_by_test_id("page-textarea")).to_have_value(
        "Fern the fox was never afraid of the dark."
    )
    card(page, 1).get_by_test_id("undo-button").click()
    expect(card(page, 1).get_by_test_id("page-textarea")).to_have_value(
        "Fern the fox loved the night."
    )
    card(page, 1).get_by_test_id("undo-button").click()
    expect(card(page, 1).get_by_test_id("page-textarea")).to_have_value(original)

    page.reload()
    expect(card(page, 1).get_by_test_id("page-text")).to_contain_text(original)
    card(page, 1).get_by_test_id("ai-history").locator("summary").click()
    expect(card(page, 1).get_by_test_id("ai-history")).to_contain_text("undone")
