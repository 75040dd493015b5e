"""Record one GenerateText history per path, for the replay tests (tests/ai/test_replay.py).

    .venv/bin/python -m tests.histories.record [--out tests/histories]

Runs the current workflow code on a fresh in-memory dev server (the venv's `temporal` binary, no
download) with fake activities registered under the real names, so no database or model is
needed. Each history is exported with `temporal workflow show --output json`, exactly as an
operator would export it. The success run is also fetched the way the Temporal UI's "Download"
button does (the UI server's history API, wrapped in `{"events": [...]}`) and checked to be the
same document, so a file downloaded from the UI replays like these.

Re-record after an intentional, patched workflow change: keep the old files too (rename them,
e.g. `success.v1.json`) until no run of that version can still be open. See docs/operations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from temporalio import activity
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from ai.workflows.text import GenerateText
from ai.workflows.types import (
    AI_JOB_ID,
    AI_JOB_STATUS,
    AI_JOB_TYPE,
    PAGE_ID,
    SEARCH_ATTRIBUTES,
    STORY_ID,
    AttachInput,
    AttachResult,
    GenerateTextInput,
    JobFailure,
    LlmCall,
    LlmResult,
    PromptSpec,
    StepTimeouts,
)
from tests.temporal_harness import temporal_cli

HERE = Path(__file__).resolve().parent
PATHS = ("success", "retried", "failed", "cancelled")
TASK_QUEUE = "record-histories"
PROMPT = (
    "You are writing a picture book called 'Moss and the Moon'.\n"
    "Page 1: Moss woke under a wet leaf.\n"
    "Please write the next page."
)
TEXT = "The moon rolled down the hill to meet Moss."


@dataclass
class Scenario:
    """Fake activities for one path: what call_llm does on each attempt."""

    llm_errors: list[ApplicationError] = field(default_factory=list)
    llm_hangs: bool = False
    llm_started: asyncio.Event = field(default_factory=asyncio.Event)

    def activities(self) -> list[Callable[..., object]]:
        @activity.defn(name="render_prompt")
        async def render_prompt(job_id: int) -> PromptSpec:
            return PromptSpec(
                prompt=PROMPT, family="chat", template_key="page_content", template_version="1"
            )

        @activity.defn(name="call_llm")
        async def call_llm(call: LlmCall) -> LlmResult:
            self.llm_started.set()
            if self.llm_errors:
                raise self.llm_errors.pop(0)
            while self.llm_hangs:  # until cancelled (a local attempt has no heartbeat to send)
                if not activity.info().is_local:
                    activity.heartbeat()
                await asyncio.sleep(0.1)
            return LlmResult(
                text=TEXT,
                model="openai/fake-storyteller",
                prompt_tokens=42,
                completion_tokens=11,
                total_tokens=53,
                cost_usd="0.0000",
            )

        @activity.defn(name="attach_page_text")
        async def attach_page_text(inp: AttachInput) -> AttachResult:
            return AttachResult(applied=True)

        @activity.defn(name="fail_job")
        async def fail_job(failure: JobFailure) -> None:
            return None

        @activity.defn(name="cancel_job")
        async def cancel_job(job_id: int) -> None:
            return None

        return [render_prompt, call_llm, attach_page_text, fail_job, cancel_job]


def scenario_for(path: str) -> Scenario:
    if path == "retried":
        busy = "The engine is currently overloaded, please try again later."
        return Scenario(
            llm_errors=[
                ApplicationError(busy, type="server_error"),
                ApplicationError(busy, type="server_error"),
            ]
        )
    if path == "failed":
        return Scenario(
            llm_errors=[
                ApplicationError(
                    "The AI provider rejected our credentials.", type="auth", non_retryable=True
                )
            ]
        )
    if path == "cancelled":
        return Scenario(llm_hangs=True)
    return Scenario()


async def run_path(client: Client, path: str, job_id: int) -> WorkflowHandle:
    scenario = scenario_for(path)
    # Production's input, with the worker's defaults; only the heartbeat is short so the
    # cancellation reaches the fake model call quickly.
    inp = GenerateTextInput(
        job_id=job_id,
        attach_activity="attach_page_text",
        timeouts=StepTimeouts(llm_heartbeat_s=2.0),
    )
    async with Worker(
        client, task_queue=TASK_QUEUE, workflows=[GenerateText], activities=scenario.activities()
    ):
        handle = await client.start_workflow(
            GenerateText.run,
            inp,
            id=f"ai-job-{job_id}",
            task_queue=TASK_QUEUE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(AI_JOB_ID, job_id),
                    SearchAttributePair(AI_JOB_TYPE, "page_text_generation"),
                    SearchAttributePair(AI_JOB_STATUS, "queued"),
                    SearchAttributePair(STORY_ID, 7),
                    SearchAttributePair(PAGE_ID, job_id + 100),
                ]
            ),
        )
        if path == "cancelled":
            await asyncio.wait_for(scenario.llm_started.wait(), 30)
            await handle.cancel()
        try:
            await handle.result()
        except WorkflowFailureError:
            if path in ("success", "retried"):
                raise
    return handle


def cli_export(address: str, workflow_id: str) -> str:
    """The history as `temporal workflow show --output json` prints it."""
    return subprocess.run(
        [
            temporal_cli(),
            "workflow",
            "show",
            "--workflow-id",
            workflow_id,
            "--address",
            address,
            "--namespace",
            "default",
            "--output",
            "json",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def ui_export(ui_port: int, workflow_id: str, run_id: str) -> str:
    """The history as the Temporal UI's Download button saves it (temporalio/ui
    `exportHistory`: the UI server's history API, all pages, as `{"events": [...]}`)."""
    events: list[dict[str, object]] = []
    token = ""
    path = f"/api/v1/namespaces/default/workflows/{urllib.parse.quote(workflow_id, safe='')}"
    while True:
        query = urllib.parse.urlencode({"execution.runId": run_id, "nextPageToken": token})
        url = f"http://127.0.0.1:{ui_port}{path}/history?{query}"
        with urllib.request.urlopen(url, timeout=10) as response:
            page = json.load(response)
        events.extend(page["history"]["events"])
        token = page.get("nextPageToken") or ""
        if not token:
            return json.dumps({"events": events}, indent=2) + "\n"


async def wait_for_ui(ui_port: int, timeout_s: float = 30.0) -> None:
    url = f"http://127.0.0.1:{ui_port}/api/v1/namespaces/default"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def record(out_dir: Path) -> list[Path]:
    ui_port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
        ui=True,
        ui_port=ui_port,
        # The cancelled path's model call ends after its workflow: Core warns; that is expected.
        runtime=Runtime(
            telemetry=TelemetryConfig(
                logging=LoggingConfig(
                    filter=TelemetryFilter(core_level="ERROR", other_level="ERROR")
                )
            )
        ),
    )
    written: list[Path] = []
    try:
        address = env.client.service_client.config.target_host
        for job_id, path in enumerate(PATHS, start=1):
            handle = await run_path(env.client, path, job_id)
            target = out_dir / f"{path}.json"
            target.write_text(cli_export(address, handle.id))
            written.append(target)
            if path == "success":
                await wait_for_ui(ui_port)
                run_id = (await handle.describe()).run_id
                from_ui = json.loads(ui_export(ui_port, handle.id, run_id))
                if from_ui != json.loads(target.read_text()):
                    raise RuntimeError("the UI's export differs from the CLI's: check both")
    finally:
        await env.shutdown()
    return written


def main() -> None:
    # The scripted failures are expected: keep the SDK's "activity failed" tracebacks out.
    logging.getLogger("temporalio.activity").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="directory for the .json files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(record(args.out)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
