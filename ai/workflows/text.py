"""GenerateText: render the prompt, call the model, attach the text to its target.

The job row is written only by activities; this code decides the order, the timeouts and the
retries, and turns any failure into one human message on the job.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    TimeoutError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
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
    )

# Database steps: quick to retry, and an outage of a few seconds should not fail the job.
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=8,
)
# The model: Temporal owns these retries (LiteLLM runs with num_retries=0). No attempt cap: the
# schedule-to-close timeout bounds the total, and non-retryable provider errors stop at once.
LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=20),
)
# Runs recorded before the first model attempt became local replay down the old path.
LOCAL_FIRST_CALL_PATCH = "call-llm-first-attempt-local"
# The patch that made AiJobStatus say "cancelled" for a step stopped by the author (it said
# "failed" before).
STOPPED_STATUS_PATCH = "stopped-status-cancelled"


def is_step_failure(err: BaseException) -> bool:
    """An activity step failed (as opposed to a bug in this code). An ordinary activity's failure
    arrives as ActivityError; a local activity's application error arrives bare (its timeout
    wrapped), and workflow code raises no ApplicationError of its own inside the steps."""
    return isinstance(err, (ActivityError, ApplicationError))


def failure_cause(err: BaseException) -> BaseException:
    return err.cause if isinstance(err, ActivityError) and err.cause is not None else err


def describe_failure(err: BaseException) -> tuple[str, str]:
    """(human message, kind) for the job row, from the error an activity step raised."""
    cause = failure_cause(err)
    if isinstance(cause, ApplicationError):
        return cause.message, cause.type or "error"
    if isinstance(cause, TimeoutError):
        return "The AI model did not answer in time. Please try again.", "timeout"
    return "Generation failed unexpectedly. Please try again.", type(cause).__name__


@workflow.defn(name="GenerateText")
class GenerateText:
    def __init__(self) -> None:
        self._phase = "starting"

    @workflow.query(name="phase")
    def phase(self) -> str:
        return self._phase

    async def _db_step(
        self, name: str, arg: Any, result_type: type | None, timeout_s: float, local: bool
    ) -> Any:
        timeout = timedelta(seconds=timeout_s)
        if local:
            return await workflow.execute_local_activity(
                name,
                arg,
                result_type=result_type,
                start_to_close_timeout=timeout,
                retry_policy=DB_RETRY,
            )
        return await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=timeout,
            retry_policy=DB_RETRY,
        )

    async def _call_llm(self, inp: GenerateTextInput, call: LlmCall) -> LlmResult:
        """The model call: the first attempt as a local activity, every retry as an ordinary one.

        A first attempt that succeeds (nearly every click) costs no activity dispatch and no
        second workflow task: render, call and attach finish in the workflow task that started.
        It is as durable as an ordinary attempt: a worker that dies mid-call lets the workflow
        task time out, and another worker runs the step again; a call longer than 80% of the
        task timeout keeps the task alive by workflow-task heartbeats. What it gives up is the
        pending activity in the UI while the call runs (its result or failure is a marker).
        So anything unusual takes the ordinary path: retries, with Temporal's backoff, the
        provider's Retry-After, heartbeats, and every attempt visible in the history.
        """
        t = inp.timeouts
        started = workflow.now()
        if inp.local_steps and workflow.patched(LOCAL_FIRST_CALL_PATCH):
            try:
                return await workflow.execute_local_activity(
                    "call_llm",
                    call,
                    result_type=LlmResult,
                    start_to_close_timeout=timedelta(seconds=t.llm_start_to_close_s),
                    retry_policy=RetryPolicy(maximum_attempts=1),
                )
            except (ActivityError, ApplicationError) as err:
                cause = failure_cause(err)
                if is_cancelled_exception(err) or (
                    isinstance(cause, ApplicationError) and cause.non_retryable
                ):
                    raise
                # As Temporal would have waited before a second attempt.
                delay = LLM_RETRY.initial_interval
                if isinstance(cause, ApplicationError) and cause.next_retry_delay:
                    delay = cause.next_retry_delay
                workflow.logger.info("first model attempt failed; retrying as an activity")
                await workflow.sleep(delay)
        remaining = timedelta(seconds=t.llm_schedule_to_close_s) - (workflow.now() - started)
        return await workflow.execute_activity(
            "call_llm",
            call,
            result_type=LlmResult,
            start_to_close_timeout=timedelta(seconds=t.llm_start_to_close_s),
            heartbeat_timeout=timedelta(seconds=t.llm_heartbeat_s),
            schedule_to_close_timeout=max(remaining, timedelta(seconds=1)),
            retry_policy=LLM_RETRY,
        )

    def _status(self, status: str) -> None:
        workflow.upsert_search_attributes([AI_JOB_STATUS.value_set(status)])

    @workflow.run
    async def run(self, inp: GenerateTextInput) -> GenerateTextResult:
        t = inp.timeouts
        try:
            self._phase = "rendering"
            spec: PromptSpec = await self._db_step(
                "render_prompt", inp.job_id, PromptSpec, t.render_s, inp.local_steps
            )
            self._status("running")
            self._phase = "generating"
            result = await self._call_llm(
                inp, LlmCall(job_id=inp.job_id, prompt=spec.prompt, family=spec.family)
            )
            self._phase = "attaching"
            attached: AttachResult = await self._db_step(
                inp.attach_activity,
                AttachInput(job_id=inp.job_id, text=result.text),
                AttachResult,
                t.attach_s,
                inp.local_steps,
            )
        except BaseException as err:
            if is_cancelled_exception(err):
                self._phase = "cancelled"
                await self._db_step("cancel_job", inp.job_id, None, t.attach_s, True)
                self._status("cancelled")
                raise
            if not is_step_failure(err):
                raise  # a bug in this code: fail the workflow task so a fix can resume the run
            message, kind = describe_failure(err)
            self._phase = "failed"
            await self._db_step(
                "fail_job",
                JobFailure(job_id=inp.job_id, message=message, kind=kind),
                None,
                t.attach_s,
                True,
            )
            # A step that refused because the author pressed Stop: fail_job recorded the job as
            # cancelled, and the search attribute says the same.
            stopped = kind == STOPPED_KIND and workflow.patched(STOPPED_STATUS_PATCH)
            self._status("cancelled" if stopped else "failed")
            raise ApplicationError(message, type=kind, non_retryable=True) from err
        self._phase = "succeeded"
        self._status("succeeded")
        return GenerateTextResult(
            job_id=inp.job_id, applied=attached.applied, total_tokens=result.total_tokens
        )
