"""Generated text is untrusted input: a model can be talked into replying with markup. Whatever
it sends is shown as text everywhere it appears — the partial text while it streams, the page,
the editor's textarea, the AI history, a kept-aside suggestion, and the admin — and never runs.
The reply travels the real path: fake provider -> LiteLLM -> Temporal -> the job row -> views.
"""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from ai.models import AiJob
from stories import services
from tests.factories import PageFactory
from tests.fakes.llm_server import Reply
from tests.faults.conftest import wait_for

pytestmark = [pytest.mark.temporal, pytest.mark.django_db(transaction=True)]
HX = {"HTTP_HX_REQUEST": "true"}

# The two classic payloads: a script element, and breaking out of an attribute into an element.
EVIL = 'Moss read the sign "<script>alert(1)</script>"><img src=x onerror=alert(1)> twice.'
EVIL_CHUNKS = ['Moss read the sign "', "<script>alert(1)</script>", '">', "<img src=x "]
EVIL_CHUNKS += ["onerror=alert(1)>", " twice."]
# What must never reach a browser unescaped.
LIVE = ["<script>alert(", "<img src=x", "onerror=alert(1)>"]
# What it looks like as text.
SHOWN = ["&lt;script&gt;alert(1)&lt;/script&gt;", "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"]


def assert_inert(html: str, *, shown: bool = True) -> None:
    for live in LIVE:
        assert live not in html, f"unescaped model output in the page: {live!r}"
    if shown:
        for text in SHOWN:
            assert text in html


@pytest.fixture
def author(story) -> Client:
    client = Client()
    client.force_login(story.owner)
    return client


def test_a_reply_full_of_markup_is_shown_as_text_in_the_editor(stack, story, author):
    page = PageFactory(story=story, content="")
    assert "".join(EVIL_CHUNKS) == EVIL
    stack.llm.script(Reply(text=EVIL, chunks=EVIL_CHUNKS, chunk_delay=0.4))

    response = author.post(reverse("stories:page_generate", args=[page.pk]), **HX)
    job = AiJob.objects.get()
    poll = reverse("stories:page_job", args=[page.pk, job.pk])

    # While it streams: the partial text in the read-only textarea.
    def partial_has_markup() -> bool:
        job.refresh_from_db()
        return "<script>" in job.partial_text and job.is_active

    wait_for(partial_has_markup, 30, "partial text with markup")
    streaming = author.get(poll, **HX)
    assert streaming.status_code == 200
    assert_inert(streaming.content.decode(), shown=False)
    assert "&lt;script&gt;" in streaming.content.decode()

    job = stack.wait(job)
    page.refresh_from_db()
    assert job.status == AiJob.Status.SUCCEEDED, job.error
    assert page.content == job.output_text
    assert "<script>alert(1)</script>" in page.content  # stored as sent: escaping is for views

    finished = author.get(poll, **HX)  # the final card: textarea, page view, AI history
    assert finished.status_code == 286
    assert_inert(finished.content.decode())
    detail = author.get(reverse("stories:detail", args=[story.pk]))  # a reload
    assert_inert(detail.content.decode())
    card = author.get(reverse("stories:page_card", args=[page.pk]) + "?mode=edit", **HX)
    assert_inert(card.content.decode())

    # "Try again" keeps the next answer aside as a suggestion: escaped there too.
    stack.llm.script(Reply(text=EVIL.replace("twice", "three times")))
    author.post(reverse("stories:page_try_again", args=[page.pk]), **HX)
    alternative = stack.wait(AiJob.objects.exclude(pk=job.pk).get())
    assert alternative.applied is False
    response = author.get(reverse("stories:page_job", args=[page.pk, alternative.pk]), **HX)
    html = response.content.decode()
    assert 'data-testid="suggestion"' in html
    assert_inert(html)
    assert "three times" in html.split('data-testid="suggestion"', 1)[1]


def test_a_reply_full_of_markup_is_shown_as_text_in_the_admin(stack, story):
    page = PageFactory(story=story, content="")
    stack.llm.script(Reply(text=EVIL))
    job = stack.wait(services.request_page_text(page=page, user=story.owner))
    assert "<script>alert(1)</script>" in job.output_text

    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "x"))
    pages = [  # (url, whether the whole text is on it: list columns are truncated)
        (reverse("admin:ai_aijob_changelist"), False),
        (reverse("admin:ai_aijob_change", args=[job.pk]), True),
        (reverse("admin:stories_page_changelist"), False),
        (reverse("admin:stories_page_change", args=[page.pk]), True),
        (reverse("admin:stories_story_change", args=[story.pk]), True),
    ]
    for url, whole in pages:
        response = admin.get(url)
        assert response.status_code == 200, url
        assert_inert(response.content.decode(), shown=whole)
