from django.conf import settings
from django.db import models
from django.urls import reverse
from ordered_model.models import OrderedModel


class Story(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stories"
    )
    title = models.CharField(max_length=settings.STORY_TITLE_MAX_CHARS)
    description = models.TextField("summary", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        verbose_name_plural = "stories"
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("stories:detail", kwargs={"story_id": self.pk})


class Page(OrderedModel):
    story = models.ForeignKey(Story, on_delete=models.CASCADE, related_name="pages")
    content = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    order_with_respect_to = "story"

    class Meta(OrderedModel.Meta):
        indexes = [models.Index(fields=["story", "order"])]

    def __str__(self) -> str:
        return f"{self.story} — page {self.number}"

    @property
    def number(self) -> int:
        """1-based position for people; `order` is 0-based and may have gaps after deletes."""
        annotated = getattr(self, "position", None)
        if annotated is not None:
            return annotated
        return self.story.pages.filter(order__lt=self.order).count() + 1
