"""Fixtures shared by the whole suite: users and stories, the fake LLM server, the real Temporal
dev server, and a worker wired exactly like production's (temporal_worker.build_worker)."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest
from django.test import Client as DjangoClient

from ai.models import AiJob
from tests.factories import PageFactory, StoryFactory, UserFactory
from tests.fakes.llm_server import FakeLLMServer
from tests.temporal_harness import TemporalHarness

FAKE_API_KEY = "sk-test-SECRET-do-not-leak-4242"


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def story(user):
    return StoryFactory(owner=user)


@pytest.fixture
def story_page(story):
    """A blank page of `story` (not `page`: that name is Playwright's browser page)."""
    return PageFactory(story=story, content="")


@pytest.fixture
def author_client(user) -> DjangoClient:
    client = DjangoClient()
    client.force_login(user)
    return client


@pytest.fixture
def htmx_headers() -> dict[str, str]:
    return {"HX-Request": "true"}


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLMServer) -> Iterator[FakeLLMServer]:
    fake_llm_server.reset()
    yield fake_llm_server
    fake_llm_server.reset()


@pytest.fixture(scope="session")
def temporal() -> Iterator[TemporalHarness]:
    harness = TemporalHarness().start()
    yield harness
    harness.stop()


@dataclass
class Stack:
    """The generation stack of one test: its own task queue, a worker, the fake model."""

    temporal: TemporalHarness
    llm: FakeLLMServer
    task_queue: str

    def wait(self, job: AiJob, timeout: float = 30.0) -> AiJob:
        """Block until the job's row is finished (the product's own source of truth)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.status in AiJob.FINISHED_STATUSES:
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job.pk} still {job.status} after {timeout}s")


@pytest.fixture
def llm_config(fake_llm: FakeLLMServer):
    from ai.activities import LlmConfig

    return LlmConfig(
        model="openai/fake-storyteller",
        api_base=fake_llm.base_url,
        api_key=FAKE_API_KEY,
        timeout_s=5.0,
        stream=True,
    )


@pytest.fixture
def make_stack(
    transactional_db, temporal: TemporalHarness, fake_llm: FakeLLMServer, settings, llm_config
) -> Iterator[Callable[..., Stack]]:
    """Start a real worker (production wiring) on a fresh task queue for this test."""
    from temporal_worker.worker import WorkerOptions, build_worker

    settings.TEMPORAL_ADDRESS = temporal.address
    settings.TEMPORAL_TASK_QUEUE = f"test-{uuid.uuid4().hex[:10]}"
    settings.AI_MODEL = llm_config.model
    settings.AI_API_BASE = llm_config.api_base
    settings.AI_PROMPT_FAMILY = "chat"
    settings.AI_RATE_LIMIT_PER_MINUTE = 1000
    contexts = []

    def start(config=None) -> Stack:
        cm = temporal.running(
            lambda client: build_worker(
                client,
                task_queue=settings.TEMPORAL_TASK_QUEUE,
                llm=config or llm_config,
                options=WorkerOptions(graceful_shutdown_s=1.0),
            )
        )
        cm.__enter__()
        contexts.append(cm)
        return Stack(temporal=temporal, llm=fake_llm, task_queue=settings.TEMPORAL_TASK_QUEUE)

    yield start
    for cm in reversed(contexts):
        cm.__exit__(None, None, None)


@pytest.fixture
def stack(make_stack) -> Stack:
    return make_stack()


__all__ = ["PageFactory", "StoryFactory", "UserFactory"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Workflow starts a test handed over without waiting (ai.queue.queue_ai_job_soon) finish
    before its fixtures are torn down: they use the test's database and Temporal."""
    yield
    queue = sys.modules.get("ai.queue")
    if queue is not None and not queue.starter.wait(timeout=30):
        pytest.fail("a workflow start was still running 30 s after the test")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # PBKDF2's deliberate slowness buys nothing in tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
