"""GenerateText alone: fake activities registered under the real names, on the real dev server.
No database and no model: only the workflow's ordering, retries, failure and cancellation."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Worker

from ai.workflows.text import GenerateText
from ai.workflows.types import (
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


@dataclass
class Fakes:
    calls: list[str] = field(default_factory=list)
    llm_failures: list[ApplicationError] = field(default_factory=list)
    llm_delay_s: float = 0.0
    failures: list[JobFailure] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    attached: list[AttachInput] = field(default_factory=list)
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
            self.calls.append(f"call_llm#{activity.info().attempt}")
            if self.llm_started is not None:
                self.llm_started.set()
            if self.llm_failures:
                raise self.llm_failures.pop(0)
            waited = 0.0
            while waited < self.llm_delay_s:
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
    result, _ = temporal.run(_run(temporal.client, fakes, inp))
    assert result == GenerateTextResult(job_id=7, applied=True, total_tokens=7)
    assert fakes.calls == ["render_prompt", "call_llm#1", "attach_page_text"]
    assert fakes.attached == [AttachInput(job_id=7, text="text from prompt for 7")]


def test_retryable_llm_errors_are_retried_by_temporal(temporal):
    fakes = Fakes(
        llm_failures=[
            ApplicationError("busy", type="server_error"),
            ApplicationError("busy", type="server_error"),
        ]
    )
    inp = GenerateTextInput(job_id=8, attach_activity="attach_page_text", timeouts=FAST)
    result, _ = temporal.run(_run(temporal.client, fakes, inp), timeout=60)
    assert isinstance(result, GenerateTextResult)
    assert fakes.calls == [
        "render_prompt",
        "call_llm#1",
        "call_llm#2",
        "call_llm#3",
        "attach_page_text",
    ]


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
    assert fakes.calls == ["render_prompt", "call_llm#1", "fail_job"]
    assert fakes.failures == [
        JobFailure(job_id=9, message="The AI provider rejected our credentials.", kind="auth")
    ]
    assert fakes.attached == []


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
