"""Thin views: parse input, call a service or selector, render. HTMX requests get the fragment
they target (an inline partial); plain requests get a redirect or the full page, so the editor
keeps working without JavaScript."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling, trigger_client_event

from ai import services as ai_services
from ai.models import AiJob
from ai.operations import cancel_job
from stories import selectors, services
from stories.forms import PageContentForm, StoryForm
from stories.models import Page, Story

DETAIL = "stories/story_detail.html"


def _error_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _apply_errors(form: Any, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def _notify(response: HttpResponse, message: str, level: str = "error") -> HttpResponse:
    return trigger_client_event(response, "notify", {"level": level, "message": message})


# --- Stories ------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def story_list(request: HttpRequest) -> HttpResponse:
    form = StoryForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            story = services.story_create(owner=request.user, **form.cleaned_data)
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            return redirect(story)
    status = 422 if request.method == "POST" else 200
    stories = selectors.stories_for(request.user)
    return render(
        request, "stories/story_list.html", {"stories": stories, "form": form}, status=status
    )


HISTORY_SIZE = 8


def _jobs_by_page(page_ids: Iterable[int] | QuerySet[Any]) -> dict[int, list[AiJob]]:
    jobs_by_page: dict[int, list[AiJob]] = {}
    jobs = (
        ai_services.jobs_for(Page, page_ids)
        .defer("prompt_payload", "rendered_prompt")  # the card never shows them
        .order_by("-created_at", "-id")
    )
    for job in jobs:
        jobs_by_page.setdefault(job.target_object_id, []).append(job)
    return jobs_by_page


# Jobs are always read BEFORE their pages. The attach step writes the page and finishes its job
# in one transaction, so a page read after its jobs is never older than them; the other order
# can pair a finished job with the text it replaced, and the editor would show that stale text
# as the final result. (Jobs older than their page are harmless: the poller catches up.)


def _page_cards(story: Story, edit_id: int | None = None) -> list[dict[str, Any]]:
    """Every page with its generation state: three queries however many pages there are."""
    jobs_by_page = _jobs_by_page(selectors.pages_of(story).values("pk"))
    pages = list(selectors.pages_of(story))
    return [
        _card(
            page,
            jobs_by_page.get(page.pk, []),
            is_first=index == 0,
            is_last=index == len(pages) - 1,
            editing=page.pk == edit_id,
        )
        for index, page in enumerate(pages)
    ]


def _recent_jobs(page: Page) -> list[AiJob]:
    """The page's jobs, newest first, and then the page's text re-read (see above)."""
    jobs = _jobs_by_page([page.pk]).get(page.pk, [])
    selectors.refresh_text(page)
    return jobs


def _card(
    page: Page,
    jobs: list[AiJob],
    *,
    is_first: bool | None = None,
    is_last: bool | None = None,
    editing: bool = False,
    focus: bool = False,
    form: PageContentForm | None = None,
) -> dict[str, Any]:
    """What one page card shows, derived from the page and its jobs (newest first), so a
    reload shows exactly the state the author left: generating, failed, undoable, alternatives."""
    if is_first is None or is_last is None:
        is_first, is_last = selectors.is_first_and_last(page)
    job = jobs[0] if jobs else None
    generating = job is not None and job.is_active
    last_applied = next((j for j in jobs if j.applied), None)
    # The newest AI write not yet undone, while its text is still what the page holds (undoing
    # one write makes the one before it undoable in turn).
    candidate = next((j for j in jobs if j.applied and j.undone_at is None), None)
    undoable = candidate if candidate and page.content == candidate.output_text else None
    suggestions = [
        j
        for j in jobs
        if j.status == AiJob.Status.SUCCEEDED
        and j.applied is False
        and j.output_text
        and (last_applied is None or j.created_at > last_applied.created_at)
    ][:3]
    return {
        "page": page,
        "job": job,
        "generating": generating,
        "editing": editing or generating or form is not None,
        "focus": focus,
        "is_first": is_first,
        "is_last": is_last,
        "base": services.content_fingerprint(page.content),
        "max_chars": settings.PAGE_CONTENT_MAX_CHARS,
        "form": form,
        "content": form.data.get("content", page.content) if form is not None else page.content,
        "undoable": None if generating else undoable,
        "can_try_again": not generating and undoable is not None,
        "suggestions": [] if generating else suggestions,
        "failed_job": job if job and job.status == AiJob.Status.FAILED else None,
        "history": jobs[:HISTORY_SIZE],
    }


def _render_card(request: HttpRequest, card: dict[str, Any], status: int = 200) -> HttpResponse:
    return render(
        request, f"{DETAIL}#page-card", {"card": card, "story": card["page"].story}, status=status
    )


@login_required
@require_GET
def story_detail(request: HttpRequest, story_id: int) -> HttpResponse:
    story = selectors.story_for(request.user, story_id)
    edit = request.GET.get("edit", "")
    cards = _page_cards(story, edit_id=int(edit) if edit.isdigit() else None)
    return render(request, DETAIL, {"story": story, "cards": cards})


@login_required
@require_http_methods(["GET", "POST"])
def story_edit(request: HttpRequest, story_id: int) -> HttpResponse:
    story = selectors.story_for(request.user, story_id)
    initial = {"title": story.title, "description": story.description}
    form = StoryForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.story_update(story=story, **form.cleaned_data)
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            return redirect(story)
    status = 422 if request.method == "POST" else 200
    return render(request, "stories/story_form.html", {"story": story, "form": form}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def story_delete(request: HttpRequest, story_id: int) -> HttpResponse:
    story = selectors.story_for(request.user, story_id)
    if request.method == "POST":
        services.story_delete(story=story)
        return redirect("stories:list")
    return render(request, "stories/confirm_delete.html", {"object": story, "story": story})


# --- Pages --------------------------------------------------------------------------------------


@login_required
@require_POST
def page_add(request: HttpRequest, story_id: int) -> HttpResponse:
    story = selectors.story_for(request.user, story_id)
    after_id = request.POST.get("after", "")
    after = get_object_or_404(story.pages, pk=after_id) if after_id.isdigit() else None
    try:
        page = services.page_add(story=story, after=after)
    except ValidationError as exc:
        if request.htmx:
            return _notify(HttpResponse(status=422), _error_text(exc))
        return render(
            request,
            DETAIL,
            {"story": story, "cards": _page_cards(story), "error": _error_text(exc)},
            status=422,
        )
    if request.htmx:
        return _render_pages(request, story, edit_id=page.pk)
    return redirect(f"{story.get_absolute_url()}?edit={page.pk}#page-{page.pk}")


def _render_pages(request: HttpRequest, story: Story, edit_id: int | None = None) -> HttpResponse:
    cards = _page_cards(story, edit_id=edit_id)
    return render(request, f"{DETAIL}#page-list", {"story": story, "cards": cards})


@login_required
@require_GET
def page_card(request: HttpRequest, page_id: int) -> HttpResponse:
    page = selectors.page_for(request.user, page_id)
    editing = request.GET.get("mode") == "edit"
    if not request.htmx:
        suffix = f"?edit={page.pk}" if editing else ""
        return redirect(f"{page.story.get_absolute_url()}{suffix}#page-{page.pk}")
    return _render_card(request, _card(page, _recent_jobs(page), editing=editing, focus=editing))


@login_required
@require_POST
def page_save(request: HttpRequest, page_id: int) -> HttpResponse:
    page = selectors.page_for(request.user, page_id)
    form = PageContentForm(request.POST)
    if form.is_valid():
        try:
            page = services.page_update_content(
                page=page,
                content=form.cleaned_data["content"],
                base_fingerprint=form.cleaned_data["base"] or None,
            )
        except ValidationError as exc:
            _apply_errors(form, exc)
    if form.errors:
        # The author's text comes back in the textarea with the reason: nothing is lost.
        card = _card(page, _recent_jobs(page), form=form, focus=True)
        if request.htmx:
            return _render_card(request, card, status=422)
        story = page.story
        cards = [card if c["page"].pk == page.pk else c for c in _page_cards(story)]
        return render(request, DETAIL, {"story": story, "cards": cards}, status=422)
    if request.htmx:
        return _render_card(request, _card(page, _recent_jobs(page)))
    return redirect(f"{page.story.get_absolute_url()}#page-{page.pk}")


@login_required
@require_http_methods(["GET", "POST"])
def page_delete(request: HttpRequest, page_id: int) -> HttpResponse:
    page = selectors.page_for(request.user, page_id)
    story = page.story
    if request.method == "POST":
        services.page_delete(page=page)
        if request.htmx:
            return _render_pages(request, story)
        return redirect(story)
    return render(request, "stories/confirm_delete.html", {"object": page, "story": story})


@login_required
@require_POST
def page_move(request: HttpRequest, page_id: int, direction: str) -> HttpResponse:
    page = selectors.page_for(request.user, page_id)
    try:
        services.page_move(page=page, direction=direction)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise Http404(_error_text(exc)) from exc
    if request.htmx:
        return _render_pages(request, page.story)
    return redirect(f"{page.story.get_absolute_url()}#page-{page.pk}")


# --- Generate with AI ---------------------------------------------------------------------------


@login_required
@require_POST
def page_generate(request: HttpRequest, page_id: int, alternative: bool = False) -> HttpResponse:
    page = selectors.page_for(request.user, page_id)
    if "content" in request.POST:
        # The wand submits the editor's form: keep the author's unsaved words first, so the AI
        # revises what they see and a failure restores exactly that.
        form = PageContentForm(request.POST)
        try:
            if not form.is_valid():
                raise ValidationError(form.errors.as_data().get("content", ["Invalid text."]))
            if form.cleaned_data["content"].replace("\r\n", "\n") != page.content:
                page = services.page_update_content(
                    page=page,
                    content=form.cleaned_data["content"],
                    base_fingerprint=form.cleaned_data["base"] or None,
                )
        except ValidationError as exc:
            _apply_errors(form, exc)
            card = _card(page, _recent_jobs(page), form=form, focus=True)
            if request.htmx:
                return _render_card(request, card, status=422)
            return render(
                request,
                DETAIL,
                {"story": page.story, "cards": _page_cards(page.story), "error": _error_text(exc)},
                status=422,
            )
    try:
        services.request_page_text(page=page, user=request.user, alternative=alternative)
    except ai_services.JobError as exc:
        if request.htmx:
            return _notify(
                _render_card(request, _card(page, _recent_jobs(page), editing=True)), exc.message
            )
        return render(
            request,
            DETAIL,
            {"story": page.story, "cards": _page_cards(page.story), "error": exc.message},
            status=429,
        )
    if request.htmx:
        response = _render_card(request, _card(page, _recent_jobs(page)))
        return trigger_client_event(
            response, "announce", {"message": f"The AI is writing page {page.order + 1}."}
        )
    return redirect(f"{page.story.get_absolute_url()}#page-{page.pk}")


@login_required
@require_GET
def page_job(request: HttpRequest, page_id: int, job_id: int) -> HttpResponse:
    """The editor polls this while a job runs. It answers the card: still generating (with the
    partial text), or finished (the new text, or the original text and a notification)."""
    page = selectors.page_for(request.user, page_id)
    job = get_object_or_404(ai_services.jobs_for(Page, [page.pk]), pk=job_id)
    if not request.htmx:
        return redirect(f"{page.story.get_absolute_url()}#page-{page.pk}")
    if job.is_active and request.GET.get("seen") == str(job.updated_at.timestamp()):
        return HttpResponse(status=204)  # nothing new since the card the editor shows: 2 queries
    jobs = _recent_jobs(page)  # one read: the card and the decision below see the same state
    job = next(j for j in jobs if j.pk == job.pk)
    if job.is_active:
        return _render_card(request, _card(page, jobs))
    response = _render_card(request, _card(page, jobs, editing=True, focus=True))
    stop = HttpResponseStopPolling(response.content, headers=dict(response.headers))
    if job.status == AiJob.Status.FAILED:
        return _notify(stop, job.error or "Generation failed. Your text is unchanged.")
    if job.status == AiJob.Status.CANCELLED:
        return _notify(stop, "Generation stopped. Your text is unchanged.", "info")
    if job.applied is False:
        return _notify(
            stop,
            "You edited this page meanwhile, so your text was kept. "
            "The AI text is shown as a suggestion.",
            "info",
        )
    return _notify(stop, "New text is in. Edit it freely.", "success")


@login_required
@require_POST
def page_try_again(request: HttpRequest, page_id: int) -> HttpResponse:
    """Another version of the page's last AI text, kept beside it for the author to pick."""
    return page_generate(request, page_id, alternative=True)


def _page_and_job(request: HttpRequest, page_id: int, job_id: int) -> tuple[Page, AiJob]:
    page = selectors.page_for(request.user, page_id)
    return page, get_object_or_404(ai_services.jobs_for(Page, [page.pk]), pk=job_id)


def _after_change(request: HttpRequest, page: Page, message: str, level: str) -> HttpResponse:
    if request.htmx:
        card = _card(page, _recent_jobs(page), editing=True, focus=True)
        return _notify(_render_card(request, card), message, level)
    return redirect(f"{page.story.get_absolute_url()}#page-{page.pk}")


@login_required
@require_POST
def page_stop(request: HttpRequest, page_id: int, job_id: int) -> HttpResponse:
    """The Stop button: nothing is attached after this, and the page keeps its text."""
    page, job = _page_and_job(request, page_id, job_id)
    if not job.is_active:
        return _after_change(request, page, "The AI had already finished.", "info")
    ai_services.request_cancel(job.pk)
    try:
        cancel_job(job)
    except ai_services.JobError as exc:
        # The stop is recorded on the job all the same: the attach step will refuse to write.
        return _after_change(request, page, f"Stopping: {exc.message}", "info")
    return _after_change(request, page, "Stopped. Your text is unchanged.", "info")


def _apply_version(
    request: HttpRequest, page_id: int, job_id: int, change: Any, done: str
) -> HttpResponse:
    """Undo or pick: a service that swaps the page's text for a job's, then the card."""
    page, job = _page_and_job(request, page_id, job_id)
    try:
        page = change(page=page, job_id=job.pk)
    except ValidationError as exc:
        return _after_change(request, page, _error_text(exc), "error")
    return _after_change(request, page, done, "success")


@login_required
@require_POST
def page_undo(request: HttpRequest, page_id: int, job_id: int) -> HttpResponse:
    return _apply_version(
        request, page_id, job_id, services.page_undo_ai, "The AI text was undone."
    )


@login_required
@require_POST
def page_pick(request: HttpRequest, page_id: int, job_id: int) -> HttpResponse:
    return _apply_version(
        request,
        page_id,
        job_id,
        services.page_pick_version,
        "Switched to that version (Undo brings yours back).",
    )
