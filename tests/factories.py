import factory
from django.contrib.auth import get_user_model

from stories.models import Page, Story


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"author{n}")
    password = factory.django.Password("correct horse battery")


class StoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Story

    owner = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"The Tale of Moss {n}")
    description = "A mossy little tale about a brave snail."


class PageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Page

    story = factory.SubFactory(StoryFactory)
    content = factory.Sequence(lambda n: f"Page text {n}.")
