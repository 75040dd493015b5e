"""Fault 1: the worker process is SIGKILLed while the model is answering.

The worker is the production entry point (`python -m temporal_worker`) in its own process,
configured only by environment variables, on this test's database. Nothing in it knows a test
is running: the kill is as real as an OOM kill or a lost machine.
"""

import json
import signal

import pytest

from ai.models import AiJob
from ai.workflows.types import StepTimeouts
from stories import services
from tests.conftest import FAKE_API_KEY
from tests.factories import PageFactory
from tests.fakes.llm_server import Fault, Hang, Reply
from tests.faults.conftest import completion_requests, wait_for
from tests.temporal_harness import activity_started, activity_steps, local_call_failure

pytestmark = [pytest.mark.temporal, pytest.mark.faults, pytest.mark.django_db(transaction=True)]

TEXT = "The lantern glowed all night, and Moss was not afraid of the dark."


def test_worker_sigkilled_during_the_first_attempt_is_replaced_and_attaches_once(
    drill, temporal, monkeypatch
):
    """The first model attempt runs as a local activity inside the workflow task: a dead worker
    is noticed when that task times out (10 s), and another worker runs the task again."""
    drill.settings.TEMPORAL_ADDRESS = temporal.address
    drill.llm.script(Hang(seconds=30), Reply(text=TEXT))
    first = drill.worker_process(temporal.address).start()

    page = PageFactory(content="")
    job = services.request_page_text(page=page, user=page.story.owner)

    # The model call is in flight on the first worker (the fake holds it open) ...
    wait_for(lambda: len(completion_requests(drill.llm)) == 1, 60, "the first model call")
    job.refresh_from_db()
    assert (job.status, job.attempts) == (AiJob.Status.RUNNING, 1)

    # ... when the worker dies without any chance to clean up.
    assert first.kill() == -signal.SIGKILL
    second = drill.worker_process(temporal.address).start()

    job = drill.wait(job, timeout=120)
    page.refresh_from_db()
    assert job.status == AiJob.Status.SUCCEEDED, job.error
    assert job.applied is True
    assert page.content == TEXT  # exactly the text, once
    assert job.output_text == TEXT
    assert job.attempts == 2  # two model calls, both counted
    assert len(completion_requests(drill.llm)) == 2

    # The history: the dead worker's task timed out; the second worker ran it again, and only
    # its steps were recorded (one render, one model call, ONE attach).
    assert temporal.result(job.workflow_id)["applied"] is True
    events = json.loads(temporal.history_json(job.workflow_id))["events"]
    assert [e["eventType"] for e in events].count("EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT") == 1
    assert activity_steps(events) == ["render_prompt", "call_llm", "attach_page_text"]
    last_task = [
        e["workflowTaskStartedEventAttributes"]
        for e in events
        if "workflowTaskStartedEventAttributes" in e
    ][-1]
    assert last_task["identity"].startswith(f"{second.process.pid}@")

    assert "text attached" in second.output
    assert FAKE_API_KEY not in first.output + second.output


def test_worker_sigkilled_during_a_retry_is_noticed_by_heartbeat_and_attaches_once(
    drill, temporal, monkeypatch
):
    """A retry runs as an ordinary activity that heartbeats: a dead worker is noticed by the
    heartbeat timeout, and the attempt after it runs on another worker."""
    # A short heartbeat timeout so the dead worker is noticed in seconds (production: 15 s).
    # The test process starts the workflow, so its StepTimeouts are the ones in the input.
    monkeypatch.setattr(
        "ai.queue.STEP_TIMEOUTS", StepTimeouts(llm_heartbeat_s=6.0, llm_start_to_close_s=60.0)
    )
    drill.settings.TEMPORAL_ADDRESS = temporal.address
    drill.llm.script(Fault(503), Hang(seconds=30), Reply(text=TEXT))
    first = drill.worker_process(temporal.address).start()

    page = PageFactory(content="")
    job = services.request_page_text(page=page, user=page.story.owner)

    # The first attempt failed (503); the retry is in flight on the first worker ...
    wait_for(lambda: len(completion_requests(drill.llm)) == 2, 60, "the retried model call")
    assert first.kill() == -signal.SIGKILL
    second = drill.worker_process(temporal.address).start()

    job = drill.wait(job, timeout=120)
    page.refresh_from_db()
    assert job.status == AiJob.Status.SUCCEEDED, job.error
    assert (job.applied, page.content, job.output_text) == (True, TEXT, TEXT)
    assert job.attempts == 3
    assert len(completion_requests(drill.llm)) == 3

    assert temporal.result(job.workflow_id)["applied"] is True
    events = json.loads(temporal.history_json(job.workflow_id))["events"]
    assert activity_steps(events) == ["render_prompt", "call_llm", "call_llm", "attach_page_text"]
    assert local_call_failure(events)["applicationFailureInfo"]["type"] == "server_error"
    (started,) = activity_started(events)
    assert started["attempt"] == 2
    # Activity attempt 1 ended by heartbeat timeout (the dead worker stopped heartbeating) ...
    assert started["lastFailure"]["timeoutFailureInfo"]["timeoutType"] == "TIMEOUT_TYPE_HEARTBEAT"
    # ... and attempt 2 ran on the new worker process.
    assert started["identity"].startswith(f"{second.process.pid}@")

    # Neither worker ever wrote the API key to its logs.
    assert "text attached" in second.output
    assert FAKE_API_KEY not in first.output + second.output
