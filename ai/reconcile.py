"""Start every queued job whose workflow never started (Temporal was down when it was asked).

Safe to run anywhere, any number of times: the workflow id is the job's and duplicates are
rejected, so a job is started at most once."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from django.utils import timezone
from temporalio.client import Client

from ai import services
from ai.db import run_db
from ai.models import AiJob
from ai.queue import start_job_workflow

log = logging.getLogger(__name__)


def stranded_jobs(older_than_s: float = 5.0, limit: int = 500) -> list[AiJob]:
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    return list(
        AiJob.objects.filter(
            status=AiJob.Status.PENDING, queued_at__isnull=True, created_at__lte=cutoff
        ).order_by("created_at")[:limit]
    )


async def reconcile_once(client: Client, *, older_than_s: float = 5.0) -> int:
    started = 0
    for job in await run_db(stranded_jobs, older_than_s):
        try:
            run_id = await start_job_workflow(client, job)
        except Exception as exc:  # noqa: BLE001 - leave it queued for the next round
            await run_db(services.mark_queue_failed, job.pk, reason=f"{type(exc).__name__}: {exc}")
            log.warning("could not start stranded job", extra={"job_id": job.pk})
            continue
        await run_db(services.mark_queued, job.pk, run_id=run_id)
        started += 1
        log.info("started stranded job", extra={"job_id": job.pk, "run_id": run_id})
    return started


async def reconcile_forever(client: Client, *, every_s: float) -> None:
    while True:
        try:
            await reconcile_once(client)
        except Exception:
            log.exception("reconcile round failed")
        await asyncio.sleep(every_s)
