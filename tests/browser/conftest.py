"""The browser suite: Debian's Chromium driven by Playwright against pytest-django's live server,
with the real Temporal dev server, a real worker and the fake LLM (tests/conftest.py).

Playwright's sync API keeps its asyncio loop marked as running on the main thread from the first
browser test to the end of the session. Two consequences, both handled here:
- Django reads that as "called from async code" and refuses ORM calls on the main thread, so
  DJANGO_ALLOW_ASYNC_UNSAFE is set (the usual setting for Playwright + pytest-django), from the
  first browser test on only: every other test keeps Django's guard.
- Any later test calling asyncio.run() would fail ("cannot be called from a running event
  loop"), so the browser tests always run last (pytest-django's ordering would otherwise put
  the tests without a database after them).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Page as BrowserPage
from playwright.sync_api import expect

# The worker's activities import LiteLLM (seconds of CPU): imported while collecting, so a loaded
# runner spends that time outside the first generation test's timeout.
import ai.activities  # noqa: F401
from stories import services
from tests.factories import UserFactory
from tests.fakes.llm_server import FakeLLMServer

REPO = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous for a loaded 2-core CI runner; every wait below is an auto-waiting `expect`.
UI_TIMEOUT_MS = 10_000
GENERATION_TIMEOUT_MS = 30_000

expect.set_options(timeout=UI_TIMEOUT_MS)


@pytest.hookimpl(trylast=True)  # after pytest-django's reordering
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last (see the module docstring); the order within each group is kept."""
    others = [item for item in items if item.get_closest_marker("browser") is None]
    browser = [item for item in items if item.get_closest_marker("browser") is not None]
    items[:] = others + browser


@pytest.fixture(scope="session", autouse=True)
def _django_allows_the_playwright_loop() -> Iterator[None]:
    # Session scope, set up before Playwright starts: it also covers the test database's
    # teardown when that comes before Playwright's (a run of the browser tests alone).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """Debian's Chromium (a `playwright install` download cannot work here)."""
    if not Path(CHROMIUM).exists():
        raise pytest.UsageError(
            f"Chromium not found at {CHROMIUM}: run `make browser-deps` "
            "(apt-get install chromium) or set CHROMIUM_PATH."
        )
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "headless": browser_type_launch_args.get("headless", True),
        "args": CHROMIUM_FLAGS,
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {
        **browser_context_args,
        "viewport": {"width": 1100, "height": 820},
        "locale": "en-US",
        "reduced_motion": "reduce",
    }


@pytest.fixture
def page(page: BrowserPage) -> BrowserPage:
    page.set_default_timeout(UI_TIMEOUT_MS)
    return page


# --- Screenshots --------------------------------------------------------------------------------


class Screenshots:
    """Saved under pytest-playwright's output folder (`test-results/screenshots`, rebuilt each
    run). With UPDATE_DOCS_SCREENSHOTS=1 the ones marked `docs=True` also refresh docs/."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.update_docs = os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1"

    def take(self, page: BrowserPage, name: str, *, docs: bool = False) -> Path:
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), animations="disabled", caret="hide")
        if docs and self.update_docs:
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)
        return path


@pytest.fixture(scope="session")
def screenshots(pytestconfig: pytest.Config) -> Screenshots:
    return Screenshots(Path(pytestconfig.getoption("--output")).absolute() / "screenshots")


# --- The author and the stack -------------------------------------------------------------------


@pytest.fixture
def author(transactional_db):
    return UserFactory(username="ada")


@pytest.fixture
def signed_in(page: BrowserPage, live_server, author) -> BrowserPage:
    """The browser holds `author`'s session cookie (sign-up itself is tested through the UI)."""
    client = Client()
    client.force_login(author)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])
    return page


@pytest.fixture
def lantern_story(author):
    """A story with a first page written and a blank second page (the one to generate)."""
    story = services.story_create(
        owner=author,
        title="The Lantern Fox",
        description="A shy fox finds a lantern and lights the way home for the forest.",
    )
    first = services.page_update_content(
        page=story.pages.get(), content="Fern the fox lived at the edge of the dark, dark wood."
    )
    blank = services.page_add(story=story)
    return story, first, blank


@pytest.fixture
def ai_stack(make_stack, llm_config):
    """A worker on a fresh task queue; the model call may be held for a while (see `gate`)."""
    return make_stack(replace(llm_config, timeout_s=60.0))


class ModelGate:
    """Holds the fake model inside its first pause (a Reply's `latency` before the first byte, or
    its `chunk_delay` between stream chunks) until the test releases it: the loading state is
    asserted while the model provably waits, with no timing guesses."""

    def __init__(self, fake: FakeLLMServer) -> None:
        self._sleep = fake._sleep
        self._held = threading.Event()
        self._released = threading.Event()

    def sleep(self, seconds: float) -> None:
        if seconds > 0 and not self._released.is_set():
            self._held.set()
            self._released.wait(timeout=120)  # never hang the suite if a test forgets
            return
        self._sleep(seconds)

    def wait_until_held(self, timeout: float = 30.0) -> None:
        if not self._held.wait(timeout):
            raise AssertionError(f"the model was not called within {timeout:g}s")

    def release(self) -> None:
        self._released.set()


@pytest.fixture
def gate(fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelGate]:
    model_gate = ModelGate(fake_llm)
    monkeypatch.setattr(fake_llm, "_sleep", model_gate.sleep)
    yield model_gate
    model_gate.release()
