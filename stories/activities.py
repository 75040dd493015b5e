"""The `stories` side of page generation: apply the generated text to its page."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ai import services as ai_services
from ai.db import db_activity
from ai.models import AiJob
from ai.workflows.types import STOPPED_KIND, AttachInput, AttachResult
from stories.models import Page

log = logging.getLogger(__name__)

ALTERNATIVE = "Another version, kept beside the page's text until the author picks one."
KEPT_AUTHOR_TEXT = (
    "The page was edited while the AI was writing, so the author's text was kept; "
    "the AI text is offered as a suggestion."
)


@activity.defn(name="attach_page_text")
@db_activity
def attach_page_text(inp: AttachInput) -> AttachResult:
    """Write the text to the page and mark the job succeeded in ONE transaction: the job never
    says succeeded while the page lacks the text, and a retry after a commit finds it done."""
    with transaction.atomic():
        job = AiJob.objects.select_for_update().get(pk=inp.job_id)
        if job.status == AiJob.Status.SUCCEEDED:
            return AttachResult(applied=bool(job.applied), note="already attached")
        if job.status != AiJob.Status.RUNNING:
            raise ApplicationError(
                f"The job is {job.get_status_display().lower()}; nothing was attached.",
                type="job_finished",
                non_retryable=True,
            )
        if job.cancel_requested_at is not None:
            raise ApplicationError(
                "Generation was stopped; nothing was attached.",
                type=STOPPED_KIND,
                non_retryable=True,
            )
        page = Page.objects.select_for_update().filter(pk=job.target_object_id).first()
        if page is None:
            raise ApplicationError(
                "The page was deleted while its text was being generated.",
                type="target_deleted",
                non_retryable=True,
            )
        if job.apply_mode == AiJob.ApplyMode.SUGGEST:
            ai_services.mark_succeeded(job, applied=False, note=ALTERNATIVE)
            return AttachResult(applied=False, note=ALTERNATIVE)
        if page.content != job.previous_content:
            ai_services.mark_succeeded(job, applied=False, note=KEPT_AUTHOR_TEXT)
            log.info("author text kept; AI text left as suggestion", extra={"job_id": job.pk})
            return AttachResult(applied=False, note=KEPT_AUTHOR_TEXT)
        replaced = page.content
        limit = settings.PAGE_CONTENT_MAX_CHARS
        note = (
            f"The AI wrote {len(inp.text)} characters; a page holds {limit}, so it was cut."
            if len(inp.text) > limit
            else ""
        )
        page.content = inp.text[:limit]
        page.save(update_fields=["content", "updated_at"])
        ai_services.mark_succeeded(job, applied=True, replaced_content=replaced, note=note)
    log.info("text attached", extra={"job_id": job.pk, "page_id": page.pk})
    return AttachResult(applied=True)
