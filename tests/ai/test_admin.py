"""The AI job admin: list, filters, search, the detail page, escaping of every author/model text,
and the retry/cancel actions."""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from ai import queue
from ai.models import AiJob
from tests.factories import PageFactory, UserFactory, make_ai_job

pytestmark = pytest.mark.django_db
Status = AiJob.Status
CHANGELIST = reverse("admin:ai_aijob_changelist")
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
HOSTILE = f"{SCRIPT}{IMG}"


def change_url(job: AiJob) -> str:
    return reverse("admin:ai_aijob_change", args=[job.pk])


def make_job(page=None, **fields) -> AiJob:
    return make_ai_job(page, **fields)


def listed_ids(response) -> set[int]:
    return {job.pk for job in response.context["cl"].result_list}


def test_changelist_shows_the_columns(admin_client):
    now = timezone.now()
    job = make_job(
        usage_tokens=53,
        cost_usd="0.0123",
        attempts=3,
        started_at=now - timedelta(seconds=12.5),
        completed_at=now,
        output_text="The moon rolled down the hill.",
    )

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    html = response.content.decode()
    for text in (
        "Succeeded",
        "Page text generation",
        "openai/fake-storyteller",
        "53",
        "0.0123",
        "12.5 s",
        job.requested_by.username,
        "The moon rolled down the hill.",
    ):
        assert text in html, text


def test_filters_by_status_type_model_and_date(admin_client):
    failed = make_job(status=Status.FAILED, model_name="openai/gpt-4o-mini")
    ok = make_job(status=Status.SUCCEEDED)
    old = make_job(status=Status.SUCCEEDED)
    AiJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=30))

    def ids(**query: str) -> set[int]:
        response = admin_client.get(CHANGELIST, query)
        assert response.status_code == 200
        return listed_ids(response)

    assert ids(status__exact="failed") == {failed.pk}
    assert ids(job_type__exact="page_text_generation") == {failed.pk, ok.pk, old.pk}
    assert ids(model_name="openai/gpt-4o-mini") == {failed.pk}
    # The date filter's "Past 7 days" link.
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    since, until = str(today - timedelta(days=7)), str(today + timedelta(days=1))
    assert ids(created_at__gte=since, created_at__lt=until) == {
        failed.pk,
        ok.pk,
    }


def test_search_by_job_id_workflow_id_and_page(admin_client):
    jobs = [make_job() for _ in range(3)]
    target = jobs[1]

    def ids(q: str) -> set[int]:
        response = admin_client.get(CHANGELIST, {"q": q})
        assert response.status_code == 200
        return listed_ids(response)

    assert target.pk in ids(str(target.pk))
    assert ids(target.workflow_id) == {target.pk}
    assert ids(str(target.target_object_id)) >= {target.pk}
    assert ids("no-such-thing") == set()  # a word where ids are numbers: no error


def test_change_page_shows_the_whole_story_of_the_job(admin_client, settings):
    settings.TEMPORAL_UI_URL = "http://localhost:8233"
    page = PageFactory(content="Moss felt a small, grey sadness.")
    job = make_job(
        page,
        status=Status.SUCCEEDED,
        previous_content="Moss was sad.",
        prompt_payload={"story_title": "Moss and the Moon", "page_number": 2},
        rendered_prompt="Please revise page 2.",
        output_text="Moss felt a small, grey sadness.",
        run_id="01a2-run",
        queued_at=timezone.now(),
    )

    response = admin_client.get(change_url(job))

    assert response.status_code == 200
    html = response.content.decode()
    assert "&quot;story_title&quot;: &quot;Moss and the Moon&quot;" in html  # pretty JSON
    assert "&quot;page_number&quot;: 2" in html
    assert "Please revise page 2." in html
    assert "Moss was sad." in html  # before
    assert html.count("Moss felt a small, grey sadness.") >= 2  # the output, and the page now
    assert (
        f'href="http://localhost:8233/namespaces/default/workflows/{job.workflow_id}'
        '/01a2-run/history"'
    ) in html
    assert 'name="_save"' not in html  # read-only: no save buttons
    assert "Delete" not in html


def test_change_page_of_a_job_with_a_deleted_page_and_no_workflow(admin_client):
    job = make_job(status=Status.PENDING, queue_error="Temporal unreachable: boom")
    job.target.delete()

    html = admin_client.get(change_url(job)).content.decode()

    assert "(the target no longer exists)" in html
    assert "The workflow has not started yet." in html
    assert "Temporal unreachable: boom" in html


def test_author_and_model_text_is_escaped_everywhere(admin_client):
    hostile_user = UserFactory(username="mallory<b>")
    page = PageFactory(content=HOSTILE, story__owner=hostile_user)
    job = make_job(
        page,
        status=Status.FAILED,
        requested_by=hostile_user,
        model_name=HOSTILE,
        prompt_payload={"current_content": HOSTILE},
        rendered_prompt=HOSTILE,
        previous_content=HOSTILE,
        output_text=HOSTILE,
        replaced_content=HOSTILE,
        error=HOSTILE,
        error_kind="auth",
    )

    for url in (change_url(job), CHANGELIST, f"{CHANGELIST}?q={job.pk}"):
        html = admin_client.get(url).content.decode()
        assert SCRIPT not in html, url
        assert "<img src=x" not in html, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, url
        assert "&lt;img src=x onerror=alert(1)&gt;" in html, url
        assert "mallory&lt;b&gt;" in html, url


def _post_action(client, action: str, jobs: list[AiJob]):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [j.pk for j in jobs]},
        follow=True,
    )


def test_retry_action_retries_failed_jobs_and_refuses_the_others(
    admin_client, admin_user, django_capture_on_commit_callbacks
):
    failed = make_job(status=Status.FAILED)
    succeeded = make_job(status=Status.SUCCEEDED)

    with django_capture_on_commit_callbacks() as callbacks:
        response = _post_action(admin_client, "retry_jobs", [failed, succeeded])

    assert response.status_code == 200
    new = AiJob.objects.get(retry_of=failed)
    assert new.status == Status.PENDING
    assert new.requested_by == admin_user
    assert not AiJob.objects.filter(retry_of=succeeded).exists()
    shown = [str(m) for m in response.context["messages"]]
    assert f"Retried as new jobs: {failed.pk} → {new.pk}." in shown
    assert any(f"Job {succeeded.pk} is succeeded" in m for m in shown)
    assert [c.args for c in callbacks if isinstance(c, functools.partial)] == [(new.pk,)]
    assert all(c.func is queue.queue_ai_job for c in callbacks if isinstance(c, functools.partial))


def test_cancel_action_cancels_a_job_that_never_started(admin_client):
    stranded = make_job(status=Status.PENDING, queue_error="Temporal unreachable")
    done = make_job(status=Status.SUCCEEDED)

    response = _post_action(admin_client, "cancel_jobs", [stranded, done])

    stranded.refresh_from_db()
    assert stranded.status == Status.CANCELLED
    shown = [str(m) for m in response.context["messages"]]
    assert f"Job {stranded.pk} was cancelled (its workflow had not started)." in shown
    assert f"Job {done.pk} is already succeeded." in shown


def test_view_only_staff_see_jobs_but_no_actions(client):
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_aijob"))
    client.force_login(viewer)
    job = make_job(status=Status.FAILED)

    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert "retry_jobs" not in response.content.decode()
    _post_action(client, "retry_jobs", [job])
    assert not AiJob.objects.filter(retry_of=job).exists()


def test_jobs_cannot_be_added_deleted_or_edited(admin_client):
    job = make_job(status=Status.FAILED, output_text="original")

    assert admin_client.get(reverse("admin:ai_aijob_add")).status_code == 403
    assert admin_client.get(reverse("admin:ai_aijob_delete", args=[job.pk])).status_code == 403
    admin_client.post(change_url(job), {"output_text": "edited", "status": "succeeded"})
    job.refresh_from_db()
    assert job.output_text == "original"
    assert job.status == Status.FAILED


def test_every_job_field_has_a_place_on_the_change_page(admin_client):
    job = make_job()
    response = admin_client.get(change_url(job))
    shown = {
        name for _, options in response.context["adminform"].fieldsets for name in options["fields"]
    }
    formatted = response.context["adminform"].model_admin.SHOWN_FORMATTED
    assert {f.name for f in AiJob._meta.fields} <= shown | formatted
    assert "More" not in [title for title, _ in response.context["adminform"].fieldsets]
