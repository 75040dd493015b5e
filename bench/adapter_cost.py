"""CPU cost of one model call through the product's adapter (ai.adapters.litellm.complete),
streamed and not, next to a plain httpx read of the same server-sent events. Run in the bench
process against the fake model: it prices the adapter itself, not the network or the model."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from bench.report import percentile

LONG_REPLY = "Moss walked on and on under the moon, carrying it home. " * 18  # ~200 words


async def _timed(fn: Any, calls: int) -> dict[str, float]:
    for _ in range(3):
        await fn()
    cpu, wall = [], []
    for _ in range(calls):
        c0, w0 = time.process_time(), time.perf_counter()
        await fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {
        "cpu_p50_ms": round(percentile(cpu, 50) * 1000, 2),
        "wall_p50_ms": round(percentile(wall, 50) * 1000, 2),
    }


async def measure(fake: Any, *, calls: int) -> dict[str, Any]:
    from ai.adapters.litellm import CompletionRequest, complete
    from tests.fakes.llm_server import Reply

    request = CompletionRequest(
        model="openai/bench-fake",
        prompt="Please write the next page of this story. " * 10,
        mode="chat",
        api_base=fake.base_url,
        api_key="bench-fake-key",
        max_tokens=400,
        temperature=0.8,
        timeout_s=10,
    )
    body = {
        "model": "bench-fake",
        "messages": [{"role": "user", "content": request.prompt}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    async def on_text(text: str) -> None:
        return None

    async with httpx.AsyncClient(timeout=10) as client:

        async def plain() -> str:
            text = ""
            url = f"{fake.base_url}/chat/completions"
            async with client.stream("POST", url, json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        chunk = json.loads(line[6:])
                        if chunk.get("choices"):
                            text += chunk["choices"][0]["delta"].get("content") or ""
            return text

        out: dict[str, Any] = {}
        try:
            for label, text in (("short_reply", None), ("long_reply", LONG_REPLY)):
                fake.reset()
                if text:
                    fake.set_default(Reply(text=text))
                words = len((text or Reply().text).split())
                out[label] = {
                    "words": words,
                    "adapter_stream": await _timed(
                        lambda: complete(request, on_text=on_text), calls
                    ),
                    "adapter_no_stream": await _timed(lambda: complete(request), calls),
                    "httpx_stream": await _timed(plain, calls),
                }
        finally:
            fake.reset()
    long = out["long_reply"]
    extra = (
        long["adapter_stream"]["cpu_p50_ms"] - out["short_reply"]["adapter_stream"]["cpu_p50_ms"]
    )
    out["adapter_stream_cpu_ms_per_chunk"] = round(
        extra / max(1, long["words"] - out["short_reply"]["words"]), 3
    )
    return out
