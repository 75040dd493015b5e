"""The audit row of one AI generation. The Temporal history says how it ran; this row says what
was asked, what came back, what it cost and what it changed, and links to that history."""

from decimal import Decimal

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q


class AiJob(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATUSES = (Status.PENDING, Status.RUNNING)
    FINISHED_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    class JobType(models.TextChoices):
        PAGE_TEXT = "page_text_generation", "Page text generation"

    class ApplyMode(models.TextChoices):
        REPLACE = "replace", "Replace the text"
        SUGGEST = "suggest", "Offer as an alternative"

    job_type = models.CharField(max_length=40, choices=JobType.choices)
    # "suggest": a "Try again" version kept beside the current text until the author picks it.
    apply_mode = models.CharField(
        max_length=10, choices=ApplyMode.choices, default=ApplyMode.REPLACE
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)

    # What the job writes to, without `ai` knowing the model: `stories` names it.
    target_content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT)
    target_object_id = models.PositiveBigIntegerField()
    target = GenericForeignKey("target_content_type", "target_object_id")
    # Ids for search attributes and log lines (e.g. {"story_id": 7, "page_id": 3}).
    labels = models.JSONField(default=dict, blank=True)
    # The activity that applies the output, registered by the app that owns the target.
    attach_activity = models.CharField(max_length=100)

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="ai_jobs",
    )
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )

    template_key = models.CharField(max_length=100)
    template_version = models.CharField(max_length=20)
    model_name = models.CharField(max_length=200)
    prompt_payload = models.JSONField(default=dict, blank=True)
    rendered_prompt = models.TextField(blank=True)
    previous_content = models.TextField(blank=True)
    # What the page held right before this job's text went in (at attach, or when picked):
    # what "Undo" puts back.
    replaced_content = models.TextField(blank=True)

    output_text = models.TextField(blank=True)
    partial_text = models.TextField(blank=True)
    # None until the attach step ran; False when the author's newer text was kept and the output
    # stays here as a suggestion.
    applied = models.BooleanField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    usage_tokens = models.PositiveIntegerField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal("0"))
    attempts = models.PositiveIntegerField(default=0)

    workflow_id = models.CharField(max_length=200, blank=True, db_index=True)
    run_id = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=40, blank=True)
    # Why the workflow has not started yet (Temporal unreachable); the reconciler retries.
    queue_error = models.TextField(blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # The author pressed Stop: from then on nothing may be attached, even by a late activity.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # The author undid this AI write (the page got previous_content back); once only.
    undone_at = models.DateTimeField(null=True, blank=True)
    # The author chose this version (a suggestion or an alternative) for the page.
    picked_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "AI job"
        indexes = [
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["target_content_type", "target_object_id", "-created_at"]),
            models.Index(fields=["requested_by", "-created_at"]),
        ]
        constraints = [
            # A double click or a second tab joins the running job instead of starting another.
            models.UniqueConstraint(
                fields=["target_content_type", "target_object_id"],
                condition=Q(status__in=["pending", "running"]),
                name="ai_one_active_job_per_target",
            ),
        ]

    def __str__(self) -> str:
        return f"AI job {self.pk} ({self.get_status_display()})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.completed_at:
            return (self.completed_at - self.started_at).total_seconds()
        return None

    @staticmethod
    def workflow_id_for(job_id: int) -> str:
        return f"ai-job-{job_id}"
