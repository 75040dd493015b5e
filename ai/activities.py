"""The `ai` app's activities: render the prompt, call the model, record failure/cancellation.

Built as a class around the model configuration (dependency injection): the worker builds it
from its own environment, which is the only place an API key lives; tests pass their own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ai import services
from ai.adapters.litellm import (
    CompletionRequest,
    ProviderError,
    complete,
    context_window,
    count_tokens,
)
from ai.adapters.litellm import warm_up as warm_up_model_calls
from ai.db import db_activity, run_db
from ai.models import AiJob
from ai.prompt_budget import Budget, fit_context
from ai.prompt_cleanup import GENERATION_LIMITS, clean_page_text
from ai.prompts import TEMPLATE_FOR_FAMILY, PromptError
from ai.workflows.types import STOPPED_KIND, JobFailure, LlmCall, LlmResult, PromptSpec

log = logging.getLogger(__name__)
FAMILY_FOR_TEMPLATE = {key: family for family, key in TEMPLATE_FOR_FAMILY.items()}


@dataclass(frozen=True)
class LlmConfig:
    model: str
    api_base: str | None
    api_key: str | None = field(repr=False)  # from the worker's environment; never printed
    timeout_s: float
    stream: bool = True
    context_tokens: int = 8192
    seed: int | None = None

    @classmethod
    def from_settings(cls) -> LlmConfig:
        api_base = settings.AI_API_BASE or None
        # A self-hosted OpenAI-compatible server needs some key for the client library; providers
        # read theirs (OPENAI_API_KEY, ...) from this process's environment through LiteLLM.
        api_key = os.environ.get("AI_API_KEY") or ("no-key-needed" if api_base else None)
        return cls(
            model=settings.AI_MODEL,
            api_base=api_base,
            api_key=api_key,
            timeout_s=settings.AI_REQUEST_TIMEOUT_S,
            stream=os.environ.get("AI_STREAM", "1") not in {"0", "false", "no"},
            context_tokens=settings.AI_CONTEXT_TOKENS
            or context_window(settings.AI_MODEL, default=8192),
            seed=int(settings.AI_SEED) if settings.AI_SEED else None,
        )

    def request(self, prompt: str, family: str) -> CompletionRequest:
        """The model call for a prompt of `family` ("chat" or "completion")."""
        limits = GENERATION_LIMITS[family]
        return CompletionRequest(
            model=self.model,
            prompt=prompt,
            mode="completion" if family == "completion" else "chat",
            api_base=self.api_base,
            api_key=self.api_key,
            max_tokens=limits["max_tokens"],
            temperature=limits["temperature"],
            top_p=limits.get("top_p"),
            stop=tuple(limits.get("stop", ())),
            seed=self.seed,
            timeout_s=self.timeout_s,
        )


async def warm_up(llm: LlmConfig) -> None:
    """Before the worker polls: pay the one-off costs of a worker's first job (LiteLLM's lazy
    imports and tokenizer, the kept HTTP client, the prompt templates' compilation) so that no
    author's click does: 0.2-0.3 s of the first click after every start, measured. Without
    touching the model: a failure here is logged, and the first job pays as it used to."""
    started = time.monotonic()
    try:
        await warm_up_model_calls(llm.request("Once upon a time", "completion"))
        library = services.prompts()
        for key in TEMPLATE_FOR_FAMILY.values():
            library.template(key)
    except Exception:  # an optimisation only: it must never keep the worker from starting
        log.warning("warm-up failed; the first job pays its one-off costs", exc_info=True)
        return
    log.info("warmed up in %.0f ms", (time.monotonic() - started) * 1000)


def _context(job_id: int) -> dict[str, object]:
    info = activity.info()
    return {"job_id": job_id, "workflow_id": info.workflow_id, "attempt": info.attempt}


class AiActivities:
    def __init__(
        self,
        llm: LlmConfig,
        *,
        partial_interval_s: float = 0.15,
        heartbeat_interval_s: float = 2.0,
    ) -> None:
        self.llm = llm
        self.partial_interval_s = partial_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s

    @activity.defn(name="render_prompt")
    @db_activity
    def render_prompt(self, job_id: int) -> PromptSpec:
        job = AiJob.objects.get(pk=job_id)
        if job.status == AiJob.Status.SUCCEEDED:
            # The workflow task that finished this job is being run again (its completion never
            # reached Temporal, e.g. the server was down): answer as the first try did.
            return PromptSpec(
                prompt=job.rendered_prompt,
                family=FAMILY_FOR_TEMPLATE.get(job.template_key, "chat"),
                template_key=job.template_key,
                template_version=job.template_version,
            )
        if job.status not in AiJob.ACTIVE_STATUSES:
            raise ApplicationError(
                f"This job is already {job.get_status_display().lower()}.",
                type="job_finished",
                non_retryable=True,
            )
        library = services.prompts()
        family = FAMILY_FOR_TEMPLATE.get(job.template_key, "chat")
        budget = Budget(
            context_tokens=self.llm.context_tokens,
            # The answer's room, plus slack: LiteLLM's tokenizer may undercount a local
            # model's by a few percent, and the server refuses a prompt that overflows.
            reserved_tokens=GENERATION_LIMITS[family]["max_tokens"]
            + 64
            + self.llm.context_tokens // 16,
        )
        try:
            payload, _ = fit_context(
                job.prompt_payload,
                budget=budget,
                count=lambda text: count_tokens(self.llm.model, text),
                render=lambda context: library.render(job.template_key, context).text,
            )
            rendered = library.render(job.template_key, payload)
        except PromptError as exc:
            raise ApplicationError(
                f"The prompt template is broken: {exc}", type="prompt", non_retryable=True
            ) from exc
        except ValueError as exc:  # does not fit the model's window even when cut down
            raise ApplicationError(str(exc), type="context_window", non_retryable=True) from exc
        services.mark_running(
            job_id,
            run_id=activity.info().workflow_run_id,
            rendered_prompt=rendered.text,
            template_version=rendered.version,
        )
        log.info("prompt rendered", extra=_context(job_id))
        return PromptSpec(
            prompt=rendered.text,
            family=family,
            template_key=rendered.key,
            template_version=rendered.version,
        )

    @activity.defn(name="call_llm")
    async def call_llm(self, call: LlmCall) -> LlmResult:
        if activity.info().is_local:
            # The first attempt, inside the workflow task: a dead worker is noticed by the
            # task's timeout, and there is no activity to heartbeat.
            return await self._call_llm(call)
        # Heartbeat from the first moment: under load the database calls below can wait, and a
        # silent attempt would be timed out and retried by the server.
        ticker = asyncio.create_task(self._heartbeat_while_waiting())
        try:
            return await self._call_llm(call)
        finally:
            ticker.cancel()

    async def _call_llm(self, call: LlmCall) -> LlmResult:
        page_number, finished = await run_db(_start_attempt, call.job_id)
        if finished is not None:
            return finished  # a re-run of the task that already attached this answer
        request = self.llm.request(call.prompt, call.family)
        # The first text is written as soon as it arrives: a stream that then pauses (a slow
        # model) must not leave the author looking at an empty page.
        last_flush = 0.0

        async def on_text(text: str) -> None:
            nonlocal last_flush
            now = time.monotonic()
            if now - last_flush >= self.partial_interval_s:
                last_flush = now
                # Raw but trimmed: the final cleanup (cut at a half sentence, add a full stop)
                # would misrepresent text that is still arriving.
                if not await run_db(services.record_partial, call.job_id, text=text.strip()):
                    # Stop was pressed: end the call now rather than when the cancellation
                    # reaches this attempt (a local one hears of it only at the workflow
                    # task's next heartbeat); the row records it as stopped.
                    raise ApplicationError(
                        "Generation was stopped.", type=STOPPED_KIND, non_retryable=True
                    )

        try:
            completion = await complete(request, on_text=on_text if self.llm.stream else None)
        except ProviderError as err:
            log.warning("model call failed: %s", err.kind, extra=_context(call.job_id))
            raise ApplicationError(
                err.message,
                type=err.kind,
                non_retryable=not err.retryable,
                next_retry_delay=(
                    timedelta(seconds=err.retry_after_s) if err.retry_after_s else None
                ),
            ) from None  # the provider's exception may quote request details; keep it out
        text = clean_page_text(completion.text, page_number=page_number)
        if not text:
            raise ApplicationError("The model returned no usable text.", type="empty")
        cost = completion.cost_usd.quantize(Decimal("0.0001"))
        await run_db(
            services.record_completion,
            call.job_id,
            text=text,
            model=completion.model or self.llm.model,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            total_tokens=completion.total_tokens,
            cost_usd=cost,
        )
        log.info("model answered", extra=_context(call.job_id))
        return LlmResult(
            text=text,
            model=completion.model or self.llm.model,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            total_tokens=completion.total_tokens,
            cost_usd=str(cost),
        )

    async def _heartbeat_while_waiting(self) -> None:
        # Heartbeats carry cancellation to this activity and let Temporal notice a dead worker
        # long before the start-to-close timeout, also while the model has not sent a token.
        while True:
            activity.heartbeat()
            await asyncio.sleep(self.heartbeat_interval_s)

    @activity.defn(name="fail_job")
    @db_activity
    def fail_job(self, failure: JobFailure) -> None:
        services.mark_failed(failure.job_id, message=failure.message, kind=failure.kind)
        log.info("job failed: %s", failure.kind, extra=_context(failure.job_id))

    @activity.defn(name="cancel_job")
    @db_activity
    def cancel_job(self, job_id: int) -> None:
        services.mark_cancelled(job_id, reason="Generation was stopped.")
        log.info("job cancelled", extra=_context(job_id))

    def all(self) -> list[object]:
        return [self.render_prompt, self.call_llm, self.fail_job, self.cancel_job]


def _start_attempt(job_id: int) -> tuple[int, LlmResult | None]:
    """The job's page number, and its recorded answer if the job already succeeded (the task is
    being run again); otherwise count the attempt. One trip to a database thread."""
    job = AiJob.objects.only(
        "status",
        "prompt_payload",
        "output_text",
        "model_name",
        "prompt_tokens",
        "completion_tokens",
        "usage_tokens",
        "cost_usd",
    ).get(pk=job_id)
    page_number = int(job.prompt_payload.get("page_number") or 1)
    if job.status == AiJob.Status.SUCCEEDED:
        return page_number, LlmResult(
            text=job.output_text,
            model=job.model_name,
            prompt_tokens=job.prompt_tokens or 0,
            completion_tokens=job.completion_tokens or 0,
            total_tokens=job.usage_tokens or 0,
            cost_usd=str(job.cost_usd),
        )
    services.record_attempt(job_id)
    return page_number, None
