"""Replay: every recorded history (tests/histories, made by `python -m tests.histories.record`)
replays against the current GenerateText; a change that would break open runs is caught, with the
event where it diverges; the commands work from a file and from a real job's run."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from temporalio import workflow

from ai.models import AiJob
from ai.replay import HistoryFormatError, load_history, load_history_file, replay_history
from ai.workflows.text import GenerateText
from ai.workflows.types import GenerateTextInput, GenerateTextResult, LlmCall, LlmResult
from tests.histories.record import PATHS
from tests.temporal_harness import activity_started, activity_steps, local_call_failure

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
RECORDED = sorted(HISTORIES.glob("*.json"))


# Incompatible and compatible versions of the workflow, under its real name. Unsandboxed: the
# sandbox would re-import this test module, Django models and all.
@workflow.defn(name="GenerateText", sandboxed=False)
class CallsTheModelFirst:
    """The steps in another order: the model before the prompt is rendered."""

    @workflow.run
    async def run(self, inp: GenerateTextInput) -> GenerateTextResult:
        result = await workflow.execute_activity(
            "call_llm",
            LlmCall(job_id=inp.job_id, prompt="", family="chat"),
            result_type=LlmResult,
            start_to_close_timeout=timedelta(seconds=30),
        )
        return GenerateTextResult(job_id=inp.job_id, applied=True, total_tokens=result.total_tokens)


@workflow.defn(name="GenerateText", sandboxed=False)
class AuditsFirst(GenerateText):
    """A new step before the others, without a patch."""

    @workflow.run
    async def run(self, inp: GenerateTextInput) -> GenerateTextResult:
        await workflow.execute_local_activity(
            "audit_job", inp.job_id, start_to_close_timeout=timedelta(seconds=5)
        )
        return await super().run(inp)


@workflow.defn(name="GenerateText", sandboxed=False)
class AuditsFirstPatched(GenerateText):
    """The same new step behind `workflow.patched`: old runs replay without it."""

    @workflow.run
    async def run(self, inp: GenerateTextInput) -> GenerateTextResult:
        if workflow.patched("audit-step"):
            await workflow.execute_local_activity(
                "audit_job", inp.job_id, start_to_close_timeout=timedelta(seconds=5)
            )
        return await super().run(inp)


def _events(path: str) -> list[dict]:
    return json.loads((HISTORIES / f"{path}.json").read_text())["events"]


def test_every_path_is_recorded():
    assert {p.stem for p in RECORDED} >= set(PATHS)


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_recorded_history_replays_with_the_current_code(path: Path):
    outcome = replay_history(load_history_file(path))

    assert outcome.ok, outcome.message
    assert outcome.message.startswith("OK")
    assert outcome.event_id is None


def test_recorded_histories_took_the_paths_they_are_named_for():
    def last(path: str) -> str:
        return _events(path)[-1]["eventType"]

    for version in ("", ".v1"):
        assert last(f"success{version}") == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"
        assert last(f"retried{version}") == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"
        assert last(f"failed{version}") == "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED"
        assert last(f"cancelled{version}") == "EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED"

    # Now: the whole job in the first workflow task, the model call's first attempt a marker.
    assert activity_steps(_events("success")) == ["render_prompt", "call_llm", "attach_page_text"]
    completed = [e for e in _events("success") if "workflowTaskCompletedEventAttributes" in e]
    assert len(completed) == 1
    # A retry: the failed local attempt, the backoff as a timer, then the ordinary activity, whose
    # one started event carries its last attempt's number.
    assert _started_attempts("retried") == [2]
    failure = local_call_failure(_events("retried"))
    assert failure["applicationFailureInfo"] == {"type": "server_error"}
    assert any("timerStartedEventAttributes" in e for e in _events("retried"))
    failure = local_call_failure(_events("failed"))
    assert failure["applicationFailureInfo"] == {"type": "auth", "nonRetryable": True}
    assert "canceledFailureInfo" in local_call_failure(_events("cancelled"))

    # v1 (before the first attempt was local): the model call an ordinary activity throughout.
    assert _started_attempts("retried.v1") == [3]
    failure = next(e for e in _events("failed.v1") if "activityTaskFailedEventAttributes" in e)
    info = failure["activityTaskFailedEventAttributes"]["failure"]["applicationFailureInfo"]
    assert info == {"type": "auth", "nonRetryable": True}
    assert any("activityTaskCancelRequestedEventAttributes" in e for e in _events("cancelled.v1"))


def _started_attempts(path: str) -> list[int]:
    """Retries of an activity leave one started event, carrying the last attempt's number."""
    return [started["attempt"] for started in activity_started(_events(path))]


# What the SDK reports at the diverging event: a nondeterminism error naming the mismatched
# step, except for an inserted local activity replayed against a run that finished in its
# first workflow task (the current success path). There the SDK matches the new step to the
# render marker and fails on the render step's missing result instead: still at event 5.
def expected_report(path: str, variant: type) -> tuple[str, ...]:
    if variant is CallsTheModelFirst:
        return ("Nondeterminism", "render_prompt")
    if path == "success":
        return ("Failed decoding arguments",)
    return ("Nondeterminism", "'audit_job'")


@pytest.mark.parametrize("variant", [CallsTheModelFirst, AuditsFirst], ids=lambda v: v.__name__)
@pytest.mark.parametrize("path", [f"{p}{v}" for v in ("", ".v1") for p in PATHS])
def test_an_incompatible_change_is_caught_at_the_diverging_event(path, variant):
    outcome = replay_history(load_history_file(HISTORIES / f"{path}.json"), workflows=[variant])

    assert not outcome.ok
    assert outcome.event_id == 5
    # Event 5 is the render_prompt step the history recorded where the new code does otherwise.
    assert "at event 5 (MarkerRecorded local activity render_prompt)" in outcome.message
    for words in expected_report(path, variant):
        assert words in outcome.message


def test_a_patched_change_replays_old_histories():
    for path in [f"{p}{v}" for v in ("", ".v1") for p in PATHS]:
        outcome = replay_history(
            load_history_file(HISTORIES / f"{path}.json"), workflows=[AuditsFirstPatched]
        )
        assert outcome.ok, outcome.message


def test_cli_ui_and_api_exports_all_load():
    cli_text = (HISTORIES / "success.json").read_text()
    events = json.loads(cli_text)["events"]
    from_cli = load_history(cli_text)
    # The UI's Download button saves `{"events": [...]}` (the same protobuf JSON, checked by
    # the recorder); its import also takes a bare list; the history API wraps it in "history".
    for source in (
        json.dumps({"events": events}, indent=2),
        json.dumps(events),
        json.dumps({"history": {"events": events}, "nextPageToken": None}),
    ):
        history = load_history(source)
        assert history.events == from_cli.events
        assert history.workflow_id == "ai-job-1"  # read from the start event
    assert load_history(cli_text, "given-id").workflow_id == "given-id"


def test_unreadable_histories_say_why():
    events = _events("success")
    started = events[0]["workflowExecutionStartedEventAttributes"]
    # What the UI saves when asked for a readable download: decoded values, plain metadata.
    started["input"]["payloads"] = [{"metadata": {"encoding": "json/plain"}, "data": {"job_id": 1}}]
    with pytest.raises(HistoryFormatError, match="decoding turned off"):
        load_history({"events": events})
    started["input"]["payloads"] = [{"job_id": 1, "attach_activity": "attach_page_text"}]
    with pytest.raises(HistoryFormatError, match="decoding turned off"):
        load_history({"events": events})
    with pytest.raises(HistoryFormatError, match="events"):
        load_history({"workflows": []})
    with pytest.raises(HistoryFormatError, match="no events"):
        load_history({"events": []})
    with pytest.raises(HistoryFormatError, match="not JSON"):
        load_history("<html>Temporal UI</html>")


def _tampered(tmp_path: Path) -> Path:
    """A success history (v1: the model call an ordinary activity) as if an older code had
    named the model step differently."""
    events = _events("success.v1")
    scheduled = next(e for e in events if "activityTaskScheduledEventAttributes" in e)
    scheduled["activityTaskScheduledEventAttributes"]["activityType"]["name"] = "call_model"
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"events": events}))
    return path


def test_replay_workflow_command_from_a_file(tmp_path: Path):
    out = StringIO()
    call_command("replay_workflow", "--from-file", str(HISTORIES / "success.json"), stdout=out)
    assert out.getvalue().startswith("OK")

    with pytest.raises(CommandError) as caught:
        call_command("replay_workflow", "--from-file", str(_tampered(tmp_path)))
    assert caught.value.returncode == 1
    assert "at event 7 (ActivityTaskScheduled call_model)" in str(caught.value)

    with pytest.raises(CommandError) as caught:
        call_command("replay_workflow", "--from-file", str(tmp_path / "missing.json"))
    assert caught.value.returncode == 2
    with pytest.raises(CommandError, match="--workflow-id") as caught:
        call_command("replay_workflow")
    assert caught.value.returncode == 2


@pytest.mark.django_db
def test_replay_ai_job_needs_a_job_with_a_run():
    from tests.factories import PageFactory

    page = PageFactory()
    job = AiJob.objects.create(
        job_type=AiJob.JobType.PAGE_TEXT,
        target=page,
        attach_activity="attach_page_text",
        template_key="page_content",
        template_version="1",
        model_name="openai/fake-storyteller",
        queue_error="Temporal unreachable",
    )
    with pytest.raises(CommandError, match="has not started") as caught:
        call_command("replay_ai_job", job.pk)
    assert caught.value.returncode == 2
    with pytest.raises(CommandError, match="no AI job") as caught:
        call_command("replay_ai_job", job.pk + 1000)
    assert caught.value.returncode == 2


def test_replay_workflow_exits_1_on_divergence(tmp_path: Path):
    command = [sys.executable, "manage.py", "replay_workflow", "--from-file"]
    ok = subprocess.run(
        [*command, str(HISTORIES / "cancelled.json")],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK")

    diverged = subprocess.run(
        [*command, str(_tampered(tmp_path))],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert diverged.returncode == 1
    assert "does not replay at event 7" in diverged.stderr


@pytest.mark.temporal
@pytest.mark.django_db(transaction=True)
def test_replay_ai_job_replays_a_real_run(stack):
    from stories import services
    from tests.factories import PageFactory, StoryFactory, UserFactory
    from tests.fakes.llm_server import Fault, Reply

    user = UserFactory()
    page = PageFactory(story=StoryFactory(owner=user), content="")
    stack.llm.script(Fault(503), Reply(text="The moon rolled down the hill."))
    job = stack.wait(services.request_page_text(page=page, user=user))
    assert job.status == "succeeded", job.error
    stack.temporal.result(job.workflow_id)  # the run is closed: its whole history is there

    out = StringIO()
    call_command("replay_ai_job", job.pk, stdout=out)
    assert out.getvalue().startswith(f"OK: ai-job-{job.pk}")

    out = StringIO()
    call_command("replay_workflow", "--workflow-id", job.workflow_id, stdout=out)
    assert out.getvalue().startswith("OK")
    out = StringIO()
    call_command(
        "replay_workflow", "--workflow-id", job.workflow_id, "--run-id", job.run_id, stdout=out
    )
    assert out.getvalue().startswith("OK")

    with pytest.raises(CommandError) as caught:
        call_command("replay_workflow", "--workflow-id", "ai-job-does-not-exist")
    assert caught.value.returncode == 2
