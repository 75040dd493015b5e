import asyncio

from django.core.management.base import BaseCommand

from temporal_worker.worker import run


class Command(BaseCommand):
    help = "Run the Temporal worker (workflows and activities of ai and stories)."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--reconcile-every",
            type=float,
            default=30.0,
            help="Seconds between starts of queued jobs whose workflow never started.",
        )

    def handle(self, *args: object, **options: object) -> None:
        asyncio.run(run(reconcile_every_s=float(options["reconcile_every"])))  # type: ignore[arg-type]
