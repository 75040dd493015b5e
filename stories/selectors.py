"""Reads scoped to their owner: someone else's story or page is a 404, never a leak."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Max, Min, QuerySet
from django.shortcuts import get_object_or_404

from stories.models import Page, Story


def stories_for(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Story]:
    return Story.objects.filter(owner_id=user.pk)


def story_for(user: AbstractBaseUser | AnonymousUser, story_id: int) -> Story:
    return get_object_or_404(stories_for(user), pk=story_id)


def page_for(user: AbstractBaseUser | AnonymousUser, page_id: int) -> Page:
    return get_object_or_404(
        Page.objects.select_related("story"), pk=page_id, story__owner_id=user.pk
    )


def pages_of(story: Story) -> QuerySet[Page]:
    return story.pages.order_by("order")


def refresh_text(page: Page) -> Page:
    """Re-read the page's text and place in one query. (`refresh_from_db(fields=...)` costs
    three here: OrderedModel's __init__ reads the deferred story of the partial instance.)"""
    row = Page.objects.filter(pk=page.pk).values("content", "order", "updated_at").get()
    page.content, page.order, page.updated_at = row["content"], row["order"], row["updated_at"]
    return page


def is_first_and_last(page: Page) -> tuple[bool, bool]:
    """Whether the page is its story's first and last: one query."""
    ends = Page.objects.filter(story_id=page.story_id).aggregate(
        first=Min("order"), last=Max("order")
    )
    return page.order == ends["first"], page.order == ends["last"]
