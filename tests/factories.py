import factory
from django.contrib.auth import get_user_model

from ai.models import AiJob
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


def make_ai_job(page: Page | None = None, **fields: object) -> AiJob:
    """An AiJob row for a page as the product writes it (a finished one unless told otherwise)."""
    page = page or PageFactory(content="Moss was sad.")
    values = {
        "job_type": AiJob.JobType.PAGE_TEXT,
        "target": page,
        "labels": {"story_id": page.story_id, "page_id": page.pk},
        "attach_activity": "attach_page_text",
        "requested_by": page.story.owner,
        "template_key": "page_content",
        "template_version": "1",
        "model_name": "openai/fake-storyteller",
        "prompt_payload": {"story_title": page.story.title, "mode": "revise"},
        "previous_content": page.content,
        "status": AiJob.Status.SUCCEEDED,
        **fields,
    }
    job = AiJob.objects.create(**values)
    job.workflow_id = AiJob.workflow_id_for(job.pk)
    job.save(update_fields=["workflow_id"])
    return job
