"""The author's experience in a real browser (Chromium through Playwright): the editor, and the
"Generate with AI" wand end to end — live server, real Temporal dev server, real worker, fake LLM.

Every wait is an auto-waiting `expect`; the model is held by `gate` (see conftest) while the
loading state is asserted, so nothing depends on timing.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, expect
from playwright.sync_api import Page as BrowserPage

from ai.models import AiJob
from ai.prompt_cleanup import clean_page_text
from stories.models import Page, Story
from tests.browser.conftest import GENERATION_TIMEOUT_MS
from tests.conftest import FAKE_API_KEY
from tests.fakes.llm_server import Fault, Reply

pytestmark = pytest.mark.browser


def card(page: BrowserPage, number: int) -> Locator:
    return page.locator(f'[data-testid="page-card"][data-page-number="{number}"]')


def open_editor(page: BrowserPage, number: int) -> Locator:
    """Click "Edit page N" and return the card, its textarea visible and editable."""
    the_card = card(page, number)
    the_card.get_by_role("link", name=f"Edit page {number}").click()
    expect(the_card.get_by_test_id("page-textarea")).to_be_editable()
    return the_card


def expect_loading(the_card: Locator) -> None:
    """The loading state: the wand disabled with a spinner, the text read-only, a live status."""
    wand = the_card.get_by_test_id("generate-button")
    expect(wand).to_be_disabled()
    expect(wand.locator(".spinner")).to_be_visible()
    expect(wand).to_contain_text("Generating")
    textarea = the_card.get_by_test_id("page-textarea")
    expect(textarea).not_to_be_editable()
    expect(textarea).to_have_attribute("readonly", "")
    expect(textarea).to_have_attribute("aria-busy", "true")
    status = the_card.get_by_role("status")
    expect(status).to_have_attribute("aria-live", "polite")
    expect(status).to_have_text(re.compile(r"Queued|writing"))
    expect(the_card.get_by_test_id("job-poller")).to_be_attached()
    expect(the_card.get_by_role("button", name="Save")).to_be_disabled()


def expect_editing(the_card: Locator, text: str) -> None:
    """Generation over: the text in an editable, focused textarea; the wand usable again."""
    textarea = the_card.get_by_test_id("page-textarea")
    expect(textarea).to_have_value(text, timeout=GENERATION_TIMEOUT_MS)
    expect(textarea).to_be_editable()
    expect(textarea).not_to_have_attribute("aria-busy", "true")
    expect(textarea).to_be_focused()
    wand = the_card.get_by_test_id("generate-button")
    expect(wand).to_be_enabled()
    expect(wand.locator(".spinner")).to_have_count(0)
    expect(the_card.get_by_role("status")).to_have_text("")
    expect(the_card.get_by_test_id("job-poller")).to_have_count(0)


def finished_text(the_card: Locator, page_row: Page, raw: str) -> str:
    """Wait until the browser shows the job over (no poller); return the page's saved text,
    which is the model's raw text through the worker's cleanup."""
    expect(the_card.get_by_test_id("job-poller")).to_have_count(0, timeout=GENERATION_TIMEOUT_MS)
    page_row.refresh_from_db()
    assert page_row.content == clean_page_text(raw, page_number=page_row.order + 1)
    return page_row.content


def story_url(live_server, story: Story) -> str:
    return f"{live_server.url}{story.get_absolute_url()}"


# --- 1. Writing and arranging pages -------------------------------------------------------------


def test_sign_up_create_story_add_edit_reorder_and_reload(
    page: BrowserPage, live_server, transactional_db
):
    page.goto(live_server.url)
    page.get_by_role("link", name="Sign up").click()
    page.get_by_label("Username").fill("bea")
    page.get_by_label("Password", exact=True).fill("moss-and-moon-2024")
    page.get_by_label("Password confirmation").fill("moss-and-moon-2024")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Your stories")).to_be_visible()

    page.get_by_label("Title").fill("Moss and the Moon")
    page.get_by_label("Summary").fill("A snail's quest to touch the moon.")
    page.get_by_role("button", name="Create story").click()
    expect(page.get_by_role("heading", name="Moss and the Moon", level=1)).to_be_visible()
    cards = page.get_by_test_id("page-card")
    expect(cards).to_have_count(1)  # a new story starts with one blank page
    page.evaluate("() => { window.__sameDocument = true }")  # gone if the page reloads

    add_page = page.get_by_role("button", name=re.compile(r"Add a page$"))
    for count in (2, 3, 4):
        add_page.click()
        expect(cards).to_have_count(count)

    second = open_editor(page, 2)
    second.get_by_test_id("page-textarea").fill("Moss packed a crumb\nand a raindrop.")
    second.get_by_role("button", name="Save").click()
    expect(second.get_by_test_id("page-textarea")).to_be_hidden()
    expect(second.get_by_test_id("page-text")).to_contain_text("Moss packed a crumb")

    card(page, 2).get_by_role("button", name="Move page 2 down").click()
    expect(card(page, 3).get_by_test_id("page-text")).to_contain_text("Moss packed a crumb")
    expect(card(page, 2).get_by_test_id("page-text")).to_contain_text("Blank page")
    assert page.evaluate("() => window.__sameDocument") is True  # all in place, no reload

    page.reload()
    expect(cards).to_have_count(4)
    moved = card(page, 3).get_by_test_id("page-text")
    expect(moved).to_contain_text("Moss packed a crumb")
    expect(moved).to_contain_text("and a raindrop.")
    expect(moved.locator("br")).to_have_count(1)  # the author's line break survives
    for number in (1, 2, 4):
        expect(card(page, number).get_by_test_id("page-text")).to_contain_text("Blank page")
    story = Story.objects.get(title="Moss and the Moon", owner__username="bea")
    assert story.description == "A snail's quest to touch the moon."
    assert [p.content for p in story.pages.order_by("order")] == [
        "",
        "",
        "Moss packed a crumb\nand a raindrop.",
        "",
    ]


# --- 2. Generating a blank page -----------------------------------------------------------------


def test_wand_on_blank_page_shows_loading_state_then_the_saved_text(
    signed_in, live_server, lantern_story, ai_stack, gate, screenshots
):
    page = signed_in
    story, first, blank = lantern_story
    chunks = ["Fern lifted the lantern ", "and the whole wood ", "glowed gold."]
    # The gate holds the stream's first pause: after "Fern lifted the lantern".
    ai_stack.llm.script(Reply(chunks=chunks, chunk_delay=0.05))
    page.goto(story_url(live_server, story))
    the_card = open_editor(page, 2)
    textarea = the_card.get_by_test_id("page-textarea")
    wand = the_card.get_by_role("button", name="Generate with AI")
    expect(wand).to_have_accessible_name("Generate with AI")
    expect(wand).to_be_enabled()
    expect(wand.locator("svg")).to_have_attribute("aria-hidden", "true")  # the icon is decor
    screenshots.take(page, "editor-normal", docs=True)
    page.evaluate("() => { window.__sameDocument = true }")

    wand.click()
    expect_loading(the_card)
    gate.wait_until_held()  # the model has started and is waiting
    expect(textarea).to_have_value(re.compile(r"^Fern lifted the lantern(?!.*glowed)"))
    expect_loading(the_card)
    expect(the_card.get_by_role("status")).to_have_text("The AI is writing this page…")
    screenshots.take(page, "editor-generating", docs=True)

    gate.release()
    expected = finished_text(the_card, blank, "".join(chunks))
    assert expected.startswith("Fern lifted the lantern and the whole wood")
    expect_editing(the_card, expected)
    expect(page.get_by_test_id("toast")).to_have_class(re.compile(r"\btoast-success\b"))
    assert page.evaluate("() => window.__sameDocument") is True
    screenshots.take(page, "editor-generated")

    page.reload()
    expect(card(page, 2).get_by_test_id("page-text")).to_contain_text(expected)
    (job,) = AiJob.objects.filter(target_object_id=blank.pk)
    assert job.status == AiJob.Status.SUCCEEDED


# --- 3. The model fails -------------------------------------------------------------------------


def test_model_401_shows_a_human_message_and_restores_the_text(
    signed_in, live_server, lantern_story, ai_stack, gate, screenshots
):
    page = signed_in
    story, first, blank = lantern_story
    original = first.content
    ai_stack.llm.script(Fault(401, latency=0.01))  # held by the gate, then refused
    page.goto(story_url(live_server, story))
    the_card = open_editor(page, 1)

    the_card.get_by_role("button", name="Generate with AI").click()
    expect_loading(the_card)
    gate.wait_until_held()
    expect(the_card.get_by_test_id("page-textarea")).to_have_value(original)
    gate.release()

    toast = page.get_by_test_id("toast")
    expect(toast).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
    expect(toast).to_have_class(re.compile(r"\btoast-error\b"))
    expect(toast).to_contain_text("The AI provider rejected our credentials")
    expect_editing(the_card, original)
    toast_text = toast.inner_text()
    for leak in ("401", "Incorrect API key", "Traceback", "litellm", FAKE_API_KEY):
        assert leak not in toast_text
    assert FAKE_API_KEY not in page.content()
    screenshots.take(page, "editor-error", docs=True)

    first.refresh_from_db()
    assert first.content == original
    assert len(ai_stack.llm.requests) == 1  # a 401 is not retried


# --- 4. Leaving and coming back mid-generation ---------------------------------------------------


def test_reload_mid_generation_restores_the_loading_state_and_the_text_arrives(
    signed_in, live_server, lantern_story, ai_stack, gate
):
    page = signed_in
    story, first, blank = lantern_story
    chunks = ["Owl blinked twice. ", "Then she hooted a map of stars."]
    ai_stack.llm.script(Reply(chunks=chunks, chunk_delay=0.05))  # held after the first
    page.goto(story_url(live_server, story))
    open_editor(page, 2).get_by_role("button", name="Generate with AI").click()
    gate.wait_until_held()
    partial = re.compile(r"^Owl blinked twice(?!.*stars)")
    expect(card(page, 2).get_by_test_id("page-textarea")).to_have_value(partial)

    page.reload()
    the_card = card(page, 2)
    expect_loading(the_card)
    expect(the_card.get_by_test_id("page-textarea")).to_have_value(partial)
    expect(the_card.get_by_role("status")).to_have_text("The AI is writing this page…")

    gate.release()
    expected = finished_text(the_card, blank, "".join(chunks))
    assert expected.startswith("Owl blinked twice. Then she hooted")
    expect_editing(the_card, expected)


# --- 5. The model's text is text ----------------------------------------------------------------

# A flag name the cleanup leaves alone (it strips markdown such as `__`): if any of this ran as
# markup, `window.xssFired` would be set.
HOSTILE = (
    "<script>window.xssFired = 'script'</script>"
    "<img src=x onerror=\"window.xssFired = 'img'\">"
    "Fern <b>smiled</b> & waved."
)


def test_html_in_the_model_reply_shows_as_plain_text(
    signed_in, live_server, lantern_story, ai_stack, gate
):
    page = signed_in
    story, first, blank = lantern_story
    ai_stack.llm.script(Reply(chunks=[HOSTILE[:60], HOSTILE[60:]], chunk_delay=0.05))
    page.goto(story_url(live_server, story))
    open_editor(page, 2).get_by_role("button", name="Generate with AI").click()
    the_card = card(page, 2)
    gate.wait_until_held()  # half the markup is on the page as the partial text
    expect(the_card.get_by_test_id("page-textarea")).to_have_value(re.compile(r"^<script>"))
    expect_loading(the_card)
    gate.release()

    stored = finished_text(the_card, blank, HOSTILE)
    # Without markup in the saved text this test would prove nothing: keep it meaningful.
    assert "<script>" in stored and "onerror=" in stored, stored
    expect_editing(the_card, stored)  # the exact characters, markup included
    assert page.evaluate("() => window.xssFired") is None
    expect(the_card.locator("script, img, b")).to_have_count(0)

    page.reload()  # view mode: the saved text rendered by the server
    view = card(page, 2).get_by_test_id("page-text")
    expect(view).to_contain_text("<script>window.xssFired = 'script'</script>")
    expect(view).to_contain_text("Fern <b>smiled</b> & waved.")
    expect(card(page, 2).locator("script, img, b")).to_have_count(0)
    assert page.evaluate("() => window.xssFired") is None
