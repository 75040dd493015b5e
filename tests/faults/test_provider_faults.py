"""Fault 4: the model provider misbehaves, over real HTTP (the fake OpenAI-compatible server),
through LiteLLM, with Temporal owning every retry.

Transient faults (429 + Retry-After, 500, 503, a reset connection, a read timeout, a reply that
is not a completion) are retried with backoff and succeed; permanent ones (401, 403, 400,
context window, content policy, no quota) fail at once with a sentence an author can read.
"""

import dataclasses
import json
import random
import threading
import time

import pytest
from django.test import Client
from django.urls import reverse

from ai.activities import LlmConfig
from ai.models import AiJob
from stories import services
from tests.conftest import FAKE_API_KEY
from tests.factories import PageFactory, StoryFactory, UserFactory
from tests.fakes.llm_server import DEFAULT_TEXT, FakeLLMServer, Fault, Hang, Malformed, Reply, Reset
from tests.faults.conftest import completion_requests
from tests.temporal_harness import activity_started, activity_steps, local_call_failure

pytestmark = [pytest.mark.temporal, pytest.mark.django_db(transaction=True)]
TEXT = "The fox carried the lantern home through the snow."


def _history(stack, job) -> tuple[dict | None, list[dict]]:
    """The failure of the first (local) model attempt, and the started events of the ordinary
    activity attempts after it (Temporal keeps one, for the last attempt)."""
    stack.temporal.result(job.workflow_id)  # the run is complete: its history is final
    events = json.loads(stack.temporal.history_json(job.workflow_id))["events"]
    started = activity_started(events)
    return local_call_failure(events), started


@pytest.fixture
def timed_requests(fake_llm, monkeypatch) -> list[float]:
    """When each model request arrived (monotonic seconds)."""
    times: list[float] = []
    record = fake_llm._record

    def timed(request):
        if request.path.endswith("completions"):
            times.append(time.monotonic())
        record(request)

    monkeypatch.setattr(fake_llm, "_record", timed)
    return times


@pytest.mark.parametrize(
    ("fault", "kind", "stream"),
    [
        pytest.param(Fault(500), "server_error", True, id="500"),
        pytest.param(Fault(503), "server_error", True, id="503"),
        pytest.param(Fault(502), "server_error", False, id="502-no-stream"),
        pytest.param(Reset(), "connection", True, id="connection-reset"),
        pytest.param(Hang(seconds=4), "timeout", True, id="read-timeout"),
        pytest.param(Malformed(), "malformed", False, id="malformed-json"),
        pytest.param(
            Malformed(body='{"id": "x", "object": "?"}'), "malformed", False, id="no-choices"
        ),
        pytest.param(Malformed(), None, True, id="malformed-stream"),
    ],
)
def test_transient_fault_is_retried_and_succeeds(make_stack, llm_config, fault, kind, stream):
    # A 2 s read timeout so the hang is noticed quickly (production: AI_REQUEST_TIMEOUT_S=60).
    stack = make_stack(dataclasses.replace(llm_config, timeout_s=2.0, stream=stream))
    page = PageFactory(content="")
    stack.llm.script(fault, Reply(text=TEXT))

    job = stack.wait(services.request_page_text(page=page, user=page.story.owner))

    page.refresh_from_db()
    assert job.status == AiJob.Status.SUCCEEDED, job.error
    assert job.attempts == 2
    assert page.content == TEXT
    assert len(completion_requests(stack.llm)) == 2
    # The first attempt (local) failed with the fault; the retry is an ordinary activity.
    first, (started,) = _history(stack, job)
    assert started["attempt"] == 1
    assert "lastFailure" not in started
    failure = first["applicationFailureInfo"]
    assert not failure.get("nonRetryable")
    if kind is not None:
        assert failure["type"] == kind
    else:  # a 200 whose event stream holds no completion: unreadable or empty, both retried
        assert failure["type"] in {"malformed", "empty", "server_error"}


def test_429_honours_retry_after(make_stack, timed_requests):
    stack = make_stack()
    page = PageFactory(content="")
    stack.llm.script(Fault.rate_limited(retry_after=3), Reply(text=TEXT))

    job = stack.wait(services.request_page_text(page=page, user=page.story.owner))

    page.refresh_from_db()
    assert job.status == AiJob.Status.SUCCEEDED, job.error
    assert (job.attempts, page.content) == (2, TEXT)
    assert len(timed_requests) == 2
    assert timed_requests[1] - timed_requests[0] >= 2.9  # not the 1 s default backoff
    first, (started,) = _history(stack, job)
    failure = first["applicationFailureInfo"]
    assert failure["type"] == "rate_limited"
    assert failure["nextRetryDelay"] == "3s"
    assert started["attempt"] == 1


@pytest.mark.parametrize(
    ("fault", "kind", "says"),
    [
        pytest.param(
            Fault(401, f"Incorrect API key provided: {FAKE_API_KEY}."),
            "auth",
            "rejected our credentials",
            id="401",
        ),
        pytest.param(Fault(403), "permission", "not allowed to use this model", id="403"),
        pytest.param(Fault(400), "bad_request", "rejected the request as invalid", id="400"),
        pytest.param(Fault.context_window(), "context_window", "too long", id="context-window"),
        pytest.param(Fault.content_policy(), "content_policy", "content policy", id="policy"),
        pytest.param(
            Fault(429, "You exceeded your current quota.", code="insufficient_quota"),
            "quota_exceeded",
            "run out of credit",
            id="429-no-quota",
        ),
    ],
)
def test_permanent_fault_fails_at_once_with_a_clear_message(make_stack, fault, kind, says):
    stack = make_stack()
    page = PageFactory(content="Keep me exactly.")
    stack.llm.script(fault, Reply(text="never used"))

    job = stack.wait(services.request_page_text(page=page, user=page.story.owner))

    page.refresh_from_db()
    assert job.status == AiJob.Status.FAILED
    assert job.attempts == 1
    assert len(completion_requests(stack.llm)) == 1  # no retry at all
    assert job.error_kind == kind
    assert says in job.error
    assert page.content == "Keep me exactly."
    assert FAKE_API_KEY not in json.dumps(list(AiJob.objects.values()), default=str)

    # The author is told, in the editor, and keeps their text.
    author = Client()
    author.force_login(page.story.owner)
    response = author.get(
        reverse("stories:page_job", args=[page.pk, job.pk]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 286  # htmx: stop polling
    assert says in json.loads(response["HX-Trigger"])["notify"]["message"]
    assert "Keep me exactly." in response.content.decode()


@pytest.mark.faults
def test_fifty_jobs_at_a_30_percent_fault_rate_all_succeed_once(make_stack, llm_config):
    """50 jobs against a provider failing 30% of requests (429 with Retry-After, 500, 503,
    connection reset, picked at random with a fixed seed): every job ends succeeded, its attempts
    are recorded, and every page got its text from exactly one attach."""
    with FakeLLMServer(fault_rate=0.3, seed=20240601) as flaky:
        stack = make_stack(dataclasses.replace(llm_config, api_base=flaky.base_url))
        user = UserFactory()
        stories = [StoryFactory(owner=user) for _ in range(5)]
        pages = [PageFactory(story=stories[i % 5], content="") for i in range(50)]
        random.Random(1).shuffle(pages)

        jobs = [services.request_page_text(page=p, user=user) for p in pages]
        assert len({j.pk for j in jobs}) == 50
        for job in jobs:
            stack.wait(job, timeout=150)
        requests = completion_requests(flaky)

    statuses = {j.status for j in jobs}
    assert statuses == {AiJob.Status.SUCCEEDED}, [(j.pk, j.status, j.error) for j in jobs]
    attempts = [j.attempts for j in jobs]
    assert all(a >= 1 for a in attempts)
    assert sum(attempts) == len(requests)  # every model request is one recorded attempt
    assert sum(a - 1 for a in attempts) >= 5  # faults happened, and were retried through
    for page in pages:
        page.refresh_from_db()
        assert page.content == DEFAULT_TEXT  # the text once, not twice, not missing

    # One attach per run (a retried attach step would still be one marker: it is one step);
    # the model call is its local first attempt, then one activity (with its retries) if that
    # attempt failed. Fifty jobs at once can hold a workflow task past its timeout (the local
    # first attempt runs inside it); the server then hands the task out again and the local
    # attempt runs again: counted in `attempts` and in the requests above, but no marker of its
    # own. Such runs show the timeout in their history.
    errors: list[str] = []

    def check(chunk: list[AiJob]) -> None:
        for job in chunk:
            stack.temporal.result(job.workflow_id)
            events = json.loads(stack.temporal.history_json(job.workflow_id))["events"]
            steps = activity_steps(events)
            calls = steps.count("call_llm")
            rerun = any(e["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT" for e in events)
            shape = calls == (1 if job.attempts == 1 else 2) or (
                rerun and 1 <= calls <= min(2, job.attempts)
            )
            if steps.count("attach_page_text") != 1 or not shape:
                errors.append(f"{job.workflow_id} ({job.attempts} attempts): {steps}")

    threads = [threading.Thread(target=check, args=(jobs[i::5],)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors


def test_the_model_configuration_never_shows_the_key_in_its_repr():
    config = LlmConfig(model="m", api_base=None, api_key=FAKE_API_KEY, timeout_s=1)
    assert config.api_key == FAKE_API_KEY
    assert FAKE_API_KEY not in repr(config)
