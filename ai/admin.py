"""The operators' view of AI jobs: what was asked, what came back, what it cost, what it changed,
and a link to the run in the Temporal UI. Jobs are written by the product only: the page is
read-only, and retry/cancel go through `ai.operations`.

Every value that came from an author or a model is rendered through `format_html`/auto-escaping,
never marked safe.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from ai import operations
from ai.models import AiJob
from ai.services import JobError

EMPTY = "—"


def _pre(text: str | None) -> SafeString | str:
    if not text:
        return EMPTY
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


def _admin_link(obj: Any) -> SafeString | str:
    """A link to `obj`'s admin page when its model is registered, else its text."""
    meta = obj._meta
    try:
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return str(obj)
    return format_html('<a href="{}">{}</a>', url, obj)


@admin.register(AiJob)
class AiJobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "status",
        "job_type",
        "model_name",
        "tokens",
        "cost_usd",
        "attempts",
        "duration",
        "requested_by",
        "created_at",
        "output_excerpt",
    )
    list_filter = ("status", "job_type", "model_name", "created_at")
    search_fields = ("=id", "workflow_id", "=target_object_id")
    search_help_text = "Job id, workflow id (ai-job-…) or page id."
    list_select_related = ("requested_by",)
    date_hierarchy = "created_at"
    actions = ("retry_jobs", "cancel_jobs")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "status",
                    "job_type",
                    "apply_mode",
                    "requested_by",
                    "target_link",
                    "labels",
                    "retry_of_link",
                    "retries_links",
                )
            },
        ),
        (
            "Temporal",
            {
                "fields": (
                    "temporal_link",
                    "workflow_id",
                    "run_id",
                    "attach_activity",
                    "attempts",
                    "queue_error_text",
                )
            },
        ),
        (
            "Timing",
            {
                "fields": (
                    "created_at",
                    "queued_at",
                    "started_at",
                    "completed_at",
                    "duration",
                    "cancel_requested_at",
                    "picked_at",
                    "undone_at",
                    "updated_at",
                )
            },
        ),
        (
            "Model and cost",
            {
                "fields": (
                    "model_name",
                    "template_key",
                    "template_version",
                    "prompt_tokens",
                    "completion_tokens",
                    "usage_tokens",
                    "cost_usd",
                )
            },
        ),
        ("Prompt", {"fields": ("prompt_payload_json", "rendered_prompt_text")}),
        (
            "Result",
            {"fields": ("output_text_pre", "applied", "error_text", "error_kind")},
        ),
        ("The page", {"fields": ("content_before", "content_after", "replaced_content_text")}),
    )
    # Model fields shown above through a formatted field (or not at all: the generic target).
    SHOWN_FORMATTED = frozenset(
        {
            "target_content_type",
            "target_object_id",
            "prompt_payload",
            "rendered_prompt",
            "output_text",
            "partial_text",
            "error",
            "previous_content",
            "replaced_content",
            "queue_error",
            "retry_of",
        }
    )
    readonly_fields = (
        *(f.name for f in AiJob._meta.fields),
        "tokens",
        "duration",
        "target_link",
        "retry_of_link",
        "retries_links",
        "temporal_link",
        "queue_error_text",
        "prompt_payload_json",
        "rendered_prompt_text",
        "output_text_pre",
        "error_text",
        "content_before",
        "content_after",
        "replaced_content_text",
    )

    def get_fieldsets(self, request: HttpRequest, obj: AiJob | None = None) -> Any:
        # A field added to AiJob later still shows up, under "More", until it gets a place.
        listed = {name for _, options in self.fieldsets for name in options["fields"]}
        rest = [
            f.name
            for f in AiJob._meta.fields
            if f.name not in listed and f.name not in self.SHOWN_FORMATTED
        ]
        return [*self.fieldsets, ("More", {"fields": rest})] if rest else list(self.fieldsets)

    # -- permissions: the product writes jobs; people only look, retry and cancel

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AiJob | None = None) -> bool:
        return False  # the audit trail of what was generated and what it cost

    def save_model(self, request: HttpRequest, obj: AiJob, form: Any, change: bool) -> None:
        # Every field is read-only: a full-row save would only race the worker's updates.
        return None

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    # -- list columns

    @admin.display(description="tokens", ordering="usage_tokens")
    def tokens(self, job: AiJob) -> int | str:
        return EMPTY if job.usage_tokens is None else job.usage_tokens

    @admin.display(description="duration")
    def duration(self, job: AiJob) -> str:
        seconds = job.duration_s
        return EMPTY if seconds is None else f"{seconds:.1f} s"

    @admin.display(description="output")
    def output_excerpt(self, job: AiJob) -> str:
        return Truncator(job.output_text or job.error).chars(60) or EMPTY

    # -- detail fields

    @admin.display(description="target")
    def target_link(self, job: AiJob) -> SafeString | str:
        target = job.target
        if target is None:
            return f"{job.target_content_type} {job.target_object_id} (deleted)"
        return _admin_link(target)

    @admin.display(description="retry of")
    def retry_of_link(self, job: AiJob) -> SafeString | str:
        return _admin_link(job.retry_of) if job.retry_of else EMPTY

    @admin.display(description="retried as")
    def retries_links(self, job: AiJob) -> SafeString | str:
        retries = list(job.retries.order_by("created_at"))
        if not retries:
            return EMPTY
        return format_html_join(", ", "{}", ((_admin_link(r),) for r in retries))

    @admin.display(description="Temporal UI")
    def temporal_link(self, job: AiJob) -> SafeString | str:
        url = operations.temporal_ui_url(job)
        if not url or (job.queued_at is None and not job.run_id):
            return "The workflow has not started yet."
        return format_html(
            '<a href="{}" target="_blank" rel="noopener noreferrer">Open this run\'s history</a>',
            url,
        )

    @admin.display(description="why not started")
    def queue_error_text(self, job: AiJob) -> SafeString | str:
        return _pre(job.queue_error)

    @admin.display(description="prompt payload")
    def prompt_payload_json(self, job: AiJob) -> SafeString | str:
        return _pre(json.dumps(job.prompt_payload, indent=2, ensure_ascii=False, sort_keys=True))

    @admin.display(description="rendered prompt")
    def rendered_prompt_text(self, job: AiJob) -> SafeString | str:
        return _pre(job.rendered_prompt)

    @admin.display(description="output")
    def output_text_pre(self, job: AiJob) -> SafeString | str:
        return _pre(job.output_text or job.partial_text)

    @admin.display(description="error")
    def error_text(self, job: AiJob) -> SafeString | str:
        return _pre(job.error)

    @admin.display(description="before (when requested)")
    def content_before(self, job: AiJob) -> SafeString | str:
        return _pre(job.previous_content) if job.previous_content else "(blank)"

    @admin.display(description="text it replaced (what Undo puts back)")
    def replaced_content_text(self, job: AiJob) -> SafeString | str:
        return _pre(job.replaced_content)

    @admin.display(description="after (now)")
    def content_after(self, job: AiJob) -> SafeString | str:
        content = operations.target_content(job)
        if content is None:
            return "(the target no longer exists)"
        return _pre(content) if content else "(blank)"

    # -- actions: thin shims over ai.operations

    @admin.action(description="Retry failed jobs", permissions=["change"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[AiJob]) -> None:
        done: list[str] = []
        for job in queryset.order_by("pk"):
            try:
                new = operations.retry_job(job, by=request.user)
            except JobError as exc:
                self.message_user(request, exc.message, messages.WARNING)
            else:
                done.append(f"{job.pk} → {new.pk}")
        if done:
            self.message_user(request, f"Retried as new jobs: {', '.join(done)}.", messages.SUCCESS)

    @admin.action(description="Cancel running jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[AiJob]) -> None:
        for job in queryset.order_by("pk"):
            try:
                message = operations.cancel_job(job)
            except JobError as exc:
                self.message_user(request, exc.message, messages.WARNING)
            else:
                self.message_user(request, message, messages.SUCCESS)
