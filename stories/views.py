"""Thin views: parse input, call a service or selector, render. HTMX requests get the fragment
they target (an inline partial); plain requests get a redirect or the full page, so the editor
keeps working without JavaScript."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling, trigger_client_event

from ai import services as ai_services
from ai.models import AiJob
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


def _page_cards(story: Story, edit_id: int | None = None) -> list[dict[str, Any]]:
    """Every page with its generation state: three queries however many pages there are."""
    pages = list(selectors.pages_of(story))
    jobs_by_page: dict[int, list[AiJob]] = {}
    for job in ai_services.jobs_for(Page, [p.pk for p in pages]).order_by("-created_at"):
        jobs_by_page.setdefault(job.target_object_id, []).append(job)
    cards = []
    for index, page in enumerate(pages):
        jobs = jobs_by_page.get(page.pk, [])
        cards.append(
            _card(
                page,
                jobs[0] if jobs else None,
                is_first=index == 0,
                is_last=index == len(pages) - 1,
                editing=page.pk == edit_id,
            )
        )
    return cards


def _card(
    page: Page,
    job: AiJob | None,
    *,
    is_first: bool | None = None,
    is_last: bool | None = None,
    editing: bool = False,
    focus: bool = False,
    form: PageContentForm | None = None,
) -> dict[str, Any]:
    if is_first is None or is_last is None:
        neighbours = page.story.pages
        is_first = not neighbours.filter(order__lt=page.order).exists()
        is_last = not neighbours.filter(order__gt=page.order).exists()
    generating = job is not None and job.is_active
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
        # A finished job the author has not seen superseded yet: shown on the card.
        "suggestion": job if job and job.applied is False and job.output_text else None,
        "failed_job": job if job and job.status == AiJob.Status.FAILED else None,
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
    return _render_card(request, _card(page, _latest_job(page), editing=editing, focus=editing))


def _latest_job(page: Page) -> AiJob | None:
    return ai_services.jobs_for(Page, [page.pk]).order_by("-created_at").first()


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
        card = _card(page, _latest_job(page), form=form, focus=True)
        if request.htmx:
            return _render_card(request, card, status=422)
        story = page.story
        cards = [card if c["page"].pk == page.pk else c for c in _page_cards(story)]
        return render(request, DETAIL, {"story": story, "cards": cards}, status=422)
    if request.htmx:
        return _render_card(request, _card(page, _latest_job(page)))
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
def page_generate(request: HttpRequest, page_id: int) -> HttpResponse:
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
            card = _card(page, _latest_job(page), form=form, focus=True)
            if request.htmx:
                return _render_card(request, card, status=422)
            return render(
                request,
                DETAIL,
                {"story": page.story, "cards": _page_cards(page.story), "error": _error_text(exc)},
                status=422,
            )
    try:
        job = services.request_page_text(page=page, user=request.user)
    except ai_services.JobError as exc:
        if request.htmx:
            return _notify(
                _render_card(request, _card(page, _latest_job(page), editing=True)), exc.message
            )
        return render(
            request,
            DETAIL,
            {"story": page.story, "cards": _page_cards(page.story), "error": exc.message},
            status=429,
        )
    if request.htmx:
        page.refresh_from_db()
        return _render_card(request, _card(page, job))
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
    if job.is_active:
        return _render_card(request, _card(page, job))
    response = _render_card(request, _card(page, job, editing=True, focus=True))
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
