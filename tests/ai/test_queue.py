"""Starting workflows for jobs: on the real dev server, and with Temporal unreachable."""

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from ai.models import AiJob
from ai.queue import queue_ai_job, starter
from ai.temporal import bridge
from stories import services
from tests.factories import PageFactory
from tests.faults.conftest import database_url

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.temporal, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def temporal_down(settings):
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"  # nothing listens on port 1
    settings.TEMPORAL_START_TIMEOUT_S = 2.0
    yield
    bridge.forget_client()


def test_temporal_unreachable_keeps_the_job_queued_and_the_request_succeeds(temporal_down):
    page = PageFactory(content="")
    started = time.monotonic()
    job = services.request_page_text(page=page, user=page.story.owner)
    elapsed = time.monotonic() - started
    assert starter.wait(timeout=10)
    job.refresh_from_db()
    assert job.status == AiJob.Status.PENDING
    assert job.queued_at is None
    assert "Temporal" in job.queue_error
    assert elapsed < 10


def test_reconciler_starts_stranded_jobs_once(make_stack, settings, temporal):
    stack = make_stack()
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"  # Temporal is down when the author clicks
    settings.TEMPORAL_START_TIMEOUT_S = 2.0
    page = PageFactory(content="")
    job = services.request_page_text(page=page, user=page.story.owner)
    assert starter.wait(timeout=10)
    job.refresh_from_db()
    assert job.queued_at is None
    assert job.status == AiJob.Status.PENDING

    settings.TEMPORAL_ADDRESS = temporal.address  # ... and back
    call_command("reconcile_ai_jobs", older_than=0)
    call_command("reconcile_ai_jobs", older_than=0)  # a second round finds nothing to start
    job = stack.wait(job)
    assert job.status == AiJob.Status.SUCCEEDED
    assert job.queue_error == ""
    assert len([r for r in stack.llm.requests if "completions" in r.path]) == 1
    desc = stack.temporal.run(stack.temporal.client.get_workflow_handle(job.workflow_id).describe())
    assert desc.run_id == job.run_id


def test_queueing_twice_never_starts_twice(make_stack):
    stack = make_stack()
    page = PageFactory(content="")
    job = services.request_page_text(page=page, user=page.story.owner)
    assert queue_ai_job(job.pk) in (True, False)  # already started: accepted or already done
    job = stack.wait(job)
    assert job.status == AiJob.Status.SUCCEEDED
    assert job.attempts == 1
    assert len([r for r in stack.llm.requests if "completions" in r.path]) == 1


def test_search_attributes_name_the_job_story_and_page(make_stack):
    stack = make_stack()
    page = PageFactory(content="")
    job = stack.wait(services.request_page_text(page=page, user=page.story.owner))

    async def find():
        query = f"AiJobId = {job.pk} AND StoryId = {page.story_id} AND PageId = {page.pk}"
        return [wf.id async for wf in stack.temporal.client.list_workflows(query)]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # visibility is eventually consistent
        if stack.temporal.run(find()) == [job.workflow_id]:
            break
        time.sleep(0.2)
    assert stack.temporal.run(find()) == [job.workflow_id]


def test_the_request_does_not_wait_for_the_start(monkeypatch):
    """The click returns while Temporal is still being asked; the start is recorded after."""
    entered, release = threading.Event(), threading.Event()

    async def no_client() -> None:
        return None

    async def held_start(client: object, job: AiJob) -> str:
        entered.set()
        await asyncio.to_thread(release.wait, 10)
        return "run-after-the-click"

    monkeypatch.setattr(bridge, "client", no_client)
    monkeypatch.setattr("ai.queue.start_job_workflow", held_start)
    page = PageFactory(content="")
    job = services.request_page_text(page=page, user=page.story.owner)
    assert entered.wait(timeout=10)  # the start is under way, and the request has returned
    job.refresh_from_db()
    assert (job.status, job.queued_at, job.run_id) == (AiJob.Status.PENDING, None, "")

    release.set()
    assert starter.wait(timeout=10)
    job.refresh_from_db()
    assert job.queued_at is not None
    assert job.run_id == "run-after-the-click"


def test_a_job_gone_before_its_start_is_not_started():
    assert queue_ai_job(10**9) is False


def test_a_process_that_exits_right_after_a_click_still_runs_its_start():
    """An atexit hook waits for the starts in flight: a command that requests a page and exits
    at once does not drop the start it handed over (here the start fails, and records why)."""
    page = PageFactory(content="")
    code = (
        "import django\n"
        "django.setup()\n"
        "from stories import services\n"
        "from stories.models import Page\n"
        f"page = Page.objects.get(pk={page.pk})\n"
        "services.request_page_text(page=page, user=page.story.owner)\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url(),
        "TEMPORAL_ADDRESS": "127.0.0.1:1",  # nothing listens: the start fails at once
        "TEMPORAL_START_TIMEOUT_S": "2",
    }
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60, cwd=ROOT)
    job = AiJob.objects.get(target_object_id=page.pk)
    assert job.status == AiJob.Status.PENDING
    assert "Temporal" in job.queue_error
