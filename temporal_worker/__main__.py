import asyncio
import os

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from temporal_worker.worker import run

    asyncio.run(run())


if __name__ == "__main__":
    main()
