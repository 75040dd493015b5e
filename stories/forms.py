from django import forms
from django.conf import settings


class StoryForm(forms.Form):
    title = forms.CharField(max_length=settings.STORY_TITLE_MAX_CHARS, strip=True)
    description = forms.CharField(
        label="Summary",
        required=False,
        max_length=settings.STORY_DESCRIPTION_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class PageContentForm(forms.Form):
    content = forms.CharField(
        required=False,
        strip=False,
        max_length=settings.PAGE_CONTENT_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 6}),
    )
    # Fingerprint of the text the author started from (see services.content_fingerprint).
    base = forms.CharField(required=False, widget=forms.HiddenInput)
