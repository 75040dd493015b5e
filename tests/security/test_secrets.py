"""No secret lands anywhere but the worker's environment: not in the AiJob row (prompt payload,
rendered prompt, errors), not in workflow inputs or anything else in Temporal's history, not in
the logs, even when the provider echoes the key back in an error body.

(The crash and outage drills also grep the separate worker processes' logs for the key.)
"""

import json
import logging

import pytest
from temporalio.client import WorkflowFailureError

from ai.models import AiJob
from stories import services
from tests.conftest import FAKE_API_KEY
from tests.factories import PageFactory
from tests.fakes.llm_server import Fault, Reply

pytestmark = [pytest.mark.temporal, pytest.mark.django_db(transaction=True)]
CHATTY = ("LiteLLM", "litellm", "openai", "httpx", "httpcore", "temporalio")


def test_the_key_is_in_no_row_history_or_log_line(make_stack, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    for name in CHATTY:  # the libraries' own debug logging too, not just ours
        caplog.set_level(logging.DEBUG, logger=name)
    stack = make_stack()
    page = PageFactory(content="Draft")
    leaky = f"Incorrect API key provided: {FAKE_API_KEY}. Authorization: Bearer {FAKE_API_KEY}"

    # A transient failure that quotes the key, then success; then a permanent one that does too.
    stack.llm.script(Fault(503, leaky), Reply(text="A quiet page about rain."))
    ok = stack.wait(services.request_page_text(page=page, user=page.story.owner))
    stack.llm.script(Fault(401, leaky))
    failed = stack.wait(services.request_page_text(page=page, user=page.story.owner))
    assert (ok.status, failed.status) == (AiJob.Status.SUCCEEDED, AiJob.Status.FAILED)

    # The key really was used: the provider received it.
    auth = {r.headers.get("authorization") for r in stack.llm.requests if r.method == "POST"}
    assert auth == {f"Bearer {FAKE_API_KEY}"}

    rows = json.dumps(list(AiJob.objects.values()), default=str)
    assert FAKE_API_KEY not in rows
    assert "Bearer" not in rows
    with pytest.raises(WorkflowFailureError):  # the run is closed: its history is complete
        stack.temporal.result(failed.workflow_id)
    stack.temporal.result(ok.workflow_id)
    for job in (ok, failed):
        history = stack.temporal.history_json(job.workflow_id)
        assert FAKE_API_KEY not in history  # inputs, results, failures, markers
    records = "\n".join(
        f"{r.getMessage()} {r.__dict__!r} {r.exc_text or ''}" for r in caplog.records
    )
    assert caplog.records  # something was logged ...
    assert FAKE_API_KEY not in caplog.text  # ... and the key in none of it
    assert FAKE_API_KEY not in records
    out, err = capfd.readouterr()  # handlers of their own (LiteLLM's), and the SDK's core
    assert FAKE_API_KEY not in out + err
