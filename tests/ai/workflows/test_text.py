"""GenerateText alone: fake activities registered under the real names, on the real dev server.
No database and no model: only the workflow's ordering, retries, failure and cancellation."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Worker

from ai.workflows.text import LLM_RETRY, GenerateText
from ai.workflows.types import (
    AI_JOB_STATUS,
    STOPPED_KIND,
    AttachInput,
    AttachResult,
    GenerateTextInput,
    GenerateTextResult,
    JobFailure,
    LlmCall,
    LlmResult,
    PromptSpec,
    StepTimeouts,
)

pytestmark = pytest.mark.temporal

# History event attribute names.
WFT_COMPLETED = "workflow_task_completed_event_attributes"
MARKER = "marker_recorded_event_attributes"
TIMER = "timer_started_event_attributes"
ACTIVITY_SCHEDULED = "activity_task_scheduled_event_attributes"
STARTED = "activity_task_started_event_attributes"


@dataclass
class Fakes:
    calls: list[str] = field(default_factory=list)
    llm_failures: list[ApplicationError] = field(default_factory=list)
    llm_delay_s: float = 0.0
    failures: list[JobFailure] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    attached: list[AttachInput] = field(default_factory=list)
    attach_failures: list[ApplicationError] = field(default_factory=list)
    llm_started: asyncio.Event | None = None

    def activities(self) -> list[object]:
        @activity.defn(name="render_prompt")
        async def render_prompt(job_id: int) -> PromptSpec:
            self.calls.append("render_prompt")
            return PromptSpec(
                prompt=f"prompt for {job_id}",
                family="chat",
                template_key="page_content",
                template_version="1",
            )

        @activity.defn(name="call_llm")
        async def call_llm(call: LlmCall) -> LlmResult:
            info = activity.info()
            self.calls.append("call_llm(local)" if info.is_local else f"call_llm#{info.attempt}")
            if self.llm_started is not None:
                self.llm_started.set()
            if self.llm_failures:
                raise self.llm_failures.pop(0)
            waited = 0.0
            while waited < self.llm_delay_s:
                if not info.is_local:
                    activity.heartbeat()
                await asyncio.sleep(0.05)
                waited += 0.05
            return LlmResult(
                text=f"text from {call.prompt}",
                model="fake",
                prompt_tokens=3,
                completion_tokens=4,
                total_tokens=7,
                cost_usd="0.0000",
            )

        @activity.defn(name="attach_page_text")
        async def attach(inp: AttachInput) -> AttachResult:
            self.calls.append("attach_page_text")
            if self.attach_failures:
                raise self.attach_failures.pop(0)
            self.attached.append(inp)
            return AttachResult(applied=True)

        @activity.defn(name="fail_job")
        async def fail_job(failure: JobFailure) -> None:
            self.calls.append("fail_job")
            self.failures.append(failure)

        @activity.defn(name="cancel_job")
        async def cancel_job(job_id: int) -> None:
            self.calls.append("cancel_job")
            self.cancelled.append(job_id)

        return [render_prompt, call_llm, attach, fail_job, cancel_job]


def failure_chain(err: BaseException) -> list[str]:
    chain: list[str] = []
    cause: BaseException | None = err
    while cause is not None:
        chain.append(repr(cause))
        cause = cause.__cause__
    return chain


FAST = StepTimeouts(llm_heartbeat_s=2.0, llm_schedule_to_close_s=30.0)


async def _run(client, fakes: Fakes, inp: GenerateTextInput, *, cancel_after_start=False):
    queue = f"wf-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=[GenerateText], activities=fakes.activities()
    ):
        handle = await client.start_workflow(
            GenerateText.run, inp, id=f"wf-test-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        if cancel_after_start:
            await asyncio.wait_for(fakes.llm_started.wait(), 10)
            await handle.cancel()
        try:
            return await handle.result(), handle
        except WorkflowFailureError as err:
            return err, handle


@pytest.mark.parametrize("local_steps", [True, False])
def test_renders_calls_and_attaches_in_order(temporal, local_steps):
    fakes = Fakes()
    inp = GenerateTextInput(
        job_id=7, attach_activity="attach_page_text", local_steps=local_steps, timeouts=FAST
    )
    result, handle = temporal.run(_run(temporal.client, fakes, inp))
    assert result == GenerateTextResult(job_id=7, applied=True, total_tokens=7)
    call = "call_llm(local)" if local_steps else "call_llm#1"
    assert fakes.calls == ["render_prompt", call, "attach_page_text"]
    history = temporal.run(handle.fetch_history())
    # The product's shape: everything in the workflow task that started the run.
    completed_tasks = [e for e in history.events if e.HasField(WFT_COMPLETED)]
    assert len(completed_tasks) == (1 if local_steps else 4)
    assert fakes.attached == [AttachInput(job_id=7, text="text from prompt for 7")]


def test_retryable_llm_errors_are_retried_by_temporal(temporal):
    fakes = Fakes(
        llm_failures=[
            ApplicationError("busy", type="server_error"),
            ApplicationError("busy", type="server_error"),
        ]
    )
    inp = GenerateTextInput(job_id=8, attach_activity="attach_page_text", timeouts=FAST)
    result, handle = temporal.run(_run(temporal.client, fakes, inp), timeout=60)
    assert isinstance(result, GenerateTextResult), (failure_chain(result), fakes.calls)
    # The first attempt is local; the retries are ordinary activity attempts.
    assert fakes.calls == [
        "render_prompt",
        "call_llm(local)",
        "call_llm#1",
        "call_llm#2",
        "attach_page_text",
    ]
    events = temporal.run(handle.fetch_history()).events
    kinds = [e.WhichOneof("attributes") for e in events]
    # The failed local attempt is a marker with its failure, then the retry schedule's first
    # interval as a durable timer, then the activity that Temporal retries and shows.
    markers = [e.marker_recorded_event_attributes for e in events if e.HasField(MARKER)]
    (failed,) = [m.failure for m in markers if m.HasField("failure")]
    assert failed.application_failure_info.type == "server_error"
    timer = next(e.timer_started_event_attributes for e in events if e.HasField(TIMER))
    assert timer.start_to_fire_timeout.ToTimedelta() == LLM_RETRY.initial_interval
    assert kinds.index(TIMER) < kinds.index(ACTIVITY_SCHEDULED)
    started = [e.activity_task_started_event_attributes for e in events if e.HasField(STARTED)]
    assert [s.attempt for s in started] == [2]  # one event for the attempt that succeeded
    assert started[0].last_failure.application_failure_info.type == "server_error"


def test_provider_retry_after_sets_the_wait_before_the_first_retry(temporal):
    fakes = Fakes(
        llm_failures=[
            ApplicationError(
                "slow down", type="rate_limited", next_retry_delay=timedelta(seconds=3)
            )
        ]
    )
    inp = GenerateTextInput(job_id=12, attach_activity="attach_page_text", timeouts=FAST)
    result, handle = temporal.run(_run(temporal.client, fakes, inp), timeout=60)
    assert isinstance(result, GenerateTextResult), (failure_chain(result), fakes.calls)
    assert fakes.calls == ["render_prompt", "call_llm(local)", "call_llm#1", "attach_page_text"]
    events = temporal.run(handle.fetch_history()).events
    timer = next(e.timer_started_event_attributes for e in events if e.HasField(TIMER))
    assert timer.start_to_fire_timeout.ToTimedelta() == timedelta(seconds=3)


def test_non_retryable_error_fails_fast_and_records_a_human_message(temporal):
    fakes = Fakes(
        llm_failures=[
            ApplicationError(
                "The AI provider rejected our credentials.", type="auth", non_retryable=True
            ),
        ]
    )
    inp = GenerateTextInput(job_id=9, attach_activity="attach_page_text", timeouts=FAST)
    result, _ = temporal.run(_run(temporal.client, fakes, inp))
    assert isinstance(result, WorkflowFailureError)
    assert isinstance(result.cause, ApplicationError)
    assert result.cause.type == "auth"
    assert fakes.calls == ["render_prompt", "call_llm(local)", "fail_job"]
    assert fakes.failures == [
        JobFailure(job_id=9, message="The AI provider rejected our credentials.", kind="auth")
    ]
    assert fakes.attached == []


@pytest.mark.parametrize("local_steps", [True, False])
def test_a_step_that_refuses_records_its_message_on_the_job(temporal, local_steps):
    # A local activity's failure reaches the workflow unwrapped; it must still be recorded on
    # the job (not taken for a bug in the workflow, which would leave the job running).
    refusal = "The page was deleted while its text was being generated."
    fakes = Fakes(
        attach_failures=[ApplicationError(refusal, type="target_deleted", non_retryable=True)]
    )
    inp = GenerateTextInput(
        job_id=13, attach_activity="attach_page_text", local_steps=local_steps, timeouts=FAST
    )
    result, _ = temporal.run(_run(temporal.client, fakes, inp))
    assert isinstance(result, WorkflowFailureError)
    assert isinstance(result.cause, ApplicationError)
    assert result.cause.type == "target_deleted"
    assert fakes.failures == [JobFailure(job_id=13, message=refusal, kind="target_deleted")]


def test_a_step_stopped_by_the_author_leaves_the_run_tagged_cancelled(temporal):
    # The model call saw the Stop on the job row before any cancellation reached the run.
    fakes = Fakes(
        llm_failures=[
            ApplicationError("Generation was stopped.", type=STOPPED_KIND, non_retryable=True)
        ]
    )
    inp = GenerateTextInput(job_id=14, attach_activity="attach_page_text", timeouts=FAST)
    result, handle = temporal.run(_run(temporal.client, fakes, inp))
    assert isinstance(result, WorkflowFailureError)
    assert fakes.calls == ["render_prompt", "call_llm(local)", "fail_job"]
    assert fakes.failures == [
        JobFailure(job_id=14, message="Generation was stopped.", kind=STOPPED_KIND)
    ]
    described = temporal.run(handle.describe())
    assert described.typed_search_attributes.get(AI_JOB_STATUS) == "cancelled"


def test_attach_activity_name_comes_from_the_input(temporal):
    fakes = Fakes()
    attached: list[AttachInput] = []

    @activity.defn(name="attach_to_something_else")
    async def other_attach(inp: AttachInput) -> AttachResult:
        attached.append(inp)
        return AttachResult(applied=False, note="kept")

    async def scenario():
        queue = f"wf-{uuid.uuid4().hex[:8]}"
        async with Worker(
            temporal.client,
            task_queue=queue,
            workflows=[GenerateText],
            activities=[*fakes.activities(), other_attach],
        ):
            return await temporal.client.execute_workflow(
                GenerateText.run,
                GenerateTextInput(
                    job_id=10, attach_activity="attach_to_something_else", timeouts=FAST
                ),
                id=f"wf-test-{uuid.uuid4().hex[:8]}",
                task_queue=queue,
            )

    result = temporal.run(scenario())
    assert result.applied is False
    assert [a.job_id for a in attached] == [10]
    assert "attach_page_text" not in fakes.calls


def test_cancel_reaches_the_llm_call_and_marks_the_job_cancelled(temporal):
    fakes = Fakes(llm_delay_s=30)

    async def scenario():
        fakes.llm_started = asyncio.Event()
        inp = GenerateTextInput(job_id=11, attach_activity="attach_page_text", timeouts=FAST)
        return await _run(temporal.client, fakes, inp, cancel_after_start=True)

    result, _ = temporal.run(scenario(), timeout=60)
    assert isinstance(result, WorkflowFailureError)
    assert isinstance(result.cause, CancelledError)
    assert fakes.cancelled == [11]
    assert fakes.attached == []
