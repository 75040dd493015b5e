"""Limits and bad input: sizes are capped with clear errors, generation on a story with little to
go on works (a story always has a title), and each author has a per-minute generation budget.
"""

import threading

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from ai import services as ai_services
from ai.models import AiJob
from stories import services
from tests.factories import PageFactory, StoryFactory, UserFactory
from tests.fakes.llm_server import Reply
from tests.faults.conftest import completion_requests

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def no_workflows(monkeypatch):
    monkeypatch.setattr("ai.queue.queue_ai_job_soon", lambda job: None)


# --- "Nothing to go on" -------------------------------------------------------------------------


@pytest.mark.temporal
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("summary", ["", "A snail who dreams of flying."])
def test_a_story_with_only_its_title_and_blank_pages_can_be_generated(stack, summary):
    """Decision: allowed. A story always has a title (it is required), and the title (with the
    summary, when there is one) is enough for a first page."""
    story = StoryFactory(title="The Snail Who Wanted Wings", description=summary)
    first, _second = PageFactory(story=story, content=""), PageFactory(story=story, content="")
    stack.llm.script(Reply(text="Moss looked up at the birds and sighed."))

    job = stack.wait(services.request_page_text(page=first, user=story.owner))

    first.refresh_from_db()
    assert job.status == AiJob.Status.SUCCEEDED, job.error
    assert first.content == "Moss looked up at the birds and sighed."
    assert "The Snail Who Wanted Wings" in job.rendered_prompt
    if summary:
        assert summary in job.rendered_prompt
    (request,) = completion_requests(stack.llm)
    assert "The Snail Who Wanted Wings" in request.body["messages"][0]["content"]


@pytest.mark.django_db
@pytest.mark.parametrize("template", ["page_content", "page_content_completion"])
def test_both_prompt_families_carry_the_title_of_a_blank_story(template):
    story = StoryFactory(title="The Snail Who Wanted Wings", description="")
    page = PageFactory(story=story, content="")
    context = services.page_prompt_context(story=story, page=page)
    prompt = ai_services.prompts().render(template, context).text
    assert "The Snail Who Wanted Wings" in prompt


# --- Sizes --------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "setting"),
    [("title", "STORY_TITLE_MAX_CHARS"), ("description", "STORY_DESCRIPTION_MAX_CHARS")],
)
def test_too_long_story_details_are_refused_with_the_reason(
    author_client, user, settings, field, setting
):
    data = {"title": "Fine", "description": ""}
    data[field] = "x" * (getattr(settings, setting) + 1)
    response = author_client.post(reverse("stories:list"), data)
    assert response.status_code == 422
    assert "at most" in response.content.decode()
    assert not user.stories.exists()


@pytest.mark.django_db
def test_generate_with_too_long_unsaved_text_keeps_it_and_starts_nothing(
    author_client, story_page, settings, no_workflows
):
    too_long = "x" * (settings.PAGE_CONTENT_MAX_CHARS + 1)
    base = services.content_fingerprint(story_page.content)
    response = author_client.post(
        reverse("stories:page_generate", args=[story_page.pk]),
        {"content": too_long, "base": base},
        **HX,
    )
    assert response.status_code == 422
    assert "at most" in response.content.decode()
    assert too_long in response.content.decode()  # the author's text comes back
    assert not AiJob.objects.exists()


@pytest.mark.temporal
@pytest.mark.django_db(transaction=True)
def test_a_reply_longer_than_a_page_never_makes_the_page_exceed_its_cap(stack, settings):
    settings.PAGE_CONTENT_MAX_CHARS = 120  # the in-process worker shares these settings
    page = PageFactory(content="")
    stack.llm.script(Reply(text=" ".join(["Moss walked on and on."] * 20)))
    job = stack.wait(services.request_page_text(page=page, user=page.story.owner))
    page.refresh_from_db()
    assert job.status == AiJob.Status.SUCCEEDED, job.error
    assert 0 < len(page.content) <= 120


# --- Rate limit ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_rate_limit_is_per_author_and_joining_a_running_job_is_free(settings, no_workflows):
    settings.AI_RATE_LIMIT_PER_MINUTE = 2
    author, other = UserFactory(), UserFactory()
    story = StoryFactory(owner=author)
    pages = [PageFactory(story=story, content="") for _ in range(3)]
    client = Client()
    client.force_login(author)

    for page in pages[:2]:
        assert (
            client.post(reverse("stories:page_generate", args=[page.pk]), **HX).status_code == 200
        )
    # A double click on a page that is generating joins its job: no new job, not counted.
    response = client.post(reverse("stories:page_generate", args=[pages[0].pk]), **HX)
    assert "HX-Trigger" not in response or "limit" not in response["HX-Trigger"]
    assert AiJob.objects.count() == 2
    # A third page within the minute: refused, politely, with the numbers.
    response = client.post(reverse("stories:page_generate", args=[pages[2].pk]), **HX)
    assert "limit is 2" in response["HX-Trigger"]
    assert "wait a moment" in response["HX-Trigger"]
    plain = client.post(reverse("stories:page_generate", args=[pages[2].pk]))
    assert plain.status_code == 429
    assert "limit is 2" in plain.content.decode()
    assert AiJob.objects.count() == 2
    # Another author has a budget of their own.
    theirs = PageFactory(story=StoryFactory(owner=other), content="")
    services.request_page_text(page=theirs, user=other)
    assert AiJob.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_the_rate_limit_holds_when_an_author_clicks_on_many_stories_at_once(settings, no_workflows):
    """Clicks on different stories do not lock the same story row: the author's own row does."""
    settings.AI_RATE_LIMIT_PER_MINUTE = 1
    author = UserFactory()
    pages = [PageFactory(story=StoryFactory(owner=author), content="") for _ in range(4)]
    barrier = threading.Barrier(len(pages))
    outcomes: list[str] = []

    def click(page) -> None:
        try:
            barrier.wait(timeout=30)
            services.request_page_text(page=page, user=author)
            outcomes.append("created")
        except ai_services.RateLimited:
            outcomes.append("limited")
        finally:
            connection.close()

    threads = [threading.Thread(target=click, args=(p,)) for p in pages]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["created", "limited", "limited", "limited"]
    assert AiJob.objects.count() == 1
