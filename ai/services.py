"""Every write to an AiJob. Each transition is guarded: a job never moves backwards, and a
finished job is never rewritten (a replayed or duplicated activity finds it done and returns)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, models, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from ai.models import AiJob
from ai.prompts import TEMPLATE_FOR_FAMILY, library

log = logging.getLogger(__name__)
Status = AiJob.Status


class JobError(Exception):
    """A request the job cannot take; `message` is for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RateLimited(JobError):
    pass


class InvalidTransition(JobError):
    pass


@dataclass(frozen=True)
class JobRequest:
    target: models.Model
    job_type: str
    requested_by: AbstractBaseUser | None
    prompt_payload: dict[str, Any]
    previous_content: str
    attach_activity: str
    labels: dict[str, int]
    apply_mode: str = AiJob.ApplyMode.REPLACE


def prompts():
    return library(str(settings.PROMPTS_DIR))


def active_job_for(target: models.Model) -> AiJob | None:
    ct = ContentType.objects.get_for_model(target)
    return (
        AiJob.objects.filter(
            target_content_type=ct, target_object_id=target.pk, status__in=AiJob.ACTIVE_STATUSES
        )
        .order_by("-created_at")
        .first()
    )


def jobs_for(
    target_model: type[models.Model], ids: Iterable[int] | models.QuerySet[Any]
) -> models.QuerySet[AiJob]:
    ct = ContentType.objects.get_for_model(target_model)
    return AiJob.objects.filter(target_content_type=ct, target_object_id__in=ids)


def check_rate_limit(user: AbstractBaseUser | None) -> None:
    limit = settings.AI_RATE_LIMIT_PER_MINUTE
    if user is None or limit <= 0:
        return
    with transaction.atomic(savepoint=False):  # inside the caller's: no savepoint needed
        # Lock the author's row until the caller's transaction ends: clicks on different stories
        # (whose story locks do not meet) would otherwise all count the same jobs and all pass.
        users = get_user_model()._default_manager
        list(users.select_for_update().filter(pk=user.pk).values("pk"))
        since = timezone.now() - timedelta(minutes=1)
        recent = AiJob.objects.filter(requested_by=user, created_at__gte=since).count()
    if recent >= limit:
        raise RateLimited(
            f"You have asked for {recent} generations in the last minute (the limit is {limit}). "
            "Please wait a moment and try again."
        )


def create_job(request: JobRequest, *, retry_of: AiJob | None = None) -> tuple[AiJob, bool]:
    """Write a pending job, or return the target's active one: (job, created).

    Runs inside the caller's transaction; the caller queues the workflow on commit. A partial
    unique index makes "one active job per target" hold even for two simultaneous clicks."""
    existing = active_job_for(request.target)
    if existing is not None:
        return existing, False
    check_rate_limit(request.requested_by)
    family = settings.AI_PROMPT_FAMILY
    key = TEMPLATE_FOR_FAMILY[family]
    job = AiJob(
        job_type=request.job_type,
        target_content_type=ContentType.objects.get_for_model(request.target),
        target_object_id=request.target.pk,
        labels=request.labels,
        attach_activity=request.attach_activity,
        requested_by=request.requested_by,
        retry_of=retry_of,
        template_key=key,
        template_version=prompts().version(key),
        model_name=settings.AI_MODEL,
        prompt_payload=request.prompt_payload,
        previous_content=request.previous_content,
        apply_mode=request.apply_mode,
    )
    try:
        with transaction.atomic():  # a savepoint: losing the race must not poison the caller
            job.save()
    except IntegrityError:
        winner = active_job_for(request.target)
        if winner is None:
            raise
        return winner, False
    job.workflow_id = AiJob.workflow_id_for(job.pk)
    job.save(update_fields=["workflow_id"])
    return job, True


def _locked(job_id: int) -> AiJob:
    return AiJob.objects.select_for_update().get(pk=job_id)


def mark_queued(job_id: int, *, run_id: str) -> None:
    """Temporal accepted the start. One UPDATE, no lock (this runs on every click): the first
    queued time and run id win, whoever writes first (this or the worker's mark_running)."""
    now = timezone.now()
    AiJob.objects.filter(pk=job_id).update(
        queued_at=Coalesce("queued_at", Value(now)),
        run_id=Case(When(run_id="", then=Value(run_id)), default=F("run_id")),
        queue_error="",
        updated_at=now,
    )


@transaction.atomic
def mark_queue_failed(job_id: int, *, reason: str) -> None:
    job = _locked(job_id)
    if job.queued_at is None:
        job.queue_error = reason[:2000]
        job.save(update_fields=["queue_error", "updated_at"])


@transaction.atomic
def mark_running(job_id: int, *, run_id: str, rendered_prompt: str, template_version: str) -> AiJob:
    job = _locked(job_id)
    if job.status not in AiJob.ACTIVE_STATUSES:
        raise InvalidTransition(f"Job {job_id} is {job.status}; it cannot start again.")
    now = timezone.now()
    job.status = Status.RUNNING
    job.started_at = job.started_at or now
    job.queued_at = job.queued_at or now
    job.run_id = run_id
    job.rendered_prompt = rendered_prompt
    job.template_version = template_version
    job.queue_error = ""
    job.save(
        update_fields=[
            "status",
            "started_at",
            "queued_at",
            "run_id",
            "rendered_prompt",
            "template_version",
            "queue_error",
            "updated_at",
        ]
    )
    return job


def record_attempt(job_id: int) -> None:
    """Each model call attempt, local or ordinary (a first attempt re-run after a worker died is
    one more call): the count is the calls made. A retry starts from an empty partial text (no
    two halves glued together)."""
    AiJob.objects.filter(pk=job_id, status=Status.RUNNING).update(
        attempts=F("attempts") + 1, partial_text="", updated_at=timezone.now()
    )


def record_partial(job_id: int, *, text: str) -> bool:
    """The text so far; False when the job is no longer to be written (the author pressed Stop,
    or it finished): the model call should stop too."""
    updated = AiJob.objects.filter(
        pk=job_id, status=Status.RUNNING, cancel_requested_at__isnull=True
    ).update(partial_text=text, updated_at=timezone.now())
    return updated == 1


def record_completion(
    job_id: int,
    *,
    text: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    total_tokens: int,
    cost_usd: Decimal,
) -> None:
    AiJob.objects.filter(pk=job_id, status=Status.RUNNING).update(
        output_text=text,
        partial_text=text,
        model_name=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        usage_tokens=total_tokens,
        cost_usd=cost_usd,
        updated_at=timezone.now(),
    )


def mark_succeeded(
    job: AiJob, *, applied: bool, note: str = "", replaced_content: str = ""
) -> None:
    """Called by the attach activity inside its transaction, with the job row locked, so the
    target's new text and "succeeded" are committed together or not at all."""
    if job.status != Status.RUNNING:
        raise InvalidTransition(f"Job {job.pk} is {job.status}; it cannot succeed.")
    job.status = Status.SUCCEEDED
    job.applied = applied
    job.error = note
    job.replaced_content = replaced_content
    job.completed_at = timezone.now()
    job.save(
        update_fields=[
            "status",
            "applied",
            "error",
            "replaced_content",
            "completed_at",
            "updated_at",
        ]
    )


@transaction.atomic
def request_cancel(job_id: int) -> AiJob:
    """Record the author's Stop before asking Temporal to cancel: from now on the attach step
    refuses to write, even if it was already running when the cancellation arrived."""
    job = _locked(job_id)
    if job.status in AiJob.ACTIVE_STATUSES and job.cancel_requested_at is None:
        job.cancel_requested_at = timezone.now()
        job.save(update_fields=["cancel_requested_at", "updated_at"])
    return job


def mark_undone(job: AiJob) -> None:
    """With the job row locked by the caller, inside the transaction that restores the text."""
    if job.undone_at is not None:
        raise InvalidTransition("This AI text was already undone.")
    job.undone_at = timezone.now()
    job.save(update_fields=["undone_at", "updated_at"])


def mark_picked(job: AiJob, *, replaced_content: str) -> None:
    """The author chose this job's suggestion; locked by the caller like mark_undone."""
    job.applied = True
    job.picked_at = timezone.now()
    job.replaced_content = replaced_content
    job.undone_at = None
    job.save(update_fields=["applied", "picked_at", "replaced_content", "undone_at", "updated_at"])


@transaction.atomic
def mark_failed(job_id: int, *, message: str, kind: str) -> None:
    job = _locked(job_id)
    if job.status in AiJob.FINISHED_STATUSES:
        return  # already recorded (a retried activity)
    if job.cancel_requested_at is not None:
        # The failure is the author's Stop reaching a late step: record it as what it was.
        job.status = Status.CANCELLED
        job.error = "Generation was stopped."
        job.completed_at = timezone.now()
        job.save(update_fields=["status", "error", "completed_at", "updated_at"])
        return
    job.status = Status.FAILED
    job.error = message
    job.error_kind = kind[:40]
    job.completed_at = timezone.now()
    job.save(update_fields=["status", "error", "error_kind", "completed_at", "updated_at"])


@transaction.atomic
def mark_cancelled(job_id: int, *, reason: str = "Cancelled.") -> None:
    job = _locked(job_id)
    if job.status in AiJob.FINISHED_STATUSES:
        return
    job.status = Status.CANCELLED
    job.error = reason
    job.completed_at = timezone.now()
    job.save(update_fields=["status", "error", "completed_at", "updated_at"])
