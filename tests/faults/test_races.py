"""Faults 5 and 6: the author races the AI, and races themselves.

5. The author saves newer text while the model is writing: their text is kept, the job
   succeeds with `applied=False` and the AI text is offered as a suggestion. A save from a tab
   that loaded the page before the AI wrote is refused with a visible conflict.
6. Two tabs (or a double click) ask at the same moment: one job, one workflow, one model call.
"""

import json
import threading

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.urls import reverse

from ai import services as ai_services
from ai.models import AiJob
from stories import services
from stories.activities import KEPT_AUTHOR_TEXT
from tests.factories import PageFactory
from tests.fakes.llm_server import Reply
from tests.faults.conftest import completion_requests, wait_for

pytestmark = [pytest.mark.temporal, pytest.mark.django_db(transaction=True)]
HX = {"HTTP_HX_REQUEST": "true"}
AI_TEXT = "The AI's version: Moss met an owl who knew every star by name."
MINE = "My own version, typed while the AI was busy."


def _notice(response) -> str:
    return json.loads(response["HX-Trigger"])["notify"]["message"]


def test_author_saves_while_the_ai_writes_their_text_is_kept_and_the_ai_text_offered(
    stack, author_client, story
):
    page = PageFactory(story=story, content="My first draft.")
    base = services.content_fingerprint(page.content)
    stack.llm.script(Reply(text=AI_TEXT, latency=2.0))  # the model takes its time

    # Tab 1 clicks the wand; the job is running and the model has the request ...
    response = author_client.post(
        reverse("stories:page_generate", args=[page.pk]),
        {"content": "My first draft.", "base": base},
        **HX,
    )
    assert response.status_code == 200
    job = AiJob.objects.get()
    wait_for(lambda: completion_requests(stack.llm), 30, "the model call")

    # ... when tab 2, opened before the click, saves newer words. Allowed: the page has not
    # changed since tab 2 loaded it (the AI has not written anything yet).
    response = author_client.post(
        reverse("stories:page_save", args=[page.pk]), {"content": MINE, "base": base}, **HX
    )
    assert response.status_code == 200

    job = stack.wait(job)
    page.refresh_from_db()
    assert page.content == MINE  # never overwritten
    assert job.status == AiJob.Status.SUCCEEDED, job.error
    assert job.applied is False  # the job records what happened ...
    assert job.error == KEPT_AUTHOR_TEXT  # ... and why
    assert job.output_text == AI_TEXT  # the AI's text is not lost either
    assert job.previous_content == "My first draft."

    # The editor says so and offers the AI text beside the author's.
    response = author_client.get(reverse("stories:page_job", args=[page.pk, job.pk]), **HX)
    assert response.status_code == 286
    assert "your text was kept" in _notice(response)
    editor, suggestion = response.content.decode().split('data-testid="suggestion"', 1)
    assert MINE in editor
    assert AI_TEXT.replace("'", "&#x27;") in suggestion
    assert "your text was kept" in suggestion
    # And a reload shows the same (the state is the job row's, not the browser's).
    body = author_client.get(reverse("stories:detail", args=[story.pk])).content.decode()
    assert MINE in body and 'data-testid="suggestion"' in body


def test_a_save_from_a_tab_opened_before_the_ai_wrote_is_a_visible_conflict(
    stack, author_client, story
):
    page = PageFactory(story=story, content="")
    stale_base = services.content_fingerprint("")  # what a second tab loaded
    stack.llm.script(Reply(text=AI_TEXT))
    job = stack.wait(services.request_page_text(page=page, user=story.owner))
    assert job.applied is True

    response = author_client.post(
        reverse("stories:page_save", args=[page.pk]),
        {"content": "typed in the stale tab", "base": stale_base},
        **HX,
    )
    body = response.content.decode()
    assert response.status_code == 422
    assert "changed since you started editing" in body
    assert "typed in the stale tab" in body  # their words come back, not lost
    page.refresh_from_db()
    assert page.content == AI_TEXT  # and the AI text is not silently clobbered


def test_two_tabs_clicking_at_the_same_moment_share_one_job(stack, user, story):
    page = PageFactory(story=story, content="")
    url = reverse("stories:page_generate", args=[page.pk])
    tabs = 4
    barrier = threading.Barrier(tabs)
    responses: list = []
    errors: list[BaseException] = []

    def click() -> None:
        tab = Client()
        tab.force_login(user)
        try:
            barrier.wait(timeout=30)
            responses.append(tab.post(url, **HX))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(tabs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert [r.status_code for r in responses] == [200] * tabs

    job = AiJob.objects.get()  # exactly one job
    poll_url = reverse("stories:page_job", args=[page.pk, job.pk])
    assert all(poll_url in r.content.decode() for r in responses)  # every tab watches it
    job = stack.wait(job)
    page.refresh_from_db()
    assert job.status == AiJob.Status.SUCCEEDED, job.error
    assert page.content == job.output_text
    assert len(completion_requests(stack.llm)) == 1  # one workflow, one model call


def test_the_database_refuses_a_second_active_job_for_a_page(stack, story):
    """The partial unique index holds even for code that skips the service's check."""
    page = PageFactory(story=story, content="")
    stack.llm.script(Reply(text=AI_TEXT, latency=2.0))
    first = services.request_page_text(page=page, user=story.owner)
    duplicate = AiJob.objects.get(pk=first.pk)
    duplicate.pk = None
    duplicate.status = AiJob.Status.PENDING
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()
    stack.wait(first)
    # Once the first is finished, a new one may start.
    second = services.request_page_text(page=page, user=story.owner)
    assert second.pk != first.pk
    assert stack.wait(second).status == AiJob.Status.SUCCEEDED


def test_losing_the_race_inside_create_job_joins_the_winner(story, monkeypatch):
    """The check-then-insert window: the other request inserted after this one looked."""
    page = PageFactory(story=story, content="")
    monkeypatch.setattr("ai.queue.queue_ai_job_soon", lambda job: None)
    winner = services.request_page_text(page=page, user=story.owner)
    real = ai_services.active_job_for
    looks = []

    def blind_first_look(target):
        looks.append(target)
        return None if len(looks) == 1 else real(target)

    monkeypatch.setattr("ai.services.active_job_for", blind_first_look)
    joined = services.request_page_text(page=page, user=story.owner)
    assert joined.pk == winner.pk
    assert len(looks) == 2  # looked, lost on the index, looked again
    assert AiJob.objects.count() == 1
