"""Starting the workflow for a job. Called on transaction commit by the app that wrote the job.

If Temporal is unreachable the job simply stays `pending` with the reason recorded; the request
that created it still succeeds, and `manage.py reconcile_ai_jobs` (run by the worker on a timer)
starts it later. The workflow id is the job's, and duplicates are rejected, so no job ever runs
twice however often it is queued.
"""

from __future__ import annotations

import logging
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from ai import services
from ai.models import AiJob
from ai.temporal import TemporalUnavailable, bridge
from ai.workflows.text import GenerateText
from ai.workflows.types import (
    AI_JOB_ID,
    AI_JOB_STATUS,
    AI_JOB_TYPE,
    PAGE_ID,
    STORY_ID,
    GenerateTextInput,
    StepTimeouts,
)

log = logging.getLogger(__name__)

# Set by tests (e.g. short heartbeat timeouts for the crash test); production uses the defaults.
STEP_TIMEOUTS: StepTimeouts | None = None
LOCAL_STEPS: bool = True


def search_attributes(job: AiJob) -> TypedSearchAttributes:
    pairs: list[SearchAttributePair] = [
        SearchAttributePair(AI_JOB_ID, job.pk),
        SearchAttributePair(AI_JOB_TYPE, job.job_type),
        SearchAttributePair(AI_JOB_STATUS, "queued"),
    ]
    if "story_id" in job.labels:
        pairs.append(SearchAttributePair(STORY_ID, int(job.labels["story_id"])))
    if "page_id" in job.labels:
        pairs.append(SearchAttributePair(PAGE_ID, int(job.labels["page_id"])))
    return TypedSearchAttributes(pairs)


def workflow_input(job: AiJob) -> GenerateTextInput:
    return GenerateTextInput(
        job_id=job.pk,
        attach_activity=job.attach_activity,
        local_steps=LOCAL_STEPS,
        timeouts=STEP_TIMEOUTS or StepTimeouts(),
    )


async def start_job_workflow(client: Client, job: AiJob) -> str:
    """Start the job's workflow; returns its first run id. Idempotent on the workflow id."""
    summary = f"Page text for {job.labels.get('story_id', '?')}/{job.labels.get('page_id', '?')}"
    try:
        handle = await client.start_workflow(
            GenerateText.run,
            workflow_input(job),
            id=AiJob.workflow_id_for(job.pk),
            task_queue=settings.TEMPORAL_TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=search_attributes(job),
            static_summary=f"{summary} (AI job {job.pk}, {job.model_name})",
            static_details=(
                f"Story {job.labels.get('story_id')}, page {job.labels.get('page_id')}; "
                f"template {job.template_key} v{job.template_version}; model {job.model_name}."
            ),
        )
    except WorkflowAlreadyStartedError as exc:
        return exc.run_id or ""
    return handle.first_execution_run_id or handle.result_run_id or ""


def queue_ai_job(job_id: int) -> bool:
    """Start the job's workflow now; True when Temporal accepted it (or already had it)."""
    job = AiJob.objects.get(pk=job_id)
    if job.status not in AiJob.ACTIVE_STATUSES:
        return False
    extra = {"job_id": job.pk, "workflow_id": AiJob.workflow_id_for(job.pk)}

    async def start() -> str:
        return await start_job_workflow(await bridge.client(), job)

    try:
        run_id = bridge.run(start(), timeout=settings.TEMPORAL_START_TIMEOUT_S)
    except (FutureTimeout, TimeoutError):
        reason = f"Temporal did not answer within {settings.TEMPORAL_START_TIMEOUT_S:g}s"
    except TemporalUnavailable as exc:
        reason = f"Temporal unreachable at {exc}"
    except RPCError as exc:
        bridge.forget_client()
        reason = f"Temporal unreachable: {exc.status.name}: {exc.message}"
    except Exception as exc:
        bridge.forget_client()
        reason = f"Could not start the workflow: {exc.__class__.__name__}: {exc}"
        log.exception("workflow start failed", extra=extra)
    else:
        services.mark_queued(job.pk, run_id=run_id)
        log.info("workflow started", extra={**extra, "run_id": run_id})
        return True
    services.mark_queue_failed(job.pk, reason=reason)
    log.warning("workflow not started; job stays queued: %s", reason, extra=extra)
    return False
