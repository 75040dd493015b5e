from ai.management.commands._temporal_command import TemporalCommand
from ai.reconcile import reconcile_once
from ai.temporal import bridge


class Command(TemporalCommand):
    help = "Start every queued AI job whose workflow never started (Temporal was down)."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--older-than",
            type=float,
            default=5.0,
            help="Only jobs queued at least this many seconds ago.",
        )

    def handle(self, *args: object, **options: object) -> None:
        async def go() -> int:
            return await reconcile_once(
                await bridge.client(), older_than_s=float(options["older_than"])
            )  # type: ignore[arg-type]

        started = bridge.run(go(), timeout=300)
        self.stdout.write(f"started {started} queued job(s)")
