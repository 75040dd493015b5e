"""ai.activities.warm_up: the worker's start pays a first job's one-off costs, or logs why not."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from django.conf import settings

import ai.activities as activities
from ai.activities import LlmConfig, warm_up
from ai.prompts import TEMPLATE_FOR_FAMILY, PromptLibrary

LLM = LlmConfig(
    model="text-completion-openai/local",
    api_base="http://127.0.0.1:9/v1",  # nothing listens: the warm-up must not call it
    api_key="no-key-needed",
    timeout_s=5.0,
)


def test_warm_up_compiles_every_prompt_template(monkeypatch: pytest.MonkeyPatch) -> None:
    library = PromptLibrary(settings.PROMPTS_DIR)
    monkeypatch.setattr(activities.services, "prompts", lambda: library)
    called: list[Any] = []

    async def model_calls(request: Any) -> None:
        called.append(request)

    monkeypatch.setattr(activities, "warm_up_model_calls", model_calls)
    asyncio.run(warm_up(LLM))
    assert len(library.env.cache) == len(TEMPLATE_FOR_FAMILY)
    (request,) = called
    assert (request.model, request.api_base) == (LLM.model, LLM.api_base)


def test_a_failed_warm_up_is_logged_and_the_worker_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: Any) -> None:
        raise RuntimeError("no tokenizer today")

    monkeypatch.setattr(activities, "warm_up_model_calls", broken)
    with caplog.at_level(logging.WARNING, logger="ai.activities"):
        asyncio.run(warm_up(LLM))  # does not raise
    assert "warm-up failed" in caplog.text and "no tokenizer today" in caplog.text
