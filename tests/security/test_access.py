"""Who may do what, checked for EVERY endpoint of the editor (a new URL without a row in
ENDPOINTS fails `test_every_editor_endpoint_is_covered`):

* anonymous visitors are sent to log in, and nothing changes;
* another author gets 404 (never 403: no hint that the story exists), and nothing changes;
* job ids are only found under their own page: guessing one under any other page is 404;
* every POST needs a CSRF token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from ai.models import AiJob
from stories import services
from stories import urls as story_urls
from stories.models import Page, Story
from tests.factories import PageFactory, StoryFactory, UserFactory

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


@dataclass
class Owned:
    story: Story
    page: Page
    job: AiJob


Args = Callable[[Owned], list[object]]
STORY: Args = lambda o: [o.story.pk]  # noqa: E731
PAGE: Args = lambda o: [o.page.pk]  # noqa: E731
JOB: Args = lambda o: [o.page.pk, o.job.pk]  # noqa: E731

# url name -> (methods it answers, its arguments)
ENDPOINTS: dict[str, tuple[tuple[str, ...], Args]] = {
    "stories:list": (("GET", "POST"), lambda o: []),
    "stories:detail": (("GET",), STORY),
    "stories:edit": (("GET", "POST"), STORY),
    "stories:delete": (("GET", "POST"), STORY),
    "stories:page_add": (("POST",), STORY),
    "stories:page_card": (("GET",), PAGE),
    "stories:page_save": (("POST",), PAGE),
    "stories:page_delete": (("GET", "POST"), PAGE),
    "stories:page_move": (("POST",), lambda o: [o.page.pk, "up"]),
    "stories:page_generate": (("POST",), PAGE),
    "stories:page_try_again": (("POST",), PAGE),
    "stories:page_job": (("GET",), JOB),
    "stories:page_stop": (("POST",), JOB),
    "stories:page_undo": (("POST",), JOB),
    "stories:page_pick": (("POST",), JOB),
}
JOB_ENDPOINTS = [name for name, (_, args) in ENDPOINTS.items() if args is JOB]
CASES = [(name, method) for name, (methods, _) in ENDPOINTS.items() for method in methods]
FORM = {"title": "Hijacked", "description": "x", "content": "hijacked", "after": ""}


@pytest.fixture(autouse=True)
def no_workflows(monkeypatch):
    monkeypatch.setattr("ai.queue.queue_ai_job_soon", lambda job: None)


@pytest.fixture
def owned() -> Owned:
    """An author's story with two pages, and a finished AI job on the first."""
    owner = UserFactory()
    story = StoryFactory(owner=owner, title="Their story")
    page = PageFactory(story=story, content="their words")
    PageFactory(story=story, content="their second page")
    job = services.request_page_text(page=page, user=owner)
    AiJob.objects.filter(pk=job.pk).update(
        status=AiJob.Status.SUCCEEDED, applied=False, output_text="their AI text"
    )
    job.refresh_from_db()
    return Owned(story=story, page=page, job=job)


def snapshot() -> tuple:
    return (
        list(Story.objects.order_by("pk").values_list("pk", "title", "description")),
        list(Page.objects.order_by("pk").values_list("pk", "story_id", "order", "content")),
        list(
            AiJob.objects.order_by("pk").values_list(
                "pk", "status", "cancel_requested_at", "undone_at", "picked_at"
            )
        ),
    )


def call(client: Client, method: str, url: str, **extra):
    if method == "GET":
        return client.get(url, **extra)
    return client.post(url, FORM, **extra)


def test_every_editor_endpoint_is_covered():
    names = {f"stories:{p.name}" for p in story_urls.urlpatterns}
    assert names == set(ENDPOINTS), "add the new endpoint to ENDPOINTS (and its rules)"


@pytest.mark.parametrize(("name", "method"), CASES)
def test_anonymous_visitors_are_sent_to_log_in(client, owned, name, method):
    before = snapshot()
    url = reverse(name, args=ENDPOINTS[name][1](owned))
    for extra in ({}, HX):
        response = call(client, method, url, **extra)
        assert response.status_code == 302, (name, method)
        assert response["Location"].startswith(reverse("login"))
    assert snapshot() == before


@pytest.mark.parametrize(("name", "method"), [c for c in CASES if c[0] != "stories:list"])
def test_another_author_gets_404_and_changes_nothing(owned, name, method):
    stranger = Client()
    stranger.force_login(UserFactory())
    before = snapshot()
    url = reverse(name, args=ENDPOINTS[name][1](owned))
    for extra in ({}, HX):
        response = call(stranger, method, url, **extra)
        assert response.status_code == 404, (name, method, response.status_code)
        assert b"their words" not in response.content
        assert b"their AI text" not in response.content
    assert snapshot() == before


def test_the_story_list_shows_only_my_own(owned):
    stranger = Client()
    stranger.force_login(UserFactory())
    assert b"Their story" not in stranger.get(reverse("stories:list")).content


@pytest.mark.parametrize("name", JOB_ENDPOINTS)
def test_job_ids_are_only_found_under_their_own_page(owned, name):
    owner = Client()
    owner.force_login(owned.story.owner)
    other_page = owned.story.pages.exclude(pk=owned.page.pk).get()
    my_other_job = services.request_page_text(page=other_page, user=owned.story.owner)
    stranger = UserFactory()
    theirs = services.request_page_text(
        page=PageFactory(story=StoryFactory(owner=stranger), content="x"), user=stranger
    )
    method = ENDPOINTS[name][0][0]
    before = snapshot()
    for job_id in (my_other_job.pk, theirs.pk, 987654):  # mine elsewhere, theirs, no such job
        response = call(owner, method, reverse(name, args=[owned.page.pk, job_id]), **HX)
        assert response.status_code == 404, (name, job_id)
    assert snapshot() == before


@pytest.mark.parametrize(
    "name", [name for name, (methods, _) in ENDPOINTS.items() if "POST" in methods]
)
def test_every_editor_post_needs_a_csrf_token(owned, name):
    owner = Client(enforce_csrf_checks=True)
    owner.force_login(owned.story.owner)
    before = snapshot()
    url = reverse(name, args=ENDPOINTS[name][1](owned))
    assert owner.post(url, FORM, **HX).status_code == 403
    assert owner.post(url, FORM).status_code == 403
    assert snapshot() == before
    # The same request with the token goes through the CSRF check (whatever the view answers).
    token = owner.get(reverse("stories:detail", args=[owned.story.pk])).cookies["csrftoken"].value
    response = owner.post(url, FORM, HTTP_X_CSRFTOKEN=token, **HX)
    assert response.status_code != 403


@pytest.mark.parametrize("name", ["login", "logout", "signup", "password_change"])
def test_account_posts_need_a_csrf_token(name):
    user = UserFactory()
    client = Client(enforce_csrf_checks=True)
    if name in ("logout", "password_change"):
        client.force_login(user)
    data = {"username": user.username, "password": "correct horse battery"}
    assert client.post(reverse(name), data).status_code == 403


def test_the_jobs_admin_is_for_staff_only(owned):
    url = reverse("admin:ai_aijob_changelist")
    author = Client()
    author.force_login(owned.story.owner)
    response = author.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    staff = get_user_model().objects.create_user("staffer", password="x", is_staff=True)
    author.force_login(staff)
    assert author.get(url).status_code == 403  # staff without the permission
    detail = reverse("admin:ai_aijob_change", args=[owned.job.pk])
    assert author.get(detail).status_code == 403
