"""What an operator does to a job: retry it, cancel it, open its run in the Temporal UI.

The Django admin's actions are thin shims over these (and the editor may reuse them). Refusals
raise `ai.services.JobError` with a message for people; nothing is written when one is raised.
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from ai import services
from ai.models import AiJob
from ai.queue import queue_ai_job
from ai.services import JobError
from ai.temporal import TemporalUnavailable, bridge

log = logging.getLogger(__name__)
Status = AiJob.Status
RETRYABLE_STATUSES = (Status.FAILED, Status.CANCELLED)


def temporal_ui_url(job: AiJob) -> str:
    """The job's run in the Temporal UI ("" before a workflow id exists). Without a run id the
    UI's workflow-id route opens the latest run."""
    if not job.workflow_id:
        return ""
    base = settings.TEMPORAL_UI_URL.rstrip("/")
    namespace = quote(settings.TEMPORAL_NAMESPACE, safe="")
    url = f"{base}/namespaces/{namespace}/workflows/{quote(job.workflow_id, safe='')}"
    if job.run_id:
        url += f"/{quote(job.run_id, safe='')}/history"
    return url


def target_content(job: AiJob) -> str | None:
    """The target's current text, for any target with a `content` attribute (a page today);
    None when the target is gone. `ai` never imports the app that owns it."""
    target = job.target
    if target is None:
        return None
    content = getattr(target, "content", None)
    return str(target) if content is None else str(content)


def retry_job(job: AiJob, *, by: AbstractBaseUser | None) -> AiJob:
    """A new pending job for a failed or cancelled one: same target, same prompt payload, linked
    through `retry_of`, its workflow started once the transaction commits.

    The new job keeps the old `previous_content`, so the attach step's rule still protects the
    author: if the page changed since the original request, the retry's text is kept as a
    suggestion instead of overwriting newer words. The template and model are today's settings
    (a retry after a configuration fix should use the fix). Authors' rate limit applies to `by`.
    """
    with transaction.atomic():
        job = AiJob.objects.select_for_update().get(pk=job.pk)
        if job.status not in RETRYABLE_STATUSES:
            raise JobError(
                f"Job {job.pk} is {job.get_status_display().lower()}; "
                "only failed or cancelled jobs can be retried."
            )
        later = job.retries.order_by("-created_at").first()
        if later is not None:
            raise JobError(f"Job {job.pk} was already retried as job {later.pk}; retry that one.")
        target = job.target
        if target is None:
            raise JobError(f"Job {job.pk}'s target no longer exists; there is nothing to retry.")
        active = services.active_job_for(target)
        if active is not None:
            raise JobError(
                f"Job {job.pk}'s target already has an active job ({active.pk}); "
                "wait for it or cancel it first."
            )
        new, created = services.create_job(
            services.JobRequest(
                target=target,
                job_type=job.job_type,
                requested_by=by,
                prompt_payload=job.prompt_payload,
                previous_content=job.previous_content,
                attach_activity=job.attach_activity,
                labels=job.labels,
                apply_mode=job.apply_mode,
            ),
            retry_of=job,
        )
        if not created:  # another request won the race for the target
            raise JobError(
                f"Job {job.pk}'s target already has an active job ({new.pk}); "
                "wait for it or cancel it first."
            )
        transaction.on_commit(functools.partial(queue_ai_job, new.pk))
    log.info("job retried as %s", new.pk, extra={"job_id": job.pk})
    return new


async def _request_cancel(workflow_id: str) -> bool:
    """Ask the run to cancel; True while it is still open. Temporal accepts a cancel request
    for a run that already closed (terminated, timed out) without error: only describe says."""
    client = await bridge.client()
    handle = client.get_workflow_handle(workflow_id)
    await handle.cancel()
    return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


def _marked(job: AiJob, why: str) -> str:
    job.refresh_from_db(fields=["status"])
    if job.status == Status.CANCELLED:
        return f"Job {job.pk} was cancelled ({why})."
    # It finished on its own in the meantime; mark_cancelled leaves a finished job alone.
    return f"Job {job.pk} had already {job.get_status_display().lower()}."


def cancel_job(job: AiJob) -> str:
    """Stop an active job; returns what was done, for people.

    The stop is recorded on the row first (`services.request_cancel`): from then on the attach
    step refuses to write, even if Temporal cannot be reached now, and a model call that is
    streaming ends at its next partial-text write. A running workflow is then asked to cancel:
    the request reaches a retry's model call through its heartbeats, a first (local) attempt at
    the workflow task's next heartbeat (~8 s), and the run's `cancel_job` step marks the row
    `cancelled`. A job whose workflow never
    started (Temporal was down when it was requested) is marked here; if the reconciler starts it
    meanwhile, its first step finds the job finished and stops."""
    job = AiJob.objects.get(pk=job.pk)
    if not job.is_active:
        raise JobError(f"Job {job.pk} is already {job.get_status_display().lower()}.")
    extra = {"job_id": job.pk, "workflow_id": job.workflow_id}
    services.request_cancel(job.pk)
    if job.queued_at is None and not job.run_id:
        services.mark_cancelled(job.pk, reason="Cancelled before its workflow started.")
        log.info("queued job cancelled before its workflow started", extra=extra)
        return _marked(job, "its workflow had not started")
    timeout = settings.TEMPORAL_START_TIMEOUT_S
    try:
        still_open = bridge.run(_request_cancel(job.workflow_id), timeout=timeout)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            bridge.forget_client()
            raise JobError(
                f"Temporal could not stop job {job.pk}'s workflow ({exc.status.name}: "
                f"{exc.message}); the stop is recorded and nothing will be attached. Try again."
            ) from exc
        # No open run: nothing else will ever finish this row.
        services.mark_cancelled(job.pk, reason="Cancelled; its workflow was no longer running.")
        log.info("job cancelled; workflow was not running", extra=extra)
        return _marked(job, "its workflow was no longer running")
    except (FutureTimeout, TimeoutError) as exc:
        raise JobError(
            f"Temporal did not answer within {timeout:g}s, so job {job.pk}'s workflow is not "
            "stopped yet; the stop is recorded and nothing will be attached. Try again."
        ) from exc
    except TemporalUnavailable as exc:
        bridge.forget_client()
        raise JobError(
            f"Temporal is unreachable ({exc}), so job {job.pk}'s workflow is not stopped yet; "
            "the stop is recorded and nothing will be attached. Try again."
        ) from exc
    if not still_open:  # e.g. terminated by an operator: nothing else will finish this row
        services.mark_cancelled(job.pk, reason="Cancelled; its workflow was no longer running.")
        log.info("job cancelled; workflow had closed", extra=extra)
        return _marked(job, "its workflow was no longer running")
    log.info("workflow cancellation requested", extra=extra)
    return f"Cancellation of job {job.pk} was requested; it stops within a few seconds."
