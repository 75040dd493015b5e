"""Faults 2 and 3: the Temporal server goes away.

Each test runs its own dev server (`temporal server start-dev --db-filename <tmp>` on a fixed
port), so it can be killed and started again as the same server with the same state.
"""

import json
import signal
import threading
import time

import pytest
from django.core.management import call_command
from django.urls import reverse

from ai.models import AiJob
from ai.queue import starter
from ai.workflows.types import StepTimeouts
from stories import services
from tests.conftest import FAKE_API_KEY
from tests.factories import PageFactory
from tests.fakes.llm_server import Reply
from tests.faults.conftest import completion_requests, wait_for
from tests.temporal_harness import activity_steps

pytestmark = [pytest.mark.temporal, pytest.mark.faults, pytest.mark.django_db(transaction=True)]
HX = {"HTTP_HX_REQUEST": "true"}
TEXT = "Moss climbed the garden wall and saw the whole wide world."


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_dev_server_restarted_mid_run_the_same_run_completes(drill, llm_config, monkeypatch, sig):
    from temporal_worker.worker import WorkerOptions, build_worker

    monkeypatch.setattr(
        "ai.queue.STEP_TIMEOUTS", StepTimeouts(llm_heartbeat_s=6.0, llm_start_to_close_s=60.0)
    )
    server = drill.dev_server()
    drill.settings.TEMPORAL_ADDRESS = server.address
    temporal = drill.client_loop(server.address)
    temporal.start_worker(
        lambda client: build_worker(
            client,
            task_queue=drill.task_queue,
            llm=llm_config,
            options=WorkerOptions(graceful_shutdown_s=1.0),
        )
    )
    # The model holds its answer until the server is down (the fake's waits wait for this).
    answer = threading.Event()
    monkeypatch.setattr(drill.llm, "_sleep", lambda seconds: answer.wait(seconds))
    drill.llm.script(Reply(text=TEXT, latency=60))
    drill.llm.default = Reply(text=TEXT)  # should the attempt be retried after the outage

    page = PageFactory(content="")
    job = services.request_page_text(page=page, user=page.story.owner)
    wait_for(lambda: completion_requests(drill.llm), 30, "the model call")
    job.refresh_from_db()
    first_run = job.run_id
    assert job.status == AiJob.Status.RUNNING and first_run

    server.kill(sig)
    answer.set()

    # The worker has the answer and finishes the page without the server: the model call and
    # the attach step run inside the workflow task it holds, and the job row is what the
    # author's editor reads. The task's completion cannot reach Temporal meanwhile.
    def attached() -> bool:
        page.refresh_from_db()
        job.refresh_from_db()
        return job.status == AiJob.Status.SUCCEEDED and page.content == TEXT

    wait_for(attached, 30, "the text on the page")
    server.start()  # same port, same state file

    # The same run completes: the task is run again on the server's word, and each step finds
    # its work done in the job row (the prompt and the answer as recorded, the text attached),
    # so the model is not called again and the page changes exactly once.
    assert temporal.result(job.workflow_id, timeout=90)["applied"] is True
    job.refresh_from_db()
    page.refresh_from_db()
    assert (job.status, page.content, job.output_text) == (AiJob.Status.SUCCEEDED, TEXT, TEXT)
    assert job.run_id == first_run  # the run survived; nothing was started over
    assert len(completion_requests(drill.llm)) == job.attempts == 1
    history = temporal.history(job.workflow_id)
    assert activity_steps(history["events"]) == ["render_prompt", "call_llm", "attach_page_text"]
    assert history["events"][-1]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"

    # The site's own client reconnected too: the next click starts its workflow at once.
    next_page = PageFactory(story=page.story, content="")
    again = services.request_page_text(page=next_page, user=page.story.owner)
    assert starter.wait(timeout=10)  # the start runs after the request returned
    again.refresh_from_db()
    assert again.queued_at is not None and again.queue_error == ""
    assert drill.wait(again).status == AiJob.Status.SUCCEEDED


def test_temporal_down_when_the_author_clicks_the_workers_reconciler_starts_each_job_once(
    drill, author_client, story, settings
):
    server = drill.dev_server()
    settings.TEMPORAL_ADDRESS = server.address
    settings.TEMPORAL_START_TIMEOUT_S = 2.0
    worker = drill.worker_process(  # at DEBUG: the libraries' request logging is on too
        server.address,
        args=["manage.py", "run_worker", "--reconcile-every", "1"],
        LOG_LEVEL="DEBUG",
    ).start()
    pages = [PageFactory(story=story, content="") for _ in range(3)]

    server.kill(signal.SIGKILL)
    for page in pages:
        started = time.monotonic()
        response = author_client.post(reverse("stories:page_generate", args=[page.pk]), **HX)
        assert response.status_code == 200
        assert time.monotonic() - started < 10  # the click does not hang on Temporal
        assert "Queued — waiting for the AI worker" in response.content.decode()
    assert starter.wait(timeout=30)  # the starts the clicks handed over have given up
    jobs = list(AiJob.objects.order_by("pk"))
    assert len(jobs) == 3
    for job in jobs:
        assert job.status == AiJob.Status.PENDING
        assert job.queued_at is None and not job.run_id
        assert "Temporal" in job.queue_error

    server.start()
    for job in jobs:  # nobody runs a command: the worker's own timer picks them up
        drill.wait(job, timeout=90)
    for job, page in zip(jobs, pages, strict=True):
        page.refresh_from_db()
        assert job.status == AiJob.Status.SUCCEEDED, job.error
        assert job.queue_error == ""
        assert job.attempts == 1
        assert page.content == job.output_text
    # (The log line follows the start, so it may trail the run itself by a moment.)
    wait_for(lambda: worker.output.count("started stranded job") == 3, 15, "the reconciler's log")
    assert len(completion_requests(drill.llm)) == 3

    # A later round (or an operator's command) finds nothing left to start.
    call_command("reconcile_ai_jobs", older_than=0)
    assert len(completion_requests(drill.llm)) == 3
    assert "HTTP Request: POST" in worker.output  # the model calls were logged ...
    assert FAKE_API_KEY not in worker.output  # ... without the key


def test_reconcilers_racing_each_other_start_every_stranded_job_exactly_once(
    make_stack, settings, temporal, story
):
    stack = make_stack()
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"  # Temporal is unreachable for these clicks
    settings.TEMPORAL_START_TIMEOUT_S = 2.0
    pages = [PageFactory(story=story, content="") for _ in range(6)]
    jobs = [services.request_page_text(page=p, user=story.owner) for p in pages]
    assert starter.wait(timeout=30)
    assert AiJob.objects.filter(status="pending", queued_at__isnull=True).count() == 6

    settings.TEMPORAL_ADDRESS = temporal.address  # back; four reconcilers at once
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def reconcile() -> None:
        from django.db import connection

        try:
            barrier.wait(timeout=30)
            call_command("reconcile_ai_jobs", older_than=0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reconcile) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors

    for job in jobs:
        stack.wait(job)
        assert job.status == AiJob.Status.SUCCEEDED, job.error
        assert job.attempts == 1
    assert len(completion_requests(stack.llm)) == 6  # no job ran twice

    async def runs(job_id: int) -> list[str]:
        return [wf.run_id async for wf in temporal.client.list_workflows(f"AiJobId = {job_id}")]

    for job in jobs:  # one run per job, and the row names it
        found = wait_for(lambda job=job: temporal.run(runs(job.pk)), 15, "visibility")
        assert found == [job.run_id]
    assert temporal.result(jobs[0].workflow_id)["applied"] is True
    history = json.loads(temporal.history_json(jobs[0].workflow_id))
    assert activity_steps(history["events"]) == ["render_prompt", "call_llm", "attach_page_text"]
