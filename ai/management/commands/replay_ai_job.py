"""Replay an AI job's workflow run against the current GenerateText code (see replay_workflow)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from ai.management.commands._temporal_command import TemporalCommand
from ai.management.commands.replay_workflow import UNREADABLE, replay_from_temporal, report
from ai.models import AiJob


class Command(TemporalCommand):
    help = (
        "Fetch an AI job's workflow history from Temporal and replay it against the current "
        "workflow code. Prints OK, or the event where the code diverges (exit code 1)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("job_id", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        job = AiJob.objects.filter(pk=options["job_id"]).first()
        if job is None:
            raise CommandError(f"There is no AI job {options['job_id']}.", returncode=UNREADABLE)
        if not job.workflow_id or (job.queued_at is None and not job.run_id):
            raise CommandError(
                f"Job {job.pk}'s workflow has not started; there is no history.",
                returncode=UNREADABLE,
            )
        outcome = replay_from_temporal(job.workflow_id, job.run_id or None)
        report(self, outcome)
