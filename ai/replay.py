"""Replay recorded GenerateText histories against the current workflow code.

A workflow change that would break runs already in flight (a reordered, added or removed step
without `workflow.patched`) shows up here as a non-determinism error, before a deploy does it to
real jobs. Used by `manage.py replay_ai_job` / `replay_workflow` and by tests/ai/test_replay.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from google.protobuf.json_format import ParseError
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Replayer

from ai.temporal import TemporalUnavailable, connect
from ai.workflows.text import GenerateText

DEFAULT_WORKFLOWS: tuple[type, ...] = (GenerateText,)
# Core's message sits inside a Rust debug dump; quote it alone.
_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_DECODED_ENCODING = re.compile(r"^(json|binary)/[\w-]+$")
_PAYLOAD_FIELDS = {"metadata", "data", "externalPayloads"}
_quiet_runtime: Runtime | None = None


@dataclass(frozen=True)
class ReplayOutcome:
    ok: bool
    message: str
    # The first event the current code disagrees with (None when ok, or not found).
    event_id: int | None = None


class HistoryFormatError(ValueError):
    """The file is not a workflow history this tool can read; the message says why."""


def _runtime() -> Runtime:
    # Core logs every failed replay as a WARN on stderr; the outcome already says it, once.
    global _quiet_runtime
    if _quiet_runtime is None:
        _quiet_runtime = Runtime(
            telemetry=TelemetryConfig(
                logging=LoggingConfig(
                    filter=TelemetryFilter(core_level="ERROR", other_level="ERROR")
                )
            )
        )
    return _quiet_runtime


def load_history(
    source: str | bytes | dict[str, Any] | list[Any], workflow_id: str = ""
) -> WorkflowHistory:
    """A history from JSON: `temporal workflow show --output json`, the Temporal UI's Download
    (`{"events": [...]}`, the same protobuf JSON), a bare event list (the UI's import accepts
    one) or the history API's `{"history": {"events": [...]}}`."""
    try:
        data: Any = json.loads(source) if isinstance(source, str | bytes) else source
    except ValueError as exc:
        raise HistoryFormatError(f"not JSON: {exc}") from exc
    if isinstance(data, list):
        data = {"events": data}
    if isinstance(data, dict) and "events" not in data and isinstance(data.get("history"), dict):
        data = data["history"]
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise HistoryFormatError(
            "expected a JSON object with an `events` list (a workflow history)"
        )
    if not data["events"]:
        raise HistoryFormatError("the history has no events")
    try:
        _require_raw_payloads(data)
        history = WorkflowHistory.from_json(workflow_id or "replay", data)
    except (ParseError, ValueError, TypeError) as exc:
        raise HistoryFormatError(
            f"not a raw workflow history ({exc}). From the Temporal UI, download the history "
            "with payload decoding turned off (encoded)."
        ) from exc
    if not workflow_id:
        started = history.events[0].workflow_execution_started_event_attributes
        workflow_id = started.workflow_id or "replay"
        history = WorkflowHistory(workflow_id, history.events)
    return history


def _require_raw_payloads(node: Any) -> None:
    """Refuse a history whose payloads were decoded for reading (the UI can export those): the
    protobuf parser ignores what it does not know, and the replay would then fail obscurely."""
    if isinstance(node, list):
        for item in node:
            _require_raw_payloads(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "payloads" and isinstance(value, list):
                for payload in value:
                    if not _is_raw_payload(payload):
                        raise ValueError("its payloads are decoded values, not raw payloads")
            else:
                _require_raw_payloads(value)


def _is_raw_payload(payload: Any) -> bool:
    if not isinstance(payload, dict) or not set(payload) <= _PAYLOAD_FIELDS:
        return False
    if not isinstance(payload.get("data", ""), str):
        return False
    metadata = payload.get("metadata", {})
    # Raw metadata is base64 ("anNvbi9wbGFpbg=="); a decoded export reads "json/plain".
    encoding = metadata.get("encoding", "") if isinstance(metadata, dict) else None
    return isinstance(encoding, str) and not _DECODED_ENCODING.match(encoding)


def load_history_file(path: str | Path, workflow_id: str = "") -> WorkflowHistory:
    return load_history(Path(path).read_text(), workflow_id)


async def fetch_history(
    client: Client, workflow_id: str, run_id: str | None = None
) -> WorkflowHistory:
    """The whole history of one run (the latest run when `run_id` is None)."""
    return await client.get_workflow_handle(workflow_id, run_id=run_id or None).fetch_history()


async def areplay_history(
    history: WorkflowHistory, *, workflows: Sequence[type] = DEFAULT_WORKFLOWS
) -> ReplayOutcome:
    executor = ThreadPoolExecutor(thread_name_prefix="replay")
    replayer = Replayer(
        workflows=list(workflows), runtime=_runtime(), workflow_task_executor=executor
    )
    try:
        failure = await _failure(replayer, history)
        if failure is None:
            return ReplayOutcome(
                ok=True,
                message=(
                    f"OK: {history.workflow_id} ({len(history.events)} events) replays against "
                    "the current workflow code."
                ),
            )
        event = await _diverging_event(replayer, history)
    finally:
        executor.shutdown(wait=False)
    where = f" at event {event.event_id} ({describe_event(event)})" if event else ""
    return ReplayOutcome(
        ok=False,
        message=f"{history.workflow_id} does not replay{where}: {_reason(failure)}",
        event_id=event.event_id if event else None,
    )


def replay_history(
    history: WorkflowHistory, *, workflows: Sequence[type] = DEFAULT_WORKFLOWS
) -> ReplayOutcome:
    """Replay on a private event loop (management commands, synchronous tests)."""
    return asyncio.run(areplay_history(history, workflows=workflows))


def replay_from_temporal(workflow_id: str, run_id: str | None = None) -> ReplayOutcome:
    """Fetch a run's history from the configured Temporal and replay it."""

    async def main() -> ReplayOutcome:
        try:
            client = await connect()
        except RuntimeError as exc:  # the SDK's core raises RuntimeError when it cannot connect
            raise TemporalUnavailable(f"{settings.TEMPORAL_ADDRESS}: {exc}") from exc
        return await areplay_history(await fetch_history(client, workflow_id, run_id))

    return asyncio.run(main())


async def _failure(replayer: Replayer, history: WorkflowHistory) -> Exception | None:
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return result.replay_failure


async def _diverging_event(replayer: Replayer, history: WorkflowHistory) -> HistoryEvent | None:
    """The event whose arrival first makes the replay fail: binary search over prefixes.

    Core's message names the event only sometimes ("HistoryEvent(id: 15, ...)"), so the smallest
    failing prefix is found instead (a prefix of a good history always replays: a running
    workflow's history is one). A prefix must hold a workflow task, or the replay waits forever.
    """
    events = list(history.events)
    first_task = next(
        (
            i
            for i, e in enumerate(events)
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
        ),
        None,
    )
    if first_task is None:
        return None
    good, bad = first_task + 1, len(events)  # prefix lengths: `good` replays, `bad` fails
    if await _failure(replayer, WorkflowHistory(history.workflow_id, events[:good])):
        return events[first_task]
    while bad - good > 1:
        mid = (good + bad) // 2
        if await _failure(replayer, WorkflowHistory(history.workflow_id, events[:mid])):
            bad = mid
        else:
            good = mid
    return events[bad - 1]


def _reason(failure: BaseException) -> str:
    text = str(failure)
    found = _CORE_MESSAGE.search(text)
    return found.group(1).replace('\\"', '"').replace("\\'", "'") if found else text


def describe_event(event: HistoryEvent) -> str:
    """`ActivityTaskScheduled call_llm`, `MarkerRecorded local activity render_prompt`, ..."""
    name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").title().replace("_", "")
    if event.HasField("activity_task_scheduled_event_attributes"):
        return f"{name} {event.activity_task_scheduled_event_attributes.activity_type.name}"
    if event.HasField("marker_recorded_event_attributes"):
        activity_type = _local_activity_type(event)
        if activity_type:
            return f"{name} local activity {activity_type}"
    return name


def _local_activity_type(event: HistoryEvent) -> str:
    attrs = event.marker_recorded_event_attributes
    if attrs.marker_name != "core_local_activity" or "data" not in attrs.details:
        return ""
    for payload in attrs.details["data"].payloads:
        try:
            data = json.loads(payload.data)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("activity_type"):
            return str(data["activity_type"])
    return ""
