"""Operator actions: the Temporal UI link, retrying a failed job, cancelling an active one (on
the real dev server for the workflow paths)."""

from __future__ import annotations

import functools
import time

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError

from ai import operations, queue
from ai.models import AiJob
from ai.services import JobError
from ai.temporal import bridge
from ai.workflows.types import StepTimeouts
from stories import services as story_services
from tests.factories import PageFactory, UserFactory, make_ai_job
from tests.fakes.llm_server import Fault, Hang, Reply

Status = AiJob.Status


def make_job(page=None, **fields) -> AiJob:
    return make_ai_job(
        page,
        **{"status": Status.FAILED, "error": "The AI provider rejected our credentials.", **fields},
    )


# -- the Temporal UI link


def test_temporal_ui_url_opens_the_run_history(settings):
    settings.TEMPORAL_UI_URL = "https://temporal.example.com/ui/"
    settings.TEMPORAL_NAMESPACE = "story sprout/prod"
    job = AiJob(workflow_id="ai-job-42", run_id="01a2-run/1")

    assert operations.temporal_ui_url(job) == (
        "https://temporal.example.com/ui/namespaces/story%20sprout%2Fprod"
        "/workflows/ai-job-42/01a2-run%2F1/history"
    )


def test_temporal_ui_url_without_a_run_opens_the_latest(settings):
    settings.TEMPORAL_UI_URL = "http://localhost:8233"
    settings.TEMPORAL_NAMESPACE = "default"

    assert operations.temporal_ui_url(AiJob(workflow_id="ai-job-7")) == (
        "http://localhost:8233/namespaces/default/workflows/ai-job-7"
    )
    assert operations.temporal_ui_url(AiJob()) == ""


# -- retry


@pytest.mark.django_db
def test_retry_creates_a_linked_pending_job_and_queues_it_on_commit(
    django_capture_on_commit_callbacks,
):
    old = make_job(status=Status.FAILED, apply_mode=AiJob.ApplyMode.SUGGEST)
    admin = UserFactory()

    with django_capture_on_commit_callbacks() as callbacks:
        new = operations.retry_job(old, by=admin)

    assert new.pk != old.pk
    assert new.retry_of == old
    assert new.status == Status.PENDING
    assert new.target == old.target
    assert new.prompt_payload == old.prompt_payload
    assert new.previous_content == old.previous_content
    assert new.labels == old.labels
    assert new.attach_activity == old.attach_activity
    assert new.apply_mode == AiJob.ApplyMode.SUGGEST
    assert new.requested_by == admin
    assert new.workflow_id == f"ai-job-{new.pk}"
    assert [(c.func, c.args) for c in callbacks if isinstance(c, functools.partial)] == [
        (queue.queue_ai_job, (new.pk,))
    ]
    assert list(old.retries.all()) == [new]


@pytest.mark.django_db
def test_retry_of_a_cancelled_job_is_allowed():
    old = make_job(status=Status.CANCELLED)
    assert operations.retry_job(old, by=None).retry_of == old


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Status.PENDING, Status.RUNNING, Status.SUCCEEDED])
def test_retry_refuses_jobs_that_did_not_fail(status):
    job = make_job(status=status)
    with pytest.raises(JobError, match="only failed or cancelled"):
        operations.retry_job(job, by=None)
    assert AiJob.objects.count() == 1


@pytest.mark.django_db
def test_retry_refuses_when_the_target_has_an_active_job():
    page = PageFactory()
    old = make_job(page, status=Status.FAILED)
    running = make_job(page, status=Status.RUNNING)

    with pytest.raises(JobError, match=f"already has an active job \\({running.pk}\\)"):
        operations.retry_job(old, by=None)
    assert AiJob.objects.count() == 2


@pytest.mark.django_db
def test_retry_refuses_a_job_already_retried_and_a_deleted_target():
    old = make_job(status=Status.FAILED)
    new = operations.retry_job(old, by=None)
    AiJob.objects.filter(pk=new.pk).update(status=Status.FAILED)
    with pytest.raises(JobError, match=f"already retried as job {new.pk}"):
        operations.retry_job(old, by=None)

    gone = make_job(status=Status.FAILED)
    gone.target.delete()
    with pytest.raises(JobError, match="no longer exists"):
        operations.retry_job(AiJob.objects.get(pk=gone.pk), by=None)


# -- cancel without a workflow


@pytest.mark.django_db
def test_cancel_of_a_job_whose_workflow_never_started_marks_it_directly():
    job = make_job(status=Status.PENDING, queue_error="Temporal unreachable")

    message = operations.cancel_job(job)

    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    assert job.completed_at is not None
    assert job.cancel_requested_at is not None
    assert "had not started" in message


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED])
def test_cancel_refuses_finished_jobs(status):
    job = make_job(status=status)
    with pytest.raises(JobError, match="already"):
        operations.cancel_job(job)
    job.refresh_from_db()
    assert job.status == status


@pytest.mark.django_db
def test_cancel_with_temporal_down_records_the_stop_and_says_so(settings):
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"  # nothing listens on port 1
    settings.TEMPORAL_START_TIMEOUT_S = 2.0
    job = make_job(status=Status.RUNNING, run_id="run-1")
    try:
        with pytest.raises(JobError, match="not stopped yet; the stop is recorded"):
            operations.cancel_job(job)
    finally:
        bridge.forget_client()
    job.refresh_from_db()
    assert job.status == Status.RUNNING
    assert job.cancel_requested_at is not None


# -- on the real dev server


@pytest.mark.temporal
@pytest.mark.django_db
def test_cancel_of_a_job_whose_workflow_is_gone_marks_it(temporal, settings):
    settings.TEMPORAL_ADDRESS = temporal.address
    job = make_job(status=Status.RUNNING, run_id="no-such-run")
    job.workflow_id = "ai-job-never-started-here"
    job.save(update_fields=["workflow_id"])

    message = operations.cancel_job(job)

    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    assert "no longer running" in message


def _wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


@pytest.mark.temporal
def test_cancel_of_a_running_job_cancels_its_workflow(make_stack, monkeypatch):
    # Short heartbeats, so the cancellation also reaches the hanging model call promptly.
    monkeypatch.setattr(queue, "STEP_TIMEOUTS", StepTimeouts(llm_heartbeat_s=2.0))
    stack = make_stack()
    stack.llm.script(Hang(10))
    page = PageFactory(content="Keep me.")
    job = story_services.request_page_text(page=page, user=page.story.owner)

    def model_called() -> bool:
        job.refresh_from_db()
        return job.status == Status.RUNNING and bool(stack.llm.requests)

    _wait_until(model_called)
    message = operations.cancel_job(job)
    assert "requested" in message

    job = stack.wait(job)
    assert job.status == Status.CANCELLED
    assert job.error == "Generation was stopped."
    page.refresh_from_db()
    assert page.content == "Keep me."
    handle = stack.temporal.client.get_workflow_handle(job.workflow_id)
    with pytest.raises(WorkflowFailureError) as failure:
        stack.temporal.run(handle.result(), timeout=30)
    assert isinstance(failure.value.cause, CancelledError)
    assert stack.temporal.run(handle.describe()).status == WorkflowExecutionStatus.CANCELED


@pytest.mark.temporal
def test_a_failed_job_retried_on_the_real_stack_succeeds(make_stack):
    stack = make_stack()
    stack.llm.script(Fault(401), Reply(text="The moon rolled down the hill to meet Moss."))
    page = PageFactory(content="")
    failed = stack.wait(story_services.request_page_text(page=page, user=page.story.owner))
    assert failed.status == Status.FAILED

    retried = stack.wait(operations.retry_job(failed, by=UserFactory()))

    assert retried.status == Status.SUCCEEDED, retried.error
    assert retried.retry_of_id == failed.pk
    page.refresh_from_db()
    assert page.content == "The moon rolled down the hill to meet Moss."
    handle = stack.temporal.client.get_workflow_handle(retried.workflow_id)
    stack.temporal.run(handle.result(), timeout=30)
    assert stack.temporal.run(handle.describe()).status == WorkflowExecutionStatus.COMPLETED
