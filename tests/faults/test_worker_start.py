"""The production worker (`python -m temporal_worker`) pays a first job's one-off costs before it
polls, so the first click after a deploy is not the slow one. (A warm-up that fails is logged
and the worker goes on: tests/ai/test_warm_up.py.)"""

import pytest

from ai.models import AiJob
from stories import services
from tests.factories import PageFactory
from tests.fakes.llm_server import Reply
from tests.faults.conftest import completion_requests

pytestmark = [pytest.mark.temporal, pytest.mark.faults, pytest.mark.django_db(transaction=True)]

TEXT = "Moss counted the stars until the owl said goodnight."


def test_the_worker_warms_up_before_it_polls_and_calls_no_model(drill, temporal):
    drill.settings.TEMPORAL_ADDRESS = temporal.address
    drill.llm.script(Reply(text=TEXT))
    worker = drill.worker_process(temporal.address).start()

    log = worker.output
    assert "warmed up in" in log
    assert log.index("warmed up in") < log.index("worker started on")
    assert completion_requests(drill.llm) == []  # the rehearsal never reached the model

    page = PageFactory(content="")
    job = drill.wait(services.request_page_text(page=page, user=page.story.owner))
    page.refresh_from_db()
    assert job.status == AiJob.Status.SUCCEEDED, job.error
    assert page.content == TEXT
    assert len(completion_requests(drill.llm)) == 1
