import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from ai.models import AiJob
from stories import services
from stories.models import Page, Story
from tests.factories import PageFactory, StoryFactory, UserFactory

pytestmark = pytest.mark.django_db


def texts(story: Story) -> list[str]:
    return list(story.pages.order_by("order").values_list("content", flat=True))


def orders(story: Story) -> list[int]:
    return list(story.pages.order_by("order").values_list("order", flat=True))


def three_pages() -> tuple[Story, list[Page]]:
    story = StoryFactory()
    pages = [PageFactory(story=story, content=t) for t in ("one", "two", "three")]
    return story, pages


class TestStoryServices:
    def test_create_strips_and_starts_with_a_blank_page(self, user):
        story = services.story_create(owner=user, title="  Moss  ", description=" A snail. ")
        assert (story.title, story.description, story.owner) == ("Moss", "A snail.", user)
        assert texts(story) == [""]

    @pytest.mark.parametrize("title", ["", "   "])
    def test_create_refuses_an_empty_title(self, user, title):
        with pytest.raises(ValidationError) as err:
            services.story_create(owner=user, title=title)
        assert "title" in err.value.message_dict
        assert not Story.objects.exists()

    def test_create_refuses_a_too_long_title(self, user, settings):
        with pytest.raises(ValidationError, match="under"):
            services.story_create(owner=user, title="x" * (settings.STORY_TITLE_MAX_CHARS + 1))

    def test_create_refuses_a_too_long_summary(self, user, settings):
        too_long = "x" * (settings.STORY_DESCRIPTION_MAX_CHARS + 1)
        with pytest.raises(ValidationError, match="summary"):
            services.story_create(owner=user, title="Ok", description=too_long)

    def test_update(self):
        story = StoryFactory(title="Old")
        services.story_update(story=story, title="New", description="Now with a summary")
        story.refresh_from_db()
        assert (story.title, story.description) == ("New", "Now with a summary")

    def test_update_refuses_empty_title_and_keeps_the_old_one(self):
        story = StoryFactory(title="Old")
        with pytest.raises(ValidationError):
            services.story_update(story=story, title="", description="x")
        story.refresh_from_db()
        assert story.title == "Old"

    def test_delete_removes_its_pages(self):
        story, _ = three_pages()
        services.story_delete(story=story)
        assert not Story.objects.exists() and not Page.objects.exists()


class TestPageServices:
    def test_add_at_the_end(self):
        story, _ = three_pages()
        page = services.page_add(story=story, content="four")
        assert texts(story) == ["one", "two", "three", "four"]
        assert page.order == 3

    def test_add_after_a_page(self):
        story, pages = three_pages()
        services.page_add(story=story, after=pages[0], content="one and a half")
        assert texts(story) == ["one", "one and a half", "two", "three"]
        assert orders(story) == [0, 1, 2, 3]

    def test_add_after_a_page_of_another_story_is_refused(self):
        story, _ = three_pages()
        stranger = PageFactory()
        with pytest.raises(ValidationError, match="another story"):
            services.page_add(story=story, after=stranger)
        assert texts(story) == ["one", "two", "three"]

    def test_add_respects_the_page_cap(self, settings):
        settings.STORY_MAX_PAGES = 3
        story, _ = three_pages()
        with pytest.raises(ValidationError, match="at most 3 pages"):
            services.page_add(story=story)
        assert story.pages.count() == 3

    def test_update_content(self):
        _, pages = three_pages()
        services.page_update_content(page=pages[1], content="TWO\r\nlines")
        pages[1].refresh_from_db()
        assert pages[1].content == "TWO\nlines"

    def test_update_refuses_too_long_text_and_keeps_the_saved_text(self, settings):
        _, pages = three_pages()
        with pytest.raises(ValidationError, match="at most"):
            services.page_update_content(
                page=pages[0], content="x" * (settings.PAGE_CONTENT_MAX_CHARS + 1)
            )
        pages[0].refresh_from_db()
        assert pages[0].content == "one"

    def test_update_on_a_stale_base_is_refused_not_clobbered(self):
        _, pages = three_pages()
        base = services.content_fingerprint("one")
        services.page_update_content(page=pages[0], content="changed in another tab")
        with pytest.raises(ValidationError, match="changed since"):
            services.page_update_content(page=pages[0], content="mine", base_fingerprint=base)
        pages[0].refresh_from_db()
        assert pages[0].content == "changed in another tab"

    def test_update_with_a_current_base_saves(self):
        _, pages = three_pages()
        base = services.content_fingerprint("one")
        services.page_update_content(page=pages[0], content="mine", base_fingerprint=base)
        pages[0].refresh_from_db()
        assert pages[0].content == "mine"

    def test_delete_closes_the_gap(self):
        story, pages = three_pages()
        services.page_delete(page=pages[1])
        assert texts(story) == ["one", "three"]
        assert orders(story) == [0, 1]

    @pytest.mark.parametrize(
        ("index", "direction", "expected"),
        [
            (1, "up", ["two", "one", "three"]),
            (1, "down", ["one", "three", "two"]),
            (0, "up", ["one", "two", "three"]),  # already first: stays
            (2, "down", ["one", "two", "three"]),  # already last: stays
            (2, "up", ["one", "three", "two"]),
        ],
    )
    def test_move(self, index, direction, expected):
        story, pages = three_pages()
        services.page_move(page=pages[index], direction=direction)
        assert texts(story) == expected
        assert orders(story) == [0, 1, 2]

    def test_move_only_touches_its_own_story(self):
        story, pages = three_pages()
        other, other_pages = three_pages()
        services.page_move(page=pages[2], direction="up")
        assert texts(other) == ["one", "two", "three"]
        assert orders(other) == [0, 1, 2]

    def test_move_refuses_an_unknown_direction(self):
        _, pages = three_pages()
        with pytest.raises(ValidationError):
            services.page_move(page=pages[0], direction="sideways")  # type: ignore[arg-type]


class TestPromptContext:
    def test_blank_page_asks_to_continue_with_every_other_page_in_order(self):
        story, pages = three_pages()
        blank = services.page_add(story=story, after=pages[0])
        context = services.page_prompt_context(story=story, page=blank)
        assert context["mode"] == "continue"
        assert context["current_content"] == ""
        assert context["page_number"] == 2
        assert context["existing_pages"] == [
            {"order": 0, "content": "one"},
            {"order": 2, "content": "two"},
            {"order": 3, "content": "three"},
        ]
        assert context["story_title"] == story.title
        assert context["story_description"] == story.description

    def test_page_with_text_asks_to_revise_it(self):
        story, pages = three_pages()
        context = services.page_prompt_context(story=story, page=pages[1])
        assert context["mode"] == "revise"
        assert context["current_content"] == "two"
        assert [p["content"] for p in context["existing_pages"]] == ["one", "three"]

    def test_builds_the_context_in_one_query(self, django_assert_num_queries):
        story, pages = three_pages()
        for _ in range(20):
            PageFactory(story=story)
        with django_assert_num_queries(1):
            services.page_prompt_context(story=story, page=pages[0])


class TestRequestPageText:
    def test_writes_a_pending_job_and_queues_it_on_commit(
        self, django_capture_on_commit_callbacks, monkeypatch
    ):
        story, pages = three_pages()
        queued = []
        monkeypatch.setattr("ai.queue.queue_ai_job_soon", queued.append)
        with django_capture_on_commit_callbacks(execute=True):
            job = services.request_page_text(page=pages[1], user=story.owner)
        assert queued == [job]
        assert job.status == AiJob.Status.PENDING
        assert job.target == pages[1]
        assert job.requested_by == story.owner
        assert job.previous_content == "two"
        assert job.prompt_payload["current_content"] == "two"
        assert job.labels == {"story_id": story.pk, "page_id": pages[1].pk}
        assert job.template_key in ("page_content", "page_content_completion")
        assert job.template_version
        assert job.workflow_id == f"ai-job-{job.pk}"

    def test_a_second_request_joins_the_active_job(
        self, django_capture_on_commit_callbacks, monkeypatch
    ):
        story, pages = three_pages()
        queued = []
        monkeypatch.setattr("ai.queue.queue_ai_job_soon", queued.append)
        with django_capture_on_commit_callbacks(execute=True):
            first = services.request_page_text(page=pages[0], user=story.owner)
        with django_capture_on_commit_callbacks(execute=True):
            second = services.request_page_text(page=pages[0], user=story.owner)
        assert first.pk == second.pk
        assert queued == [first]
        assert AiJob.objects.count() == 1

    def test_only_the_owner_may_request(self):
        story, pages = three_pages()
        with pytest.raises(PermissionDenied):
            services.request_page_text(page=pages[0], user=UserFactory())
        assert not AiJob.objects.exists()

    def test_rate_limit_refuses_politely(self, settings, monkeypatch):
        from ai.services import RateLimited

        settings.AI_RATE_LIMIT_PER_MINUTE = 2
        monkeypatch.setattr("ai.queue.queue_ai_job_soon", lambda job: None)
        story, pages = three_pages()
        for page in pages[:2]:
            services.request_page_text(page=page, user=story.owner)
        with pytest.raises(RateLimited, match="limit is 2"):
            services.request_page_text(page=pages[2], user=story.owner)
