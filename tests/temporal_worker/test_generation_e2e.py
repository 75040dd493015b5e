"""End to end on the real stack: request_page_text -> Temporal -> worker -> fake LLM over HTTP ->
page updated; the job row and the Temporal history tell the same story."""

import json

import pytest

from ai.models import AiJob
from stories import services
from tests.conftest import FAKE_API_KEY
from tests.factories import PageFactory, StoryFactory, UserFactory
from tests.fakes.llm_server import Fault, Reply
from tests.temporal_harness import activity_started, activity_steps, local_call_failure

pytestmark = [pytest.mark.temporal, pytest.mark.django_db(transaction=True)]


def _story_with_blank_last_page():
    user = UserFactory()
    story = StoryFactory(owner=user, title="Moss and the Moon", description="A snail's quest.")
    PageFactory(story=story, content="Moss woke under a wet leaf.")
    blank = PageFactory(story=story, content="")
    return user, story, blank


def _history_events(stack, job):
    return json.loads(stack.temporal.history_json(job.workflow_id))["events"]


def test_blank_page_gets_generated_text_and_job_matches_history(stack):
    user, story, page = _story_with_blank_last_page()
    stack.llm.script(
        Reply(
            text="The moon rolled down the hill to meet Moss.",
            prompt_tokens=42,
            completion_tokens=11,
        )
    )

    job = services.request_page_text(page=page, user=user)
    job = stack.wait(job)

    page.refresh_from_db()
    assert job.status == AiJob.Status.SUCCEEDED, job.error
    assert page.content == "The moon rolled down the hill to meet Moss."
    assert job.output_text == page.content
    assert job.applied is True
    assert job.attempts == 1
    assert job.usage_tokens == 53
    assert job.prompt_tokens == 42
    assert job.cost_usd == 0
    assert job.workflow_id == f"ai-job-{job.pk}"
    assert job.run_id
    assert job.started_at and job.completed_at and job.queued_at
    assert job.previous_content == ""
    assert "Please write the next page" in job.rendered_prompt
    assert "Page 1: Moss woke under a wet leaf." in job.rendered_prompt

    # The model saw exactly the rendered prompt.
    (request,) = [r for r in stack.llm.requests if r.path.endswith("/chat/completions")]
    assert request.body["messages"][0]["content"] == job.rendered_prompt

    # The history names the same job and run, and holds the three steps.
    # The row turns succeeded inside the attach step; the run closes a moment later.
    result = stack.temporal.result(job.workflow_id)
    assert result == {"job_id": job.pk, "applied": True, "total_tokens": 53}
    events = _history_events(stack, job)
    started = events[0]["workflowExecutionStartedEventAttributes"]
    assert started["input"]["payloads"]
    assert events[0]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"
    assert activity_steps(events) == ["render_prompt", "call_llm", "attach_page_text"]
    description = stack.temporal.run(
        stack.temporal.client.get_workflow_handle(job.workflow_id).describe()
    )
    assert description.run_id == job.run_id
    assert description.search_attributes["AiJobId"] == [job.pk]
    assert description.search_attributes["AiJobStatus"] == ["succeeded"]

    # No secret in the row or the history.
    row = json.dumps(list(AiJob.objects.filter(pk=job.pk).values()), default=str)
    assert FAKE_API_KEY not in row
    assert FAKE_API_KEY not in stack.temporal.history_json(job.workflow_id)


def test_page_with_text_is_revised(stack):
    user, story, page = _story_with_blank_last_page()
    services.page_update_content(page=page, content="Moss was sad.")
    stack.llm.script(Reply(text="Moss felt a small, grey sadness, like rain on a shell."))

    job = stack.wait(services.request_page_text(page=page, user=user))

    page.refresh_from_db()
    assert job.status == AiJob.Status.SUCCEEDED
    assert job.previous_content == "Moss was sad."
    assert "Current page content to revise:\nMoss was sad." in job.rendered_prompt
    assert page.content == "Moss felt a small, grey sadness, like rain on a shell."


def test_two_503s_then_success_records_three_attempts(stack):
    user, story, page = _story_with_blank_last_page()
    stack.llm.script(Fault(503), Fault(503), Reply(text="Third time lucky."))

    job = stack.wait(services.request_page_text(page=page, user=user))

    page.refresh_from_db()
    assert job.status == AiJob.Status.SUCCEEDED, job.error
    assert job.attempts == 3
    assert page.content == "Third time lucky."
    events = _history_events(stack, job)
    # Attempt 1 was local (its failure is on its marker); 2 and 3 the activity's attempts.
    assert local_call_failure(events)["applicationFailureInfo"]["type"] == "server_error"
    (started,) = activity_started(events)
    assert started["attempt"] == 2
    assert started["lastFailure"]["applicationFailureInfo"]["type"] == "server_error"


def test_401_fails_after_one_attempt_and_keeps_the_page(stack):
    user, story, page = _story_with_blank_last_page()
    services.page_update_content(page=page, content="Keep me exactly.")
    stack.llm.script(Fault(401))

    job = stack.wait(services.request_page_text(page=page, user=user))

    page.refresh_from_db()
    assert job.status == AiJob.Status.FAILED
    assert job.attempts == 1
    assert page.content == "Keep me exactly."
    assert "credentials" in job.error.lower() or "key" in job.error.lower()
    assert FAKE_API_KEY not in job.error
    assert len(stack.llm.requests) == 1


def test_a_long_story_is_fitted_to_the_models_window(make_stack, llm_config):
    """500 pages through the real workflow: the rendered prompt fits a 4k window, with the
    title, the neighbours and a visible elision."""
    from dataclasses import replace

    stack = make_stack(replace(llm_config, context_tokens=4096))
    user = UserFactory()
    story = StoryFactory(owner=user, title="The Long Walk", description="Around the world.")
    for i in range(499):
        PageFactory(story=story, content=f"Step {i + 1}. " + "The tortoise kept walking. " * 10)
    blank = PageFactory(story=story, content="")
    stack.llm.script(Reply(text="At last the tortoise saw home."))

    job = stack.wait(services.request_page_text(page=blank, user=user))

    assert job.status == AiJob.Status.SUCCEEDED, job.error
    assert "The Long Walk" in job.rendered_prompt
    assert "pages left out" in job.rendered_prompt
    assert "Step 499." in job.rendered_prompt  # the page right before stays whole
    assert len(job.prompt_payload["existing_pages"]) == 499  # the audit keeps the whole story
    (request,) = [r for r in stack.llm.requests if r.path.endswith("/chat/completions")]
    from ai.adapters.litellm import count_tokens

    assert count_tokens(llm_config.model, request.body["messages"][0]["content"]) <= 4096 - 400
