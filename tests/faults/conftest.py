"""Real processes for the fault drills.

* ``DevServer``: a Temporal dev server of the test's own, on a fixed port with its state in a
  SQLite file, so it can be killed and started again as the same server.
* ``WorkerProcess``: the production worker (``python -m temporal_worker`` or ``manage.py
  run_worker``) as a separate OS process, configured only through its environment, pointed at
  this test's database; it can be SIGKILLed mid-activity.
* ``ClientLoop``: an in-process worker (production wiring) talking to a ``DevServer``.

Everything a test starts is stopped by the ``drill`` fixture, before the test database is
flushed (the fixture depends on ``transactional_db``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from django.db import connection
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.worker import Worker

from ai.models import AiJob
from ai.workflows.types import SEARCH_ATTRIBUTES
from tests.conftest import FAKE_API_KEY
from tests.fakes.llm_server import FakeLLMServer
from tests.temporal_harness import search_attribute_flags, temporal_cli

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
FAKE_MODEL = "openai/fake-storyteller"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url() -> str:
    """The URL of the database this test runs on (the per-run test database), for a worker
    process: it must see exactly the rows the test writes."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    auth = quote(s["USER"] or "", safe="")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"], safe="")
    host = s["HOST"] or "127.0.0.1"
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{s['NAME']}"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def completion_requests(llm: FakeLLMServer) -> list[Any]:
    return [r for r in llm.requests if r.path.endswith("completions")]


# ------------------------------------------------------------------------------ Temporal server


class DevServer:
    """`temporal server start-dev` with a fixed port and a SQLite file: restartable."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.db_file = workdir / "temporal.sqlite"
        self.log_file = workdir / "temporal.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> DevServer:
        assert self.process is None or self.process.poll() is not None, "already running"
        args = [
            temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--headless",
            "--db-filename",
            str(self.db_file),
            "--log-level",
            "error",
        ]
        args += search_attribute_flags()
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.starts += 1
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        async def ready() -> bool:
            try:
                client = await Client.connect(self.address)
                found = await client.operator_service.list_search_attributes(
                    ListSearchAttributesRequest(namespace="default")
                )
            except Exception:  # noqa: BLE001 - not up yet
                return False
            return all(k.name in found.custom_attributes for k in SEARCH_ATTRIBUTES)

        def check() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the Temporal dev server exited ({self.process.returncode}): "
                    + self.log_file.read_text(errors="replace")[-2000:]
                )
            return asyncio.run(ready())

        wait_for(check, timeout, f"the Temporal dev server on {self.address}", every=0.2)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop it the hard way (SIGKILL) or the polite way (SIGTERM)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self, sig: int = signal.SIGKILL) -> None:
        self.kill(sig)
        self.start()


class ClientLoop:
    """A client of a ``DevServer`` and in-process workers, on one background event loop."""

    def __init__(self, address: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="drill")
        self._thread.start()
        self.client: Client = self.run(Client.connect(address))
        self._workers: list[tuple[Worker, asyncio.Task[None]]] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start_worker(self, factory: Callable[[Client], Worker]) -> Worker:
        async def start() -> tuple[Worker, asyncio.Task[None]]:
            worker = factory(self.client)
            return worker, asyncio.ensure_future(worker.run())

        pair = self.run(start())
        self._workers.append(pair)
        return pair[0]

    def close(self) -> None:
        async def stop(worker: Worker, task: asyncio.Task[None]) -> None:
            await worker.shutdown()
            with contextlib.suppress(Exception):  # a worker that failed has nothing to stop
                await task

        for worker, task in reversed(self._workers):
            self.run(stop(worker, task), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    def result(self, workflow_id: str, timeout: float = 60.0) -> Any:
        """The run's result: wait for it before reading the history, because the job row turns
        `succeeded` inside the attach step, a moment before the run is recorded as complete."""
        return self.run(self.client.get_workflow_handle(workflow_id).result(), timeout)

    def history(self, workflow_id: str) -> dict[str, Any]:
        async def fetch() -> str:
            return (await self.client.get_workflow_handle(workflow_id).fetch_history()).to_json()

        return json.loads(self.run(fetch()))


# ------------------------------------------------------------------------------ worker process


class WorkerProcess:
    """The production worker as its own process; its stdout+stderr go to a log file."""

    READY = "worker started on"

    def __init__(self, env: dict[str, str], log_file: Path, args: list[str]) -> None:
        self.env = env
        self.log_file = log_file
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_ready: bool = True, timeout: float = 90.0) -> WorkerProcess:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *self.args],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait_ready:
            wait_for(self._ready, timeout, f"the worker process to start ({self.log_file})", 0.1)
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the worker exited ({self.process.returncode}):\n{self.output}")
        return self.READY in self.output

    @property
    def output(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> int:
        """SIGKILL: no shutdown hook, no graceful drain, in-flight work simply vanishes."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        return self.process.wait(timeout=10)

    def stop(self) -> None:
        """At the end of a test: nothing in flight matters any more, so no graceful drain."""
        if self.process is not None and self.process.poll() is None:
            self.kill()


# ------------------------------------------------------------------------------------ fixture


@dataclass
class Drill:
    """One fault drill: this test's task queue, the fake model, and every process it started."""

    tmp: Path
    llm: FakeLLMServer
    task_queue: str
    settings: Any
    workers: list[WorkerProcess] = field(default_factory=list)
    servers: list[DevServer] = field(default_factory=list)
    loops: list[ClientLoop] = field(default_factory=list)

    def worker_env(self, temporal_address: str, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url(),
            "TEMPORAL_ADDRESS": temporal_address,
            "TEMPORAL_TASK_QUEUE": self.task_queue,
            "AI_MODEL": FAKE_MODEL,
            "AI_API_BASE": self.llm.base_url,
            "AI_API_KEY": FAKE_API_KEY,
            "AI_PROMPT_FAMILY": "chat",
            "AI_STREAM": "1",
            "AI_REQUEST_TIMEOUT_S": "20",
            "LOG_LEVEL": "INFO",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYTHONUNBUFFERED": "1",
        }
        env.update(extra)
        return env

    def worker_process(
        self, temporal_address: str, *, args: list[str] | None = None, **env: str
    ) -> WorkerProcess:
        log = self.tmp / f"worker-{len(self.workers) + 1}.log"
        proc = WorkerProcess(
            self.worker_env(temporal_address, **env), log, args or ["-m", "temporal_worker"]
        )
        self.workers.append(proc)
        return proc

    def dev_server(self) -> DevServer:
        server = DevServer(self.tmp)
        self.servers.append(server)
        return server.start()

    def client_loop(self, address: str) -> ClientLoop:
        loop = ClientLoop(address)
        self.loops.append(loop)
        return loop

    def wait(self, job: AiJob, timeout: float = 60.0) -> AiJob:
        def finished() -> bool:
            job.refresh_from_db()
            return job.status in AiJob.FINISHED_STATUSES

        wait_for(finished, timeout, f"job {job.pk} to finish", every=0.1)
        return job

    def close(self) -> None:
        for proc in self.workers:
            proc.stop()
        for loop in self.loops:
            loop.close()
        for server in self.servers:
            server.kill(signal.SIGTERM)

    def dump_logs(self) -> None:
        for proc in self.workers:
            sys.stderr.write(f"\n--- {proc.log_file.name} ---\n{proc.output[-6000:]}\n")
        for server in self.servers:
            text = server.log_file.read_text(errors="replace") if server.log_file.exists() else ""
            sys.stderr.write(f"\n--- {server.log_file.name} ---\n{text[-3000:]}\n")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def drill(request, transactional_db, settings, fake_llm, tmp_path) -> Iterator[Drill]:
    from ai.temporal import bridge

    settings.TEMPORAL_TASK_QUEUE = f"fault-{uuid.uuid4().hex[:10]}"
    settings.AI_MODEL = FAKE_MODEL
    settings.AI_API_BASE = fake_llm.base_url
    settings.AI_PROMPT_FAMILY = "chat"
    settings.AI_RATE_LIMIT_PER_MINUTE = 1000
    found = Drill(
        tmp=tmp_path, llm=fake_llm, task_queue=settings.TEMPORAL_TASK_QUEUE, settings=settings
    )
    yield found
    if request.node.stash.get(_FAILED, False):
        found.dump_logs()  # the worker's own account of what happened
    found.close()
    bridge.forget_client()
