"""Build and run the Story-Sprout worker."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from temporalio.client import Client
from temporalio.worker import Worker

from ai.activities import AiActivities, LlmConfig, warm_up
from ai.reconcile import reconcile_forever
from ai.temporal import connect
from ai.workflows.text import GenerateText
from stories.activities import attach_page_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    # Model calls are async and mostly waiting, so many run at once; the thread pool serves the
    # short database activities and must be at least as large as the activity slots. A model
    # call's first attempt is a local activity, and its workflow task stays with this worker
    # until the call ends: local-activity and workflow-task slots match the activity slots, or
    # a burst of slow calls would queue behind a few dozen.
    max_concurrent_activities: int = 256
    max_concurrent_local_activities: int = 256
    max_concurrent_workflow_tasks: int = 256
    graceful_shutdown_s: float = 30.0


def activities(llm: LlmConfig | None = None) -> list[object]:
    return [*AiActivities(llm or LlmConfig.from_settings()).all(), attach_page_text]


def build_worker(
    client: Client,
    *,
    task_queue: str | None = None,
    llm: LlmConfig | None = None,
    options: WorkerOptions | None = None,
) -> Worker:
    opts = options or WorkerOptions()
    return Worker(
        client,
        task_queue=task_queue or settings.TEMPORAL_TASK_QUEUE,
        workflows=[GenerateText],
        activities=activities(llm),
        activity_executor=ThreadPoolExecutor(
            max_workers=max(opts.max_concurrent_activities, opts.max_concurrent_local_activities),
            thread_name_prefix="activity",
        ),
        max_concurrent_activities=opts.max_concurrent_activities,
        max_concurrent_local_activities=opts.max_concurrent_local_activities,
        max_concurrent_workflow_tasks=opts.max_concurrent_workflow_tasks,
        # In-flight model calls get this long to finish on SIGTERM; after that Temporal retries
        # them on another worker (heartbeat timeout), so a deploy never loses a job.
        graceful_shutdown_timeout=timedelta(seconds=opts.graceful_shutdown_s),
    )


async def connect_with_retry(max_wait_s: float = 10.0) -> Client:
    """Under `make run` the worker may start before the dev server: wait for it (a crash here
    would stop the whole honcho stack)."""
    delay = 0.5
    while True:
        try:
            return await connect()
        except Exception as exc:  # noqa: BLE001 - any connection failure: wait and retry
            log.warning("waiting for Temporal at %s: %s", settings.TEMPORAL_ADDRESS, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_wait_s)


async def run(*, reconcile_every_s: float = 30.0) -> None:
    client = await connect_with_retry()
    llm = LlmConfig.from_settings()
    # Before polling, on this loop (the kept HTTP client belongs to the loop the activities run
    # on): the first click after a deploy must not pay LiteLLM's lazy imports and tokenizer.
    await warm_up(llm)
    worker = build_worker(client, llm=llm)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker started on %s (namespace %s, task queue %s, model %s)",
        settings.TEMPORAL_ADDRESS,
        settings.TEMPORAL_NAMESPACE,
        settings.TEMPORAL_TASK_QUEUE,
        settings.AI_MODEL,
    )
    reconciler = asyncio.create_task(reconcile_forever(client, every_s=reconcile_every_s))
    async with worker:
        await stop.wait()
        log.info("shutting down: finishing in-flight activities")
    reconciler.cancel()
