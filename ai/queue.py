"""Starting the workflow for a job. Queued on transaction commit by the app that wrote the job.

The request that wrote the job does not wait for Temporal: `queue_ai_job_soon` hands the start
to the process's Temporal event loop and returns, so a click costs neither the
`StartWorkflowExecution` round trip nor the UPDATE that records it. Nothing is lost by not
waiting: the job row is committed first, and a start that fails, times out, or never runs
(the process died) leaves the job `pending`; `manage.py reconcile_ai_jobs` (run by the worker
on a timer) starts it later. The workflow id is the job's, and duplicates are rejected, so no
job ever runs twice however often it is queued. `queue_ai_job` is the same start, waited for
(the reconciler and operators' actions use it).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.db import connection
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from ai import services
from ai.models import AiJob
from ai.temporal import TemporalUnavailable, bridge
from ai.workflows.text import GenerateText
from ai.workflows.types import (
    AI_JOB_ID,
    AI_JOB_STATUS,
    AI_JOB_TYPE,
    PAGE_ID,
    STORY_ID,
    GenerateTextInput,
    StepTimeouts,
)

log = logging.getLogger(__name__)

# Set by tests (e.g. short heartbeat timeouts for the crash test); production uses the defaults.
STEP_TIMEOUTS: StepTimeouts | None = None
LOCAL_STEPS: bool = True


def search_attributes(job: AiJob) -> TypedSearchAttributes:
    pairs: list[SearchAttributePair] = [
        SearchAttributePair(AI_JOB_ID, job.pk),
        SearchAttributePair(AI_JOB_TYPE, job.job_type),
        SearchAttributePair(AI_JOB_STATUS, "queued"),
    ]
    if "story_id" in job.labels:
        pairs.append(SearchAttributePair(STORY_ID, int(job.labels["story_id"])))
    if "page_id" in job.labels:
        pairs.append(SearchAttributePair(PAGE_ID, int(job.labels["page_id"])))
    return TypedSearchAttributes(pairs)


def workflow_input(job: AiJob) -> GenerateTextInput:
    return GenerateTextInput(
        job_id=job.pk,
        attach_activity=job.attach_activity,
        local_steps=LOCAL_STEPS,
        timeouts=STEP_TIMEOUTS or StepTimeouts(),
    )


async def start_job_workflow(client: Client, job: AiJob) -> str:
    """Start the job's workflow; returns its first run id. Idempotent on the workflow id."""
    summary = f"Page text for {job.labels.get('story_id', '?')}/{job.labels.get('page_id', '?')}"
    try:
        handle = await client.start_workflow(
            GenerateText.run,
            workflow_input(job),
            id=AiJob.workflow_id_for(job.pk),
            task_queue=settings.TEMPORAL_TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=search_attributes(job),
            static_summary=f"{summary} (AI job {job.pk}, {job.model_name})",
            static_details=(
                f"Story {job.labels.get('story_id')}, page {job.labels.get('page_id')}; "
                f"template {job.template_key} v{job.template_version}; model {job.model_name}."
            ),
        )
    except WorkflowAlreadyStartedError as exc:
        return exc.run_id or ""
    return handle.first_execution_run_id or handle.result_run_id or ""


def _no_answer() -> str:
    return f"Temporal did not answer within {settings.TEMPORAL_START_TIMEOUT_S:g}s"


async def try_start(job: AiJob) -> tuple[str | None, str]:
    """Ask Temporal to start the job's workflow: (run id, "") when it accepted the start (or
    already had it), (None, the reason for people) when it did not."""
    extra = {"job_id": job.pk, "workflow_id": AiJob.workflow_id_for(job.pk)}
    timeout = settings.TEMPORAL_START_TIMEOUT_S
    try:
        client = await asyncio.wait_for(bridge.client(), timeout)
        return await asyncio.wait_for(start_job_workflow(client, job), timeout), ""
    except TimeoutError:
        return None, _no_answer()
    except TemporalUnavailable as exc:
        return None, f"Temporal unreachable at {exc}"
    except RPCError as exc:
        bridge.forget_client()
        return None, f"Temporal unreachable: {exc.status.name}: {exc.message}"
    except Exception as exc:
        bridge.forget_client()
        log.exception("workflow start failed", extra=extra)
        return None, f"Could not start the workflow: {exc.__class__.__name__}: {exc}"


def record_start(job_id: int, run_id: str | None, reason: str) -> bool:
    """Write what `try_start` answered on the job row; True when the workflow runs."""
    extra = {"job_id": job_id, "workflow_id": AiJob.workflow_id_for(job_id)}
    if run_id is not None:
        services.mark_queued(job_id, run_id=run_id)
        log.info("workflow started", extra={**extra, "run_id": run_id})
        return True
    services.mark_queue_failed(job_id, reason=reason)
    log.warning("workflow not started; job stays queued: %s", reason, extra=extra)
    return False


def queue_ai_job(job_id: int) -> bool:
    """Start the job's workflow now, and wait; True when Temporal accepted it (or already had
    it). The reconciler and operators' actions use this."""
    job = AiJob.objects.filter(pk=job_id).first()
    if job is None:  # deleted (or its transaction rolled back) before the start ran
        return False
    if job.status not in AiJob.ACTIVE_STATUSES:
        return False
    try:
        # try_start bounds itself; this bound is for a bridge thread starved of the GIL.
        run_id, reason = bridge.run(try_start(job), timeout=settings.TEMPORAL_START_TIMEOUT_S + 2)
    except (FutureTimeout, TimeoutError):
        run_id, reason = None, _no_answer()
    return record_start(job.pk, run_id, reason)


class _Starter:
    """Starts that no request waits for (`queue_ai_job_soon`).

    The start goes straight to the bridge's event loop, so it is under way before the request
    renders its answer (a hop through another thread first would make it wait for the GIL
    behind that rendering). Only the database write that records the outcome runs on a small
    pool of threads, off the loop. At exit, `flush` (an atexit hook) waits for the starts
    already handed over, each bounded by TEMPORAL_START_TIMEOUT_S, so a command that queues a
    job and exits still starts it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pid: int | None = None
        self._pending: set[Future[bool]] = set()

    def submit(self, job: AiJob) -> Future[bool]:
        future = bridge.submit(self._start(job))
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    async def _start(self, job: AiJob) -> bool:
        run_id, reason = await try_start(job)
        try:
            pool = self._records_pool()
            return await asyncio.get_running_loop().run_in_executor(
                pool, _record_in_thread, job.pk, run_id, reason
            )
        except RuntimeError:  # at exit, thread pools take no more work: a thread of its own
            outcome: list[bool] = []
            thread = threading.Thread(
                target=lambda: outcome.append(_record_in_thread(job.pk, run_id, reason)),
                name="temporal-start-at-exit",
            )
            thread.start()
            thread.join()  # blocks the loop, but only while the process exits
            return bool(outcome and outcome[0])

    def _records_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():  # never a parent's threads
                self._pool = ThreadPoolExecutor(
                    max_workers=settings.TEMPORAL_START_THREADS,
                    thread_name_prefix="temporal-start",
                )
                self._pid = os.getpid()
            return self._pool

    def _done(self, future: Future[bool]) -> None:
        with self._lock:
            self._pending.discard(future)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the starts handed over so far; True when none is left running."""
        with self._lock:
            pending = set(self._pending)
        return not wait(pending, timeout=timeout).not_done

    def flush(self) -> None:
        self.wait(timeout=settings.TEMPORAL_START_TIMEOUT_S + 2)


starter = _Starter()
atexit.register(starter.flush)


def _record_in_thread(job_id: int, run_id: str | None, reason: str) -> bool:
    try:
        return record_start(job_id, run_id, reason)
    except Exception:  # nobody waits for this answer: the reconciler retries the job
        log.exception("recording the start failed", extra={"job_id": job_id})
        return False
    finally:
        connection.close()  # this thread's own connection (back to the pool on PostgreSQL)


def queue_ai_job_soon(job: AiJob) -> None:
    """On-commit callback: start the job's workflow without making the request wait for it."""
    starter.submit(job)
