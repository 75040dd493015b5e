"""Fault 7: the database write in the attach step fails.

The first attempt writes the page AND marks the job succeeded, then the database fails before
the commit (`OperationalError`, as from a dropped connection or a failed commit). Everything in
that transaction is rolled back; Temporal retries the step; the retry attaches the text. A
sampler reads the job's status and the page's text in ONE statement the whole time: no reader
ever sees a succeeded job on a page without its text.
"""

import asyncio
import threading
import time

import pytest
from django.db import OperationalError, connection

from ai import services as ai_services
from ai.models import AiJob
from stories import services
from tests.factories import PageFactory
from tests.fakes.llm_server import Reply
from tests.faults.conftest import completion_requests

pytestmark = [pytest.mark.temporal, pytest.mark.django_db(transaction=True)]
TEXT = "Under the mushroom, Moss found a door no bigger than a button."


class Sampler(threading.Thread):
    """Reads (job status, page text) atomically, as fast as it can, until stopped."""

    def __init__(self, job_id: int, page_id: int) -> None:
        super().__init__(daemon=True)
        self.job_id, self.page_id = job_id, page_id
        self.samples: list[tuple[str, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        sql = (
            "SELECT j.status, p.content FROM ai_aijob j CROSS JOIN stories_page p "
            "WHERE j.id = %s AND p.id = %s"
        )
        try:
            while not self.stop.is_set():
                with connection.cursor() as cursor:
                    cursor.execute(sql, [self.job_id, self.page_id])
                    self.samples.append(cursor.fetchone())
                time.sleep(0.002)
        finally:
            connection.close()


@pytest.mark.parametrize("local_steps", [True, False], ids=["local-activity", "activity"])
def test_a_failed_attach_write_is_rolled_back_and_retried(stack, monkeypatch, local_steps):
    monkeypatch.setattr("ai.queue.LOCAL_STEPS", local_steps)
    real = ai_services.mark_succeeded
    calls: list[int] = []
    retrying, checked = threading.Event(), threading.Event()

    def failing_once(job, **kwargs):
        calls.append(job.pk)
        if len(calls) == 1:
            real(job, **kwargs)  # the page text and "succeeded", both inside the transaction ...
            raise OperationalError("simulated: server closed the connection unexpectedly")
        retrying.set()  # the retry, in its own transaction: hold it until the test has looked
        assert checked.wait(timeout=30)
        return real(job, **kwargs)

    monkeypatch.setattr("ai.services.mark_succeeded", failing_once)
    page = PageFactory(content="")
    stack.llm.script(Reply(text=TEXT))

    job = services.request_page_text(page=page, user=page.story.owner)
    sampler = Sampler(job.pk, page.pk)
    sampler.start()
    try:
        assert retrying.wait(timeout=30), "the attach step was not retried"
        # Between the failed attempt and the retry's commit: rolled back, all of it.
        job.refresh_from_db()
        page.refresh_from_db()
        assert job.status == AiJob.Status.RUNNING
        assert job.applied is None and job.completed_at is None
        assert page.content == ""
        checked.set()
        job = stack.wait(job)
    finally:
        checked.set()
        sampler.stop.set()
        sampler.join(timeout=10)

    page.refresh_from_db()
    assert job.status == AiJob.Status.SUCCEEDED, job.error
    assert job.applied is True
    assert page.content == TEXT
    assert len(calls) == 2  # failed once, retried once
    assert job.attempts == 1 and len(completion_requests(stack.llm)) == 1  # no new model call
    assert sampler.samples, "the sampler never read"
    lying = [s for s in sampler.samples if s[0] == "succeeded" and s[1] != TEXT]
    assert not lying, f"a reader saw a succeeded job without its text: {lying[:3]}"


def test_an_attach_step_run_twice_attaches_once(stack):
    """A retry after a commit that was not reported (the worker died right after it) finds the
    job done and changes nothing."""
    from temporalio.testing import ActivityEnvironment

    from ai.workflows.types import AttachInput
    from stories.activities import attach_page_text

    page = PageFactory(content="")
    stack.llm.script(Reply(text=TEXT))
    job = stack.wait(services.request_page_text(page=page, user=page.story.owner))
    page.refresh_from_db()
    assert page.content == TEXT

    again = ActivityEnvironment().run(attach_page_text, AttachInput(job_id=job.pk, text="other"))
    assert again.note == "already attached"
    assert again.applied is True
    page.refresh_from_db()
    assert page.content == TEXT


def test_the_whole_task_run_again_after_the_job_finished_changes_nothing(stack, llm_config):
    """The three steps share one workflow task; when its completion never reached Temporal (the
    server was down), the task runs again from the start. Render and the model call then answer
    from the job row, as the first try did: no transition refused, no second model call."""
    from temporalio.testing import ActivityEnvironment

    from ai.activities import AiActivities
    from ai.workflows.types import LlmCall

    page = PageFactory(content="")
    stack.llm.script(Reply(text=TEXT))
    job = stack.wait(services.request_page_text(page=page, user=page.story.owner))
    requests = len(completion_requests(stack.llm))
    steps = AiActivities(llm_config)
    env = ActivityEnvironment()

    spec = env.run(steps.render_prompt, job.pk)
    assert (spec.prompt, spec.template_key) == (job.rendered_prompt, job.template_key)
    call = LlmCall(job_id=job.pk, prompt=spec.prompt, family="chat")
    answer = asyncio.run(env.run(steps.call_llm, call))
    assert (answer.text, answer.total_tokens) == (TEXT, job.usage_tokens)

    assert len(completion_requests(stack.llm)) == requests  # the model was not asked again
    job.refresh_from_db()
    page.refresh_from_db()
    assert (job.status, job.attempts, page.content) == (AiJob.Status.SUCCEEDED, 1, TEXT)
