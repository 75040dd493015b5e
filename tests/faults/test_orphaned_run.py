"""An operator terminates a run (Temporal UI or CLI) while the model is writing.

Terminating skips the workflow's own clean-up, so the job row stays `running`, and a running
job blocks its page (one active job per page). Stop in the editor must still finish it: Temporal
accepts a cancel request for a closed run without error, so Stop checks whether the run is
still open and, if not, marks the job itself. The page can then be generated again.
"""

import pytest
from django.urls import reverse

from ai.models import AiJob
from stories import services
from tests.factories import PageFactory
from tests.fakes.llm_server import Hang, Reply
from tests.faults.conftest import completion_requests, wait_for

pytestmark = [pytest.mark.temporal, pytest.mark.django_db(transaction=True)]
HX = {"HTTP_HX_REQUEST": "true"}


def test_stop_finishes_a_job_whose_run_was_terminated_and_frees_the_page(
    stack, author_client, story
):
    page = PageFactory(story=story, content="Keep me.")
    stack.llm.script(Hang(seconds=30))
    job = services.request_page_text(page=page, user=story.owner)
    wait_for(lambda: completion_requests(stack.llm), 30, "the model call")
    handle = stack.temporal.client.get_workflow_handle(job.workflow_id)
    stack.temporal.run(handle.terminate(reason="operator: stuck run"))
    job.refresh_from_db()
    assert job.status == AiJob.Status.RUNNING  # nothing else will ever finish this row

    response = author_client.post(reverse("stories:page_stop", args=[page.pk, job.pk]), **HX)
    assert response.status_code == 200
    job.refresh_from_db()
    page.refresh_from_db()
    assert job.status == AiJob.Status.CANCELLED
    assert "no longer running" in job.error
    assert page.content == "Keep me."

    stack.llm.script(Reply(text="A fresh page."))
    again = stack.wait(services.request_page_text(page=page, user=story.owner))
    assert again.pk != job.pk
    assert again.status == AiJob.Status.SUCCEEDED, again.error
