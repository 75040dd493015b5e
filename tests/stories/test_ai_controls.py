"""Undo, Try again (alternatives), picking a version and Stop: services and views, then the
real thing on the dev server."""

import time

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from temporalio.client import WorkflowFailureError

from ai.models import AiJob
from ai.workflows.types import AI_JOB_STATUS
from stories import services
from tests.factories import PageFactory, UserFactory
from tests.fakes.llm_server import Hang, Reply

HX = {"HTTP_HX_REQUEST": "true"}


def _applied_job(page, *, before: str, after: str) -> AiJob:
    """A finished AI write, as attach_page_text leaves it."""
    page.content = after
    page.save()
    job = services.request_page_text(page=page, user=page.story.owner)
    AiJob.objects.filter(pk=job.pk).update(
        status="succeeded",
        applied=True,
        output_text=after,
        previous_content=before,
        replaced_content=before,
        completed_at=timezone.now(),
    )
    return AiJob.objects.get(pk=job.pk)


@pytest.fixture
def no_temporal(monkeypatch):
    monkeypatch.setattr("ai.queue.queue_ai_job_soon", lambda job: True)


@pytest.mark.django_db
@pytest.mark.usefixtures("no_temporal")
class TestUndo:
    def test_undo_restores_the_text_before_the_ai_write_once(self):
        page = PageFactory(content="")
        job = _applied_job(page, before="mine", after="AI text")
        services.page_undo_ai(page=page, job_id=job.pk)
        page.refresh_from_db()
        job.refresh_from_db()
        assert page.content == "mine"
        assert job.undone_at is not None
        with pytest.raises(ValidationError, match="no AI change to undo"):
            services.page_undo_ai(page=page, job_id=job.pk)

    def test_undo_never_loses_later_edits(self):
        page = PageFactory(content="")
        job = _applied_job(page, before="mine", after="AI text")
        services.page_update_content(page=page, content="AI text, edited by me")
        with pytest.raises(ValidationError, match="would lose your edits"):
            services.page_undo_ai(page=page, job_id=job.pk)
        page.refresh_from_db()
        assert page.content == "AI text, edited by me"

    def test_undo_of_another_pages_job_is_refused(self):
        page = PageFactory(content="")
        other = PageFactory(story=page.story, content="")
        job = _applied_job(other, before="x", after="y")
        with pytest.raises(ValidationError, match="does not belong"):
            services.page_undo_ai(page=page, job_id=job.pk)

    def test_undo_view(self, client):
        page = PageFactory(content="")
        job = _applied_job(page, before="mine", after="AI text")
        client.force_login(page.story.owner)
        card = client.get(reverse("stories:page_card", args=[page.pk]), **HX).content.decode()
        assert 'data-testid="undo-button"' in card
        assert 'data-testid="try-again-button"' in card
        response = client.post(reverse("stories:page_undo", args=[page.pk, job.pk]), **HX)
        assert response.status_code == 200
        assert "undone" in response["HX-Trigger"]
        page.refresh_from_db()
        assert page.content == "mine"
        assert 'data-testid="undo-button"' not in response.content.decode()


@pytest.mark.django_db
@pytest.mark.usefixtures("no_temporal")
class TestAlternatives:
    def test_try_again_asks_the_same_question_and_keeps_the_answer_aside(self):
        page = PageFactory(content="")
        first = _applied_job(page, before="", after="First version")
        first.prompt_payload = {**first.prompt_payload, "current_content": "", "mode": "continue"}
        first.save()
        again = services.request_page_text(page=page, user=page.story.owner, alternative=True)
        assert again.apply_mode == AiJob.ApplyMode.SUGGEST
        assert again.prompt_payload["current_content"] == ""
        assert again.prompt_payload["mode"] == "continue"
        assert again.previous_content == "First version"

    def test_pick_switches_and_undo_brings_the_first_back(self, client):
        page = PageFactory(content="")
        _applied_job(page, before="", after="First version")
        alt = services.request_page_text(page=page, user=page.story.owner, alternative=True)
        AiJob.objects.filter(pk=alt.pk).update(
            status="succeeded", applied=False, output_text="Second version"
        )
        client.force_login(page.story.owner)
        card = client.get(reverse("stories:page_card", args=[page.pk]), **HX).content.decode()
        assert "Second version" in card
        assert 'data-testid="pick-button"' in card

        response = client.post(reverse("stories:page_pick", args=[page.pk, alt.pk]), **HX)
        page.refresh_from_db()
        assert page.content == "Second version"
        assert "Second version" in response.content.decode()
        alt.refresh_from_db()
        assert alt.applied is True
        assert alt.picked_at is not None
        assert alt.replaced_content == "First version"

        services.page_undo_ai(page=page, job_id=alt.pk)
        page.refresh_from_db()
        assert page.content == "First version"

    def test_a_version_cannot_be_picked_twice(self):
        page = PageFactory(content="")
        alt = services.request_page_text(page=page, user=page.story.owner, alternative=True)
        AiJob.objects.filter(pk=alt.pk).update(status="succeeded", applied=False, output_text="Alt")
        services.page_pick_version(page=page, job_id=alt.pk)
        with pytest.raises(ValidationError, match="not available"):
            services.page_pick_version(page=page, job_id=alt.pk)

    def test_history_lists_the_pages_jobs(self, client):
        page = PageFactory(content="")
        _applied_job(page, before="", after="First version")
        client.force_login(page.story.owner)
        body = client.get(reverse("stories:detail", args=[page.story.pk])).content.decode()
        assert 'data-testid="ai-history"' in body
        assert "AI history (1)" in body
        assert "on the page" in body

    def test_other_users_cannot_undo_pick_or_stop(self, client):
        page = PageFactory(content="")
        job = _applied_job(page, before="mine", after="AI text")
        client.force_login(UserFactory())
        for name in ("stories:page_undo", "stories:page_pick", "stories:page_stop"):
            assert client.post(reverse(name, args=[page.pk, job.pk]), **HX).status_code == 404
        assert client.post(reverse("stories:page_try_again", args=[page.pk])).status_code == 404
        page.refresh_from_db()
        assert page.content == "AI text"


@pytest.mark.temporal
@pytest.mark.django_db(transaction=True)
class TestOnTheDevServer:
    def test_try_again_generates_an_alternative_without_touching_the_page(self, stack):
        page = PageFactory(content="")
        stack.llm.script(Reply(text="First version."), Reply(text="Second version."))
        first = stack.wait(services.request_page_text(page=page, user=page.story.owner))
        assert first.applied is True
        again = stack.wait(
            services.request_page_text(page=page, user=page.story.owner, alternative=True)
        )
        page.refresh_from_db()
        assert again.status == AiJob.Status.SUCCEEDED
        assert again.applied is False
        assert again.output_text == "Second version."
        assert page.content == "First version."

    def test_stop_cancels_the_workflow_and_nothing_is_attached(self, stack, client):
        page = PageFactory(content="keep me")
        stack.llm.script(Hang(20))
        job = services.request_page_text(page=page, user=page.story.owner)
        deadline = time.monotonic() + 10
        while not stack.llm.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        client.force_login(page.story.owner)
        response = client.post(reverse("stories:page_stop", args=[page.pk, job.pk]), **HX)
        assert response.status_code == 200
        job = stack.wait(job, timeout=20)
        page.refresh_from_db()
        assert job.status == AiJob.Status.CANCELLED
        assert job.cancel_requested_at is not None
        assert page.content == "keep me"
        # The row is finished by the run's last step, a moment before the run itself closes.
        handle = stack.temporal.client.get_workflow_handle(job.workflow_id)
        with pytest.raises(WorkflowFailureError):
            stack.temporal.run(handle.result())
        assert stack.temporal.run(handle.describe()).status.name == "CANCELED"

    def test_stop_while_the_text_streams_ends_the_model_call_at_once(self, stack, client):
        # 60 words at 0.2 s each: a 12 s reply. The first attempt runs inside the workflow
        # task, which hears of a cancellation only at its next heartbeat (~8 s); the call's own
        # partial-text write sees the Stop instead, within one flush.
        words = [f"word{i} " for i in range(60)]
        stack.llm.script(Reply(chunks=words, chunk_delay=0.2))
        page = PageFactory(content="keep me")
        job = services.request_page_text(page=page, user=page.story.owner)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.partial_text:
                break
            time.sleep(0.05)
        assert job.partial_text.startswith("word0"), "the text never started to stream"
        client.force_login(page.story.owner)
        stopped = time.monotonic()
        response = client.post(reverse("stories:page_stop", args=[page.pk, job.pk]), **HX)
        assert response.status_code == 200

        job = stack.wait(job, timeout=20)
        page.refresh_from_db()
        assert job.status == AiJob.Status.CANCELLED
        assert page.content == "keep me"
        assert time.monotonic() - stopped < 3  # not the 8 s heartbeat, nor the 12 s reply
        assert "word59" not in job.partial_text
        # The run says so too, whichever reached it first: the cancellation, or the call's
        # refusal (the row is finished a moment before the run closes).
        handle = stack.temporal.client.get_workflow_handle(job.workflow_id)
        with pytest.raises(WorkflowFailureError):
            stack.temporal.run(handle.result())
        described = stack.temporal.run(handle.describe())
        assert described.typed_search_attributes.get(AI_JOB_STATUS) == "cancelled"
