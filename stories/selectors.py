"""Reads scoped to their owner: someone else's story or page is a 404, never a leak."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
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
