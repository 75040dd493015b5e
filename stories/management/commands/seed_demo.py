"""Create the demo author and a demo story (idempotent): `make run` calls it every start."""

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from stories import services
from stories.models import Story

DEMO_TITLE = "Pip and the Lantern Moon"
DEMO_SUMMARY = (
    "A small hedgehog named Pip sets out to return the moon's lost light before the forest "
    "animals wake up."
)
DEMO_PAGES = [
    "Pip the hedgehog lived under the roots of the oldest oak in Willow Wood. Every night he "
    "watched the moon, round and silver, light the path to the stream.",
    'But one night the moon was dim, as pale as a puddle. "Someone has lost the moon\'s light," '
    "whispered Owl from her branch.",
    "",  # a blank page: click the wand to let the AI write it
]


class Command(BaseCommand):
    help = "Create the demo user (demo / sprout-demo by default) and a demo story."

    @transaction.atomic
    def handle(self, *args: object, **options: object) -> None:
        username = os.environ.get("DEMO_USERNAME", "demo")
        password = os.environ.get("DEMO_PASSWORD", "sprout-demo")
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_password(password)
            user.is_staff = True
            user.is_superuser = True  # the demo author is also the local operator (admin)
            user.save()
        if not Story.objects.filter(owner=user, title=DEMO_TITLE).exists():
            story = services.story_create(owner=user, title=DEMO_TITLE, description=DEMO_SUMMARY)
            first = story.pages.get()
            services.page_update_content(page=first, content=DEMO_PAGES[0])
            for text in DEMO_PAGES[1:]:
                services.page_add(story=story, content=text)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo login: username '{username}', password '{password}' "
                "(also an admin at /admin/)"
                if created
                else f"Demo login: username '{username}' (password unchanged)"
            )
        )
