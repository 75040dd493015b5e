"""Replay one workflow run against the current GenerateText code (logic in ai/replay.py)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from temporalio.service import RPCError

from ai import replay
from ai.management.commands._temporal_command import TemporalCommand
from ai.temporal import TemporalUnavailable

# Exit codes: 1 = the history does not replay (a non-determinism); 2 = it could not be read
# (or nothing to read was given).
DIVERGED, UNREADABLE = 1, 2


def report(command: BaseCommand, outcome: replay.ReplayOutcome) -> None:
    if not outcome.ok:
        raise CommandError(outcome.message, returncode=DIVERGED)
    command.stdout.write(command.style.SUCCESS(outcome.message))


def replay_from_temporal(workflow_id: str, run_id: str | None) -> replay.ReplayOutcome:
    try:
        return replay.replay_from_temporal(workflow_id, run_id)
    except RPCError as exc:
        raise CommandError(
            f"Could not fetch {workflow_id}: {exc.status.name}: {exc.message}",
            returncode=UNREADABLE,
        ) from exc
    except TemporalUnavailable as exc:
        raise CommandError(f"Temporal unreachable at {exc}", returncode=UNREADABLE) from exc


class Command(TemporalCommand):
    help = (
        "Replay a workflow's history (fetched from Temporal, or a JSON file exported with "
        "`temporal workflow show --output json` or the Temporal UI) against the current "
        "workflow code. Prints OK, or the event where the code diverges (exit code 1)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workflow-id", help="e.g. ai-job-42")
        parser.add_argument("--run-id", help="a run of that workflow (default: the latest)")
        parser.add_argument("--from-file", help="a history exported as JSON, instead of fetching")

    def handle(self, *args: Any, **options: Any) -> None:
        workflow_id, run_id, path = options["workflow_id"], options["run_id"], options["from_file"]
        if path:
            try:
                history = replay.load_history_file(path, workflow_id or "")
            except (OSError, replay.HistoryFormatError) as exc:
                raise CommandError(f"Cannot read {path}: {exc}", returncode=UNREADABLE) from exc
            outcome = replay.replay_history(history)
        elif workflow_id:
            outcome = replay_from_temporal(workflow_id, run_id)
        else:
            raise CommandError(
                "Give --workflow-id (to fetch from Temporal) or --from-file.", returncode=UNREADABLE
            )
        report(self, outcome)
