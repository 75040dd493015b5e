"""Every view, as a plain request and as an HTMX request, plus ownership and bad input."""

import pytest
from django.urls import reverse
from django.utils import timezone

from ai.models import AiJob
from stories import services, views
from stories.models import Page, Story
from tests.factories import PageFactory, StoryFactory

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def started_jobs(monkeypatch):
    """View tests check the web layer; starting workflows is covered by the Temporal tests."""
    started: list[AiJob] = []
    monkeypatch.setattr("ai.queue.queue_ai_job_soon", started.append)
    return started


def texts(story):
    return list(story.pages.order_by("order").values_list("content", flat=True))


class TestAuth:
    def test_pages_need_login(self, client, story):
        for url in [
            reverse("stories:list"),
            reverse("stories:detail", args=[story.pk]),
        ]:
            response = client.get(url)
            assert response.status_code == 302
            assert reverse("login") in response["Location"]

    def test_post_needs_login(self, client, story_page):
        response = client.post(reverse("stories:page_save", args=[story_page.pk]), {"content": "x"})
        assert response.status_code == 302
        story_page.refresh_from_db()
        assert story_page.content == ""

    def test_signup_logs_in_and_lands_on_the_list(self, client):
        response = client.post(
            reverse("signup"),
            {
                "username": "newbie",
                "password1": "a-long-pass-phrase",
                "password2": "a-long-pass-phrase",
            },
        )
        assert response.status_code == 302
        assert response["Location"] == reverse("stories:list")
        assert client.get(reverse("stories:list")).status_code == 200

    def test_signup_with_mismatched_passwords_shows_the_error(self, client):
        response = client.post(
            reverse("signup"),
            {"username": "newbie", "password1": "a-long-pass-phrase", "password2": "different"},
        )
        assert response.status_code == 422
        assert "didn" in response.content.decode()  # "The two password fields didn’t match."

    def test_login_page_renders(self, client):
        response = client.get(reverse("login"))
        assert response.status_code == 200
        assert b"Log in" in response.content

    def test_logout(self, author_client):
        response = author_client.post(reverse("logout"))
        assert response.status_code == 302


class TestStoryViews:
    def test_list_shows_only_my_stories(self, author_client, story, other_user):
        StoryFactory(owner=other_user, title="Not yours")
        response = author_client.get(reverse("stories:list"))
        assert story.title in response.content.decode()
        assert "Not yours" not in response.content.decode()

    def test_create(self, author_client, user):
        response = author_client.post(reverse("stories:list"), {"title": "Moss", "description": ""})
        story = Story.objects.get(owner=user, title="Moss")
        assert response.status_code == 302
        assert response["Location"] == story.get_absolute_url()

    def test_create_with_empty_title_shows_a_form_error(self, author_client, user):
        response = author_client.post(reverse("stories:list"), {"title": "  ", "description": "x"})
        assert response.status_code == 422
        assert "This field is required" in response.content.decode()
        assert not Story.objects.filter(owner=user).exists()

    def test_detail_is_the_editor(self, author_client, story):
        PageFactory(story=story, content="Once upon a time")
        response = author_client.get(reverse("stories:detail", args=[story.pk]))
        body = response.content.decode()
        assert response.status_code == 200
        assert "Once upon a time" in body
        assert 'data-testid="generate-button"' in body
        assert "Generate with AI" in body  # the visible label is the accessible name

    def test_detail_queries_do_not_grow_with_pages(
        self, author_client, story, django_assert_max_num_queries
    ):
        for _ in range(30):
            PageFactory(story=story)
        with django_assert_max_num_queries(8):
            author_client.get(reverse("stories:detail", args=[story.pk]))

    def test_edit(self, author_client, story):
        response = author_client.post(
            reverse("stories:edit", args=[story.pk]), {"title": "Renamed", "description": "d"}
        )
        assert response.status_code == 302
        story.refresh_from_db()
        assert story.title == "Renamed"

    def test_edit_get_and_bad_input(self, author_client, story):
        assert author_client.get(reverse("stories:edit", args=[story.pk])).status_code == 200
        response = author_client.post(reverse("stories:edit", args=[story.pk]), {"title": ""})
        assert response.status_code == 422
        story.refresh_from_db()
        assert story.title

    def test_delete_confirms_then_deletes(self, author_client, story):
        url = reverse("stories:delete", args=[story.pk])
        assert b"cannot be undone" in author_client.get(url).content
        assert author_client.post(url).status_code == 302
        assert not Story.objects.filter(pk=story.pk).exists()

    @pytest.mark.parametrize("name", ["stories:detail", "stories:edit", "stories:delete"])
    def test_someone_elses_story_is_404(self, author_client, other_user, name):
        theirs = StoryFactory(owner=other_user)
        assert author_client.get(reverse(name, args=[theirs.pk])).status_code == 404
        if name != "stories:detail":
            assert (
                author_client.post(reverse(name, args=[theirs.pk]), {"title": "x"}).status_code
                == 404
            )
        assert Story.objects.filter(pk=theirs.pk, title=theirs.title).exists()

    def test_missing_story_is_404(self, author_client):
        assert author_client.get(reverse("stories:detail", args=[999999])).status_code == 404


class TestPageViews:
    def test_save_plain_redirects_and_persists(self, author_client, story_page):
        response = author_client.post(
            reverse("stories:page_save", args=[story_page.pk]), {"content": "Hello"}
        )
        assert response.status_code == 302
        story_page.refresh_from_db()
        assert story_page.content == "Hello"

    def test_save_htmx_returns_the_card_in_view_mode(self, author_client, story_page):
        response = author_client.post(
            reverse("stories:page_save", args=[story_page.pk]),
            {"content": "Hello <b>there</b>"},
            **HX,
        )
        body = response.content.decode()
        assert response.status_code == 200
        assert body.strip().startswith("<article")
        assert "editing: false" in body
        assert "Hello &lt;b&gt;there&lt;/b&gt;" in body  # the author's text is text, not markup

    def test_save_too_long_text_keeps_it_in_the_editor_with_the_reason(
        self, author_client, story_page, settings
    ):
        too_long = "x" * (settings.PAGE_CONTENT_MAX_CHARS + 1)
        response = author_client.post(
            reverse("stories:page_save", args=[story_page.pk]), {"content": too_long}, **HX
        )
        body = response.content.decode()
        assert response.status_code == 422
        assert "at most" in body
        assert too_long in body  # nothing lost: the text comes back
        story_page.refresh_from_db()
        assert story_page.content == ""

    def test_save_on_stale_text_is_a_visible_conflict(self, author_client, story_page):
        base = services.content_fingerprint(story_page.content)
        services.page_update_content(page=story_page, content="from another tab")
        response = author_client.post(
            reverse("stories:page_save", args=[story_page.pk]),
            {"content": "mine", "base": base},
            **HX,
        )
        assert response.status_code == 422
        assert "changed since you started" in response.content.decode()
        assert "mine" in response.content.decode()
        story_page.refresh_from_db()
        assert story_page.content == "from another tab"

    def test_card_get_view_and_edit_mode(self, author_client, story_page):
        url = reverse("stories:page_card", args=[story_page.pk])
        assert "editing: false" in author_client.get(url, **HX).content.decode()
        assert "editing: true" in author_client.get(url + "?mode=edit", **HX).content.decode()
        assert author_client.get(url).status_code == 302  # plain: back to the story

    def test_detail_with_edit_param_opens_that_page_without_js(self, author_client, story_page):
        response = author_client.get(
            reverse("stories:detail", args=[story_page.story.pk]), {"edit": story_page.pk}
        )
        assert "editing: true" in response.content.decode()

    def test_add_at_end_plain_and_htmx(self, author_client, story):
        url = reverse("stories:page_add", args=[story.pk])
        assert author_client.post(url).status_code == 302
        response = author_client.post(url, **HX)
        assert response.status_code == 200
        assert 'id="page-list"' in response.content.decode()
        assert story.pages.count() == 2

    def test_add_after(self, author_client, story):
        a = PageFactory(story=story, content="A")
        PageFactory(story=story, content="B")
        author_client.post(reverse("stories:page_add", args=[story.pk]), {"after": a.pk}, **HX)
        assert texts(story) == ["A", "", "B"]

    def test_add_over_the_cap_is_refused(self, author_client, story, settings):
        settings.STORY_MAX_PAGES = 1
        PageFactory(story=story)
        response = author_client.post(reverse("stories:page_add", args=[story.pk]), **HX)
        assert response.status_code == 422
        assert "at most 1 pages" in response["HX-Trigger"]
        plain = author_client.post(reverse("stories:page_add", args=[story.pk]))
        assert plain.status_code == 422

    def test_delete(self, author_client, story):
        a = PageFactory(story=story, content="A")
        PageFactory(story=story, content="B")
        url = reverse("stories:page_delete", args=[a.pk])
        assert author_client.get(url).status_code == 200  # the no-JS confirmation
        response = author_client.post(url, **HX)
        assert response.status_code == 200
        assert texts(story) == ["B"]

    def test_move(self, author_client, story):
        PageFactory(story=story, content="A")
        b = PageFactory(story=story, content="B")
        response = author_client.post(reverse("stories:page_move", args=[b.pk, "up"]), **HX)
        assert response.status_code == 200
        assert texts(story) == ["B", "A"]
        response = author_client.post(reverse("stories:page_move", args=[b.pk, "down"]))
        assert response.status_code == 302
        assert texts(story) == ["A", "B"]

    def test_move_bad_direction_is_404(self, author_client, story_page):
        url = reverse("stories:page_move", args=[story_page.pk, "sideways"])
        assert author_client.post(url).status_code == 404

    def test_get_on_post_only_views_is_405(self, author_client, story_page):
        assert (
            author_client.get(reverse("stories:page_save", args=[story_page.pk])).status_code == 405
        )
        assert (
            author_client.get(reverse("stories:page_generate", args=[story_page.pk])).status_code
            == 405
        )

    @pytest.mark.parametrize(
        ("name", "args"),
        [
            ("stories:page_save", []),
            ("stories:page_delete", []),
            ("stories:page_move", ["up"]),
            ("stories:page_generate", []),
        ],
    )
    def test_someone_elses_page_is_404_and_untouched(self, author_client, other_user, name, args):
        theirs = PageFactory(story=StoryFactory(owner=other_user), content="their words")
        response = author_client.post(
            reverse(name, args=[theirs.pk, *args]), {"content": "x"}, **HX
        )
        assert response.status_code == 404
        assert "their words" not in response.content.decode()
        assert Page.objects.get(pk=theirs.pk).content == "their words"
        assert not AiJob.objects.exists()

    def test_someone_elses_story_cannot_get_pages(self, author_client, other_user):
        theirs = StoryFactory(owner=other_user)
        response = author_client.post(reverse("stories:page_add", args=[theirs.pk]))
        assert response.status_code == 404
        assert not theirs.pages.exists()

    def test_missing_page_is_404(self, author_client):
        assert (
            author_client.post(
                reverse("stories:page_save", args=[424242]), {"content": "x"}
            ).status_code
            == 404
        )


class TestCsrf:
    def test_posts_need_a_csrf_token(self, user, story_page):
        from django.test import Client

        client = Client(enforce_csrf_checks=True)
        client.force_login(user)
        for url in [
            reverse("stories:page_save", args=[story_page.pk]),
            reverse("stories:page_generate", args=[story_page.pk]),
            reverse("stories:page_add", args=[story_page.story.pk]),
        ]:
            assert client.post(url, {"content": "x"}).status_code == 403
        story_page.refresh_from_db()
        assert story_page.content == ""
        assert not AiJob.objects.exists()


class TestGenerateViews:
    def test_post_returns_the_generating_card(
        self, author_client, story_page, started_jobs, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            response = author_client.post(
                reverse("stories:page_generate", args=[story_page.pk]), **HX
            )
        body = response.content.decode()
        job = AiJob.objects.get()
        assert response.status_code == 200
        assert started_jobs == [job]
        assert "is-generating" in body
        assert "readonly" in body
        assert 'class="spinner"' in body
        assert "Generating…" in body
        assert reverse("stories:page_job", args=[story_page.pk, job.pk]) in body
        assert 'hx-trigger="every' in body

    def test_post_saves_the_unsaved_text_first(self, author_client, story_page):
        base = services.content_fingerprint(story_page.content)
        author_client.post(
            reverse("stories:page_generate", args=[story_page.pk]),
            {"content": "draft the author typed", "base": base},
            **HX,
        )
        story_page.refresh_from_db()
        job = AiJob.objects.get()
        assert story_page.content == "draft the author typed"
        assert job.previous_content == "draft the author typed"
        assert job.prompt_payload["current_content"] == "draft the author typed"

    def test_post_plain_redirects(self, author_client, story_page):
        response = author_client.post(reverse("stories:page_generate", args=[story_page.pk]))
        assert response.status_code == 302
        assert AiJob.objects.count() == 1

    def test_double_click_joins_the_running_job(
        self, author_client, story_page, started_jobs, django_capture_on_commit_callbacks
    ):
        url = reverse("stories:page_generate", args=[story_page.pk])
        with django_capture_on_commit_callbacks(execute=True):
            author_client.post(url, **HX)
        with django_capture_on_commit_callbacks(execute=True):
            author_client.post(url, **HX)
        assert AiJob.objects.count() == 1
        assert len(started_jobs) == 1

    def test_reload_while_generating_restores_the_loading_state(self, author_client, story_page):
        author_client.post(reverse("stories:page_generate", args=[story_page.pk]), **HX)
        body = author_client.get(
            reverse("stories:detail", args=[story_page.story.pk])
        ).content.decode()
        assert "is-generating" in body
        assert "readonly" in body

    def test_status_while_running_keeps_polling_with_partial_text(self, author_client, story_page):
        author_client.post(reverse("stories:page_generate", args=[story_page.pk]), **HX)
        job = AiJob.objects.get()
        AiJob.objects.filter(pk=job.pk).update(status="running", partial_text="Once upon")
        response = author_client.get(
            reverse("stories:page_job", args=[story_page.pk, job.pk]), **HX
        )
        assert response.status_code == 200
        assert "Once upon" in response.content.decode()
        assert 'hx-trigger="every' in response.content.decode()

    def test_status_when_succeeded_stops_polling_with_the_text(self, author_client, story_page):
        author_client.post(reverse("stories:page_generate", args=[story_page.pk]), **HX)
        job = AiJob.objects.get()
        Page.objects.filter(pk=story_page.pk).update(content="Brand new text")
        AiJob.objects.filter(pk=job.pk).update(
            status="succeeded", applied=True, output_text="Brand new text"
        )
        response = author_client.get(
            reverse("stories:page_job", args=[story_page.pk, job.pk]), **HX
        )
        body = response.content.decode()
        assert response.status_code == 286  # htmx: stop polling
        assert "Brand new text" in body
        assert 'data-testid="job-poller"' not in body
        assert "editing: true" in body
        assert "success" in response["HX-Trigger"]

    def test_status_never_pairs_a_finished_job_with_the_text_it_replaced(
        self, author_client, story_page, monkeypatch
    ):
        """The worker's attach commits between the view's read of the page and its read of the
        jobs: the final card must still carry the new text (once polling stops, a stale text
        would stay in the editor)."""
        author_client.post(reverse("stories:page_generate", args=[story_page.pk]), **HX)
        job = AiJob.objects.get()
        AiJob.objects.filter(pk=job.pk).update(status="running")
        real_page_for = views.selectors.page_for

        def page_for_then_attach(user, page_id):
            page = real_page_for(user, page_id)  # the old, blank text
            Page.objects.filter(pk=page_id).update(content="Text the AI just wrote")
            AiJob.objects.filter(pk=job.pk).update(
                status="succeeded", applied=True, output_text="Text the AI just wrote"
            )
            return page

        monkeypatch.setattr(views.selectors, "page_for", page_for_then_attach)
        response = author_client.get(
            reverse("stories:page_job", args=[story_page.pk, job.pk]), **HX
        )
        assert response.status_code == 286
        assert "Text the AI just wrote</textarea>" in response.content.decode()

    def test_status_when_failed_notifies_and_keeps_the_original(self, author_client, story_page):
        Page.objects.filter(pk=story_page.pk).update(content="original")
        author_client.post(reverse("stories:page_generate", args=[story_page.pk]), **HX)
        job = AiJob.objects.get()
        AiJob.objects.filter(pk=job.pk).update(
            status="failed", error="The AI provider rejected our credentials."
        )
        response = author_client.get(
            reverse("stories:page_job", args=[story_page.pk, job.pk]), **HX
        )
        assert response.status_code == 286
        assert "rejected our credentials" in response["HX-Trigger"]
        assert "original" in response.content.decode()
        assert "readonly" not in response.content.decode()

    def test_status_of_someone_elses_job_is_404(self, author_client, story_page, other_user):
        theirs = PageFactory(story=StoryFactory(owner=other_user), content="secret")
        job = services.request_page_text(page=theirs, user=other_user)
        # Guessing the job id under my own story_page, or under theirs: both 404.
        assert (
            author_client.get(
                reverse("stories:page_job", args=[story_page.pk, job.pk]), **HX
            ).status_code
            == 404
        )
        assert (
            author_client.get(
                reverse("stories:page_job", args=[theirs.pk, job.pk]), **HX
            ).status_code
            == 404
        )

    def test_rate_limited_generate_shows_a_clear_message(self, author_client, story_page, settings):
        settings.AI_RATE_LIMIT_PER_MINUTE = 0 + 1
        other = PageFactory(story=story_page.story)
        author_client.post(reverse("stories:page_generate", args=[other.pk]), **HX)
        response = author_client.post(reverse("stories:page_generate", args=[story_page.pk]), **HX)
        assert "limit is 1" in response["HX-Trigger"]
        assert AiJob.objects.count() == 1


class TestPollingEconomy:
    def test_unchanged_running_job_answers_204(
        self, author_client, story_page, django_assert_max_num_queries
    ):
        author_client.post(reverse("stories:page_generate", args=[story_page.pk]), **HX)
        job = AiJob.objects.get()
        url = reverse("stories:page_job", args=[story_page.pk, job.pk])
        seen = str(job.updated_at.timestamp())
        # Every 200 ms per open editor: session, user, page, job, and nothing more.
        with django_assert_max_num_queries(4):
            assert author_client.get(url, {"seen": seen}, **HX).status_code == 204
        # The worker's writes bump updated_at (ai.services.record_partial); so does this one.
        AiJob.objects.filter(pk=job.pk).update(
            status="running", partial_text="Once", updated_at=timezone.now()
        )
        response = author_client.get(url, {"seen": seen}, **HX)
        assert response.status_code == 200
        assert "Once" in response.content.decode()
