"""Every write to stories and pages: one keyword-only, typed, atomic function per use case.

Views parse input and call these; these validate and raise `ValidationError` with a message a
person can act on, so bad input is refused whole and nothing already saved is lost.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from ai import services as ai_services
from ai.models import AiJob
from stories.models import Page, Story

Direction = Literal["up", "down"]


def content_fingerprint(content: str) -> str:
    """A short digest of a page's text. The editor sends back the one it started from, so a save
    made on top of text that changed meanwhile (another tab, an AI write) is refused."""
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def _clean_title(title: str) -> str:
    title = (title or "").strip()
    if not title:
        raise ValidationError({"title": "Give the story a title."})
    if len(title) > settings.STORY_TITLE_MAX_CHARS:
        raise ValidationError(
            {"title": f"Keep the title under {settings.STORY_TITLE_MAX_CHARS} characters."}
        )
    return title


def _clean_description(description: str) -> str:
    description = (description or "").strip()
    limit = settings.STORY_DESCRIPTION_MAX_CHARS
    if len(description) > limit:
        message = f"Keep the summary under {limit} characters ({len(description)} now)."
        raise ValidationError({"description": message})
    return description


def _clean_content(content: str) -> str:
    # Normalise line endings only: the author's words and spacing are theirs.
    content = (content or "").replace("\r\n", "\n")
    limit = settings.PAGE_CONTENT_MAX_CHARS
    if len(content) > limit:
        raise ValidationError(
            {"content": f"A page holds at most {limit} characters; this text has {len(content)}."}
        )
    return content


@transaction.atomic
def story_create(*, owner: AbstractBaseUser, title: str, description: str = "") -> Story:
    story = Story.objects.create(
        owner=owner, title=_clean_title(title), description=_clean_description(description)
    )
    Page.objects.create(story=story, content="")  # a story starts with one blank page to write on
    return story


@transaction.atomic
def story_update(*, story: Story, title: str, description: str) -> Story:
    story.title = _clean_title(title)
    story.description = _clean_description(description)
    story.save(update_fields=["title", "description", "updated_at"])
    return story


@transaction.atomic
def story_delete(*, story: Story) -> None:
    story.delete()


def _touch(story: Story) -> None:
    story.save(update_fields=["updated_at"])


@transaction.atomic
def page_add(*, story: Story, after: Page | None = None, content: str = "") -> Page:
    content = _clean_content(content)
    story = Story.objects.select_for_update().get(pk=story.pk)  # serialises order changes per story
    if story.pages.count() >= settings.STORY_MAX_PAGES:
        raise ValidationError(f"A story holds at most {settings.STORY_MAX_PAGES} pages.")
    if after is not None and after.story_id != story.pk:
        raise ValidationError("That page belongs to another story.")
    page = Page.objects.create(story=story, content=content)
    if after is not None:
        after.refresh_from_db(fields=["order"])
        page.below(after)
    _touch(story)
    return page


@transaction.atomic
def page_update_content(*, page: Page, content: str, base_fingerprint: str | None = None) -> Page:
    """Save the author's text. `base_fingerprint` is the digest of the text the author started
    from; when the page changed since (an AI write, another tab) the save is refused with the
    current text kept, so neither version is lost silently."""
    content = _clean_content(content)
    page = Page.objects.select_for_update().get(pk=page.pk)
    if base_fingerprint and base_fingerprint != content_fingerprint(page.content):
        raise ValidationError(
            {
                "content": "This page changed since you started editing (another tab or an AI "
                "write). Your text is still here: copy it, reload to see the latest, then save."
            }
        )
    page.content = content
    page.save(update_fields=["content", "updated_at"])
    _touch(page.story)
    return page


@transaction.atomic
def page_delete(*, page: Page) -> None:
    story = Story.objects.select_for_update().get(pk=page.story_id)
    Page.objects.get(pk=page.pk).delete()  # fresh row: OrderedModel shifts the pages below it
    _touch(story)


@transaction.atomic
def page_move(*, page: Page, direction: Direction) -> Page:
    """Move a page one place; at either end it stays put. Locking the story first makes concurrent
    moves of the same story's pages queue up instead of interleaving their order updates."""
    if direction not in ("up", "down"):
        raise ValidationError(f"Unknown direction {direction!r}: use 'up' or 'down'.")
    story = Story.objects.select_for_update().get(pk=page.story_id)
    page = Page.objects.get(pk=page.pk)
    if direction == "up":
        page.up()
    else:
        page.down()
    _touch(story)
    return page


# --- AI generation ------------------------------------------------------------------------------


def _page_rows(story: Story) -> list[dict[str, Any]]:
    return list(story.pages.order_by("order").values("id", "order", "content"))


def page_prompt_context(
    *, story: Story, page: Page, pages: list[dict[str, Any]] | None = None
) -> dict[str, object]:
    """Everything the prompt needs, from ONE query for the pages (or the rows given): the title,
    the summary, every other page with text in order, and this page's text (revise it) or none
    (write it)."""
    pages = _page_rows(story) if pages is None else pages
    number = next((i for i, p in enumerate(pages, start=1) if p["id"] == page.pk), len(pages))
    current = next((p["content"] for p in pages if p["id"] == page.pk), page.content)
    return {
        "story_title": story.title,
        "story_description": story.description,
        "existing_pages": [
            {"order": i, "content": p["content"]}
            for i, p in enumerate(pages)
            if p["id"] != page.pk and p["content"].strip()
        ],
        "current_content": current.strip(),
        "page_number": number,
        "mode": "revise" if current.strip() else "continue",
    }


def request_page_text(*, page: Page, user: AbstractBaseUser, alternative: bool = False) -> AiJob:
    """Ask the AI to write (blank page) or revise (page with text) this page.

    Writes a pending AiJob and, once the transaction commits, hands the start of its Temporal
    workflow to the process's Temporal loop (ai.queue: the request does not wait for it); a
    second request while one is active joins it. The page itself is not touched here.
    `alternative` ("Try again") asks the same question as the page's last AI write and keeps
    the answer beside the current text until the author picks one."""
    from ai.queue import queue_ai_job_soon  # Temporal client code: loaded when first needed

    with transaction.atomic():
        story = Story.objects.select_for_update().get(pk=page.story_id)
        if story.owner_id != user.pk:
            raise PermissionDenied("Only the story's owner can generate its pages.")
        pages = _page_rows(story)  # under the story's lock: the text as it is now
        content = next((p["content"] for p in pages if p["id"] == page.pk), None)
        if content is None:
            raise Page.DoesNotExist(f"Page {page.pk} was deleted.")
        payload = page_prompt_context(story=story, page=page, pages=pages)
        if alternative:
            last = (
                ai_services.jobs_for(Page, [page.pk])
                .filter(status=AiJob.Status.SUCCEEDED, applied=True)
                .order_by("-completed_at")
                .first()
            )
            if last is not None:
                # Same ask as the version on the page, with today's neighbouring pages.
                payload = {
                    **payload,
                    "current_content": last.prompt_payload["current_content"],
                    "mode": last.prompt_payload["mode"],
                }
        job, created = ai_services.create_job(
            ai_services.JobRequest(
                target=page,
                job_type=AiJob.JobType.PAGE_TEXT,
                requested_by=user,
                prompt_payload=payload,
                previous_content=content,
                attach_activity="attach_page_text",
                labels={"story_id": story.pk, "page_id": page.pk},
                apply_mode=AiJob.ApplyMode.SUGGEST if alternative else AiJob.ApplyMode.REPLACE,
            )
        )
        if created:
            transaction.on_commit(functools.partial(queue_ai_job_soon, job))
    return job


def _page_job(page: Page, job_id: int) -> tuple[Page, AiJob]:
    page = Page.objects.select_for_update().get(pk=page.pk)
    job = ai_services.jobs_for(Page, [page.pk]).select_for_update().filter(pk=job_id).first()
    if job is None:
        raise ValidationError("That AI version does not belong to this page.")
    return page, job


@transaction.atomic
def page_undo_ai(*, page: Page, job_id: int) -> Page:
    """Put back the text the page had before this AI write. Once, and only while the AI text
    is still what the page holds: undoing over the author's later edits would lose them."""
    page, job = _page_job(page, job_id)
    if not job.applied or job.undone_at is not None:
        raise ValidationError("There is no AI change to undo here.")
    if page.content != job.output_text:
        raise ValidationError(
            "The page changed since the AI wrote it, so undo would lose your edits. "
            "Edit the text by hand instead."
        )
    page.content = job.replaced_content
    page.save(update_fields=["content", "updated_at"])
    ai_services.mark_undone(job)
    _touch(page.story)
    return page


@transaction.atomic
def page_pick_version(*, page: Page, job_id: int) -> Page:
    """Use an AI version that was kept aside (a "Try again" alternative, or text the AI wrote
    while the author was editing). The text it replaces stays on the job, so Undo brings it back."""
    page, job = _page_job(page, job_id)
    if job.status != AiJob.Status.SUCCEEDED or job.applied or not job.output_text:
        raise ValidationError("That version is not available to pick.")
    replaced = page.content
    page.content = _clean_content(job.output_text)
    page.save(update_fields=["content", "updated_at"])
    ai_services.mark_picked(job, replaced_content=replaced)
    _touch(page.story)
    return page
