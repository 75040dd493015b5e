"""The LiteLLM adapter, through LiteLLM for real, against the fake OpenAI-compatible server."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported

import asyncio
import email.utils
import pickle
import subprocess
import sys
import textwrap
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import litellm
import pytest

import ai.adapters.litellm as adapter
from ai.adapters.litellm import (
    Completion,
    CompletionRequest,
    ProviderError,
    classify,
    complete,
    warm_up,
)
from tests.fakes.llm_server import (
    DEFAULT_TEXT,
    FakeLLMProcess,
    FakeLLMServer,
    Fault,
    Hang,
    Malformed,
    Reply,
    Reset,
    Step,
)

SECRET = "sk-test-SECRET"
T = TypeVar("T")


@dataclass(frozen=True)
class Route:
    model: str
    mode: str


CHAT = Route("openai/fake-model", "chat")
TEXT = Route("text-completion-openai/fake-model", "completion")


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    # One loop for the module: LiteLLM caches its HTTP clients, which are bound to a loop.
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture
def run(loop: asyncio.AbstractEventLoop) -> Any:
    def runner(coro: Coroutine[Any, Any, T]) -> T:
        return loop.run_until_complete(coro)

    return runner


@pytest.fixture(scope="module")
def module_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def llm(module_llm: FakeLLMServer) -> FakeLLMServer:
    module_llm.reset()
    module_llm.default = Reply()
    return module_llm


@pytest.fixture(params=[CHAT, TEXT], ids=["chat", "completion"])
def route(request: pytest.FixtureRequest) -> Route:
    return request.param  # type: ignore[no-any-return]


def make(llm_url: str, route: Route, **overrides: Any) -> CompletionRequest:
    fields: dict[str, Any] = {
        "model": route.model,
        "prompt": "Write the next page about the fox.",
        "mode": route.mode,
        "api_base": llm_url,
        "api_key": SECRET,
        "timeout_s": 5.0,
    }
    return CompletionRequest(**(fields | overrides))


class Recorder:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.times: list[float] = []

    async def __call__(self, text: str) -> None:
        self.texts.append(text)
        self.times.append(time.monotonic())


# ------------------------------------------------------------------------------------ success


def test_reply_becomes_a_completion_with_usage(run: Any, llm: FakeLLMServer, route: Route) -> None:
    llm.script(Reply(text="  The fox slept.\n", prompt_tokens=12, completion_tokens=5))

    result = run(complete(make(llm.base_url, route)))

    assert result == Completion(
        text="The fox slept.",
        prompt_tokens=12,
        completion_tokens=5,
        total_tokens=17,
        cost_usd=Decimal("0"),  # no price for a local model
        model=route.model,
    )
    (request,) = llm.requests
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.body["model"] == "fake-model"
    assert request.body["max_tokens"] == 400
    assert request.body["temperature"] == 0.8
    assert not request.body.get("stream")
    if route.mode == "chat":
        assert request.path == "/v1/chat/completions"
        assert request.body["messages"] == [
            {"role": "user", "content": "Write the next page about the fox."}
        ]
    else:
        assert request.path == "/v1/completions"
        assert request.body["prompt"] == "Write the next page about the fox."


def test_limits_and_stop_sequences_reach_the_server(
    run: Any, llm: FakeLLMServer, route: Route
) -> None:
    run(
        complete(
            make(llm.base_url, route, max_tokens=50, temperature=0.2, stop=("\n\n", "THE END"))
        )
    )

    body = llm.requests[0].body
    assert (body["max_tokens"], body["temperature"]) == (50, 0.2)
    assert body["stop"] == ["\n\n", "THE END"]
    assert "seed" not in body  # no seed unless one is configured


def test_a_configured_seed_reaches_the_server(run: Any, llm: FakeLLMServer, route: Route) -> None:
    run(complete(make(llm.base_url, route, seed=7)))

    assert llm.requests[0].body["seed"] == 7


def test_streaming_reports_growing_text(run: Any, llm: FakeLLMServer, route: Route) -> None:
    llm.script(Reply(chunk_delay=0.03, prompt_tokens=7, completion_tokens=4))
    seen = Recorder()
    started = time.monotonic()

    result = run(complete(make(llm.base_url, route), on_text=seen))

    assert result.text == DEFAULT_TEXT
    assert (result.prompt_tokens, result.completion_tokens, result.total_tokens) == (7, 4, 11)
    assert len(seen.texts) == len(DEFAULT_TEXT.split())  # one call per word chunk
    assert seen.texts[0] == "Once "
    assert seen.texts[-1].strip() == DEFAULT_TEXT
    for shorter, longer in zip(seen.texts, seen.texts[1:], strict=False):
        assert longer.startswith(shorter)
        assert len(longer) > len(shorter)
    # The server slept between chunks, so the last text came at least that much later.
    assert seen.times[-1] - started >= 0.03 * (len(seen.texts) - 1)
    (request,) = llm.requests
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "not-streamed"])
def test_calls_on_one_loop_share_a_connection(
    run: Any, llm: FakeLLMServer, route: Route, streamed: bool
) -> None:
    # LiteLLM's text-completion path would open a new client (and TLS context) for every call.
    on_text = Recorder() if streamed else None
    for _ in range(3):
        assert run(complete(make(llm.base_url, route), on_text=on_text)).text == DEFAULT_TEXT
    ports = {request.client_port for request in llm.requests}
    assert len(llm.requests) == 3 and len(ports) == 1


def test_another_event_loop_gets_its_own_connection(
    run: Any, llm: FakeLLMServer, route: Route
) -> None:
    run(complete(make(llm.base_url, route)))
    other = asyncio.new_event_loop()
    try:  # a connection opened on the first loop cannot be used from this one
        assert other.run_until_complete(complete(make(llm.base_url, route))).text == DEFAULT_TEXT
    finally:
        other.close()
    assert run(complete(make(llm.base_url, route))).text == DEFAULT_TEXT
    first, second, third = (request.client_port for request in llm.requests)
    assert first == third != second


def test_warm_up_sends_no_request_and_keeps_the_client_for_its_loop(llm: FakeLLMServer) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(warm_up(make(llm.base_url, TEXT)))
        assert llm.requests == []  # rehearsed in memory: nothing reached a server
        (kept,) = adapter._TEXT_CLIENTS[loop].values()
        assert str(kept.base_url).rstrip("/") == llm.base_url.rstrip("/")
        loop.run_until_complete(complete(make(llm.base_url, TEXT), on_text=Recorder()))
        assert list(adapter._TEXT_CLIENTS[loop].values()) == [kept]  # the call used it
    finally:
        loop.close()
    assert len(llm.requests) == 1


def test_after_warm_up_a_first_call_imports_nothing(llm: FakeLLMServer) -> None:
    # In a fresh interpreter: LiteLLM and httpx import most of a call's code on its first use
    # (0.2-0.3 s, measured), which warm_up moves to the worker's start.
    script = textwrap.dedent(
        f"""
        import asyncio, os, sys
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        from ai.adapters.litellm import CompletionRequest, complete, warm_up

        async def noop(text):
            pass

        async def main():
            requests = [
                CompletionRequest(
                    model=model, prompt="Once", mode=mode, api_base={llm.base_url!r}, api_key="k"
                )
                for model, mode in (
                    ("text-completion-openai/local", "completion"),
                    ("openai/hosted", "chat"),
                )
            ]
            for request in requests:
                await warm_up(request)
            before = set(sys.modules)
            for request in requests:
                await complete(request, on_text=noop)
                await complete(request)
            print(sorted(set(sys.modules) - before))

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert len(llm.requests) == 4


def test_tokens_are_counted_when_the_server_sends_no_usage(
    run: Any, llm: FakeLLMServer, route: Route
) -> None:
    llm.script(Reply(usage=False), Reply(usage=False))

    plain = run(complete(make(llm.base_url, route)))
    streamed = run(complete(make(llm.base_url, route), on_text=Recorder()))

    for result in (plain, streamed):
        assert result.text == DEFAULT_TEXT
        assert result.prompt_tokens > 0
        assert result.completion_tokens > 0
        assert result.total_tokens == result.prompt_tokens + result.completion_tokens


@pytest.mark.parametrize(
    "model", ["openai/gpt-4o-mini", "text-completion-openai/gpt-3.5-turbo-instruct"]
)
def test_a_priced_model_gets_a_cost(run: Any, llm: FakeLLMServer, model: str) -> None:
    route = Route(model, "chat" if model.startswith("openai/") else "completion")
    llm.script(
        Reply(prompt_tokens=1000, completion_tokens=500),
        Reply(prompt_tokens=1000, completion_tokens=500),
    )
    prompt_cost, completion_cost = litellm.cost_per_token(
        model=model, prompt_tokens=1000, completion_tokens=500
    )
    expected = Decimal(str(prompt_cost + completion_cost))

    plain = run(complete(make(llm.base_url, route)))
    streamed = run(complete(make(llm.base_url, route), on_text=Recorder()))

    assert expected > 0
    assert plain.cost_usd == pytest.approx(expected)
    assert streamed.cost_usd == pytest.approx(expected)
    assert isinstance(plain.cost_usd, Decimal)


def test_the_price_map_is_asked_once_about_a_model_it_does_not_know(monkeypatch) -> None:
    from ai.adapters import litellm as adapter

    asked: list[str] = []
    real = litellm.completion_cost

    def counted(*args: Any, **kwargs: Any) -> float:
        asked.append(kwargs["model"])
        return real(*args, **kwargs)

    monkeypatch.setattr(litellm, "completion_cost", counted)
    monkeypatch.setattr(adapter, "_UNPRICED", set())
    usage = litellm.Usage(prompt_tokens=1000, completion_tokens=500, total_tokens=1500)
    for _ in range(3):
        assert adapter._cost("openai/no-such-model", 1000, 500, usage) == Decimal("0")
        assert adapter._cost("openai/gpt-4o-mini", 1000, 500, usage) > 0
    assert asked.count("openai/no-such-model") == 1
    assert asked.count("openai/gpt-4o-mini") == 3  # a priced model is priced every time


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_litellm_is_told_a_known_unpriced_model_costs_nothing(
    run: Any, llm: FakeLLMServer, route: Route, stream: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ai.adapters import litellm as adapter

    monkeypatch.setattr(adapter, "_UNPRICED", set())
    seen: list[dict[str, Any]] = []
    for name in ("acompletion", "atext_completion"):
        real = getattr(litellm, name)

        async def recorded(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            seen.append(kwargs)
            return await _real(*args, **kwargs)

        monkeypatch.setattr(litellm, name, recorded)
    priced = Route("openai/gpt-4o-mini", "chat")
    on_text = Recorder() if stream else None

    first = run(complete(make(llm.base_url, route), on_text=on_text))
    second = run(complete(make(llm.base_url, route), on_text=on_text))
    priced_twice = [run(complete(make(llm.base_url, priced), on_text=on_text)) for _ in range(2)]

    pricing = [(kw.get("input_cost_per_token"), kw.get("output_cost_per_token")) for kw in seen]
    # The first call finds out; the second says so; a model LiteLLM can price is never told.
    assert pricing == [(None, None), (0.0, 0.0), (None, None), (None, None)]
    assert first.cost_usd == second.cost_usd == Decimal("0")
    assert all(c.cost_usd > 0 for c in priced_twice)
    assert all(
        "input_cost_per_token" not in r.body and "output_cost_per_token" not in r.body
        for r in llm.requests
    )  # a hint for LiteLLM, never sent to the provider


# ------------------------------------------------------------------------------------ faults


@dataclass(frozen=True)
class Case:
    step: Step
    kind: str
    retryable: bool
    status: int | None = None
    retry_after: float | None = None
    kind_when_streamed: str | None = None  # LiteLLM reads some bodies differently in a stream
    kind_for_text_route: str | None = None


CASES = {
    "429 retry-after": Case(Fault.rate_limited(retry_after=7), "rate_limited", True, 429, 7.0),
    "500": Case(Fault(500), "server_error", True, 500),
    "502": Case(Fault(502), "server_error", True, 502),
    "503": Case(Fault(503), "server_error", True, 503),
    "reset": Case(Reset(), "connection", True),
    # A non-JSON 200: LiteLLM raises when it parses it; in a stream it yields no text at all.
    "malformed": Case(Malformed(), "malformed", True, kind_when_streamed="empty"),
    # JSON without choices: the chat route raises, the text route answers with no text.
    "wrong shape": Case(
        Malformed(body='{"unexpected": true}'),
        "malformed",
        True,
        kind_when_streamed="empty",
        kind_for_text_route="empty",
    ),
    "hang": Case(Hang(5), "timeout", True),
    "empty": Case(Reply(text=" \n "), "empty", True),
    "401": Case(Fault(401), "auth", False, 401),
    "403": Case(Fault(403), "permission", False, 403),
    "404": Case(Fault(404), "not_found", False, 404),
    "422": Case(Fault(422), "unprocessable", False, 422),
    "400": Case(Fault(400), "bad_request", False, 400),
    "context window": Case(Fault.context_window(), "context_window", False, 400),
    "content policy": Case(Fault.content_policy(), "content_policy", False, 400),
    "quota": Case(
        Fault(429, "You exceeded your current quota.", code="insufficient_quota"),
        "quota_exceeded",
        False,
        429,
    ),
}


def assert_no_secret(err: ProviderError) -> None:
    for text in (str(err), repr(err), err.message, err.detail, *map(str, err.args)):
        assert SECRET not in text
    assert SECRET.encode() not in pickle.dumps(err)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("name", list(CASES))
def test_fault_is_classified_after_exactly_one_request(
    run: Any, llm: FakeLLMServer, route: Route, name: str, streamed: bool
) -> None:
    case = CASES[name]
    llm.script(case.step)
    timeout_s = 0.5 if isinstance(case.step, Hang) else 5.0
    on_text = Recorder() if streamed else None

    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        run(complete(make(llm.base_url, route, timeout_s=timeout_s), on_text=on_text))
    err = caught.value

    expected_kind = case.kind
    if route.mode == "completion" and case.kind_for_text_route:
        expected_kind = case.kind_for_text_route
    if streamed and case.kind_when_streamed:
        expected_kind = case.kind_when_streamed
    assert err.kind == expected_kind
    assert err.retryable is case.retryable
    assert err.status_code == case.status
    assert err.retry_after_s == case.retry_after
    assert err.message.endswith(".")
    assert "litellm" not in err.message.lower()  # a sentence for people, not a stack
    assert_no_secret(err)
    # num_retries=0: LiteLLM (and the OpenAI SDK under it) made one request and gave up.
    assert len(llm.requests) == 1
    assert time.monotonic() - started < 3


def test_no_hidden_retry_consumes_the_next_step(run: Any, llm: FakeLLMServer, route: Route) -> None:
    llm.script(Fault(503), Reply(text="retried by someone"))

    with pytest.raises(ProviderError):
        run(complete(make(llm.base_url, route)))

    assert len(llm.requests) == 1
    assert llm.pending_steps == 1  # the reply is still queued: nobody retried


def test_api_key_echoed_by_the_provider_is_scrubbed(run: Any, llm: FakeLLMServer) -> None:
    llm.script(
        Fault(401, f"Incorrect API key provided: {SECRET}. Find your key in the dashboard."),
        Fault(500, f"upstream failed; request had Authorization: Bearer {SECRET}"),
    )

    for expected in ("auth", "server_error"):
        with pytest.raises(ProviderError) as caught:
            run(complete(make(llm.base_url, CHAT)))
        assert caught.value.kind == expected
        assert "[redacted]" in caught.value.detail
        assert_no_secret(caught.value)


def test_errors_do_not_chain_the_provider_exception(run: Any, llm: FakeLLMServer) -> None:
    # Temporal serialises causes into the history; the provider's exception may quote the key.
    llm.script(Fault(400))
    with pytest.raises(ProviderError) as caught:
        run(complete(make(llm.base_url, CHAT)))
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_mid_stream_stall_is_a_timeout_after_partial_text(
    run: Any, llm: FakeLLMServer, route: Route
) -> None:
    llm.script(Reply(chunk_delay=3.0))
    seen = Recorder()

    with pytest.raises(ProviderError) as caught:
        run(complete(make(llm.base_url, route, timeout_s=0.5), on_text=seen))

    assert caught.value.kind == "timeout"
    assert caught.value.retryable
    assert seen.texts == ["Once "]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2.5"}, 2.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({}, None),
    ],
)
def test_retry_after_forms(
    run: Any, llm: FakeLLMServer, headers: dict[str, str], expected: float | None
) -> None:
    llm.script(Fault(429, headers=headers))
    with pytest.raises(ProviderError) as caught:
        run(complete(make(llm.base_url, CHAT)))
    assert caught.value.retry_after_s == expected


def test_retry_after_http_date(run: Any, llm: FakeLLMServer) -> None:
    llm.script(Fault(503, headers={"Retry-After": email.utils.formatdate(time.time() + 30)}))
    with pytest.raises(ProviderError) as caught:
        run(complete(make(llm.base_url, CHAT)))
    assert caught.value.kind == "server_error"
    assert 25 <= (caught.value.retry_after_s or 0) <= 31


def test_missing_api_key_is_an_auth_error_without_a_request(
    run: Any, llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ProviderError) as caught:
        run(complete(make(llm.base_url, CHAT, api_key=None)))
    assert (caught.value.kind, caught.value.retryable) == ("auth", False)
    assert llm.requests == []


def test_unreachable_server_is_a_connection_error(run: Any) -> None:
    with FakeLLMServer() as gone:
        url = gone.base_url  # a port nobody listens on once stopped
    with pytest.raises(ProviderError) as caught:
        run(complete(make(url, CHAT, timeout_s=2.0)))
    assert (caught.value.kind, caught.value.retryable) == ("connection", True)


def test_errors_raised_by_on_text_are_not_provider_errors(
    run: Any, llm: FakeLLMServer, route: Route
) -> None:
    async def broken(text: str) -> None:
        raise RuntimeError("the database is down")

    with pytest.raises(RuntimeError, match="database is down"):
        run(complete(make(llm.base_url, route), on_text=broken))
    # The stream was closed and the next call works.
    assert run(complete(make(llm.base_url, route))).text == DEFAULT_TEXT


def test_unknown_mode_is_a_programming_error(run: Any, llm: FakeLLMServer) -> None:
    with pytest.raises(ValueError, match="mode"):
        run(complete(make(llm.base_url, CHAT, mode="image")))
    assert llm.requests == []


def test_request_repr_hides_the_key(llm: FakeLLMServer) -> None:
    assert SECRET not in repr(make(llm.base_url, CHAT))


# ---------------------------------------------------------------------------------- classify


def _response(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "http://127.0.0.1/v1"))


@pytest.mark.parametrize(
    ("exc", "kind", "retryable"),
    [
        (
            litellm.ContentPolicyViolationError("flagged", model="m", llm_provider="openai"),
            "content_policy",
            False,
        ),
        (
            litellm.ContextWindowExceededError("too long", model="m", llm_provider="openai"),
            "context_window",
            False,
        ),
        (litellm.Timeout("slow", model="m", llm_provider="openai"), "timeout", True),
        (litellm.APIConnectionError("down", llm_provider="openai", model="m"), "connection", True),
        (
            litellm.ServiceUnavailableError(
                "busy", llm_provider="openai", model="m", response=_response(503)
            ),
            "server_error",
            True,
        ),
        (
            litellm.PermissionDeniedError(
                "no", llm_provider="openai", model="m", response=_response(403)
            ),
            "permission",
            False,
        ),
        (litellm.BadRequestError("bad", model="m", llm_provider="openai"), "bad_request", False),
        (httpx.ReadError("reset by peer"), "connection", True),
        (TimeoutError(), "timeout", True),
        (ValueError("Expecting value: line 1 column 1 (char 0)"), "server_error", True),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_classify_litellm_exceptions(exc: BaseException, kind: str, retryable: bool) -> None:
    err = classify(exc)
    assert (err.kind, err.retryable) == (kind, retryable)
    assert err.message


def test_classify_keeps_a_provider_error_and_scrubs_secrets() -> None:
    original = ProviderError("empty")
    assert classify(original) is original
    err = classify(
        RuntimeError("key=sk-live-abcdefghijkl and my-own-secret-123"),
        secrets=["my-own-secret-123"],
    )
    assert "sk-live-abcdefghijkl" not in err.detail
    assert "my-own-secret-123" not in err.detail


def test_provider_error_defaults_and_pickling() -> None:
    err = ProviderError("rate_limited", retry_after_s=7.0, status_code=429, detail="d")
    assert err.retryable
    assert str(err) == "The AI provider is rate-limiting us; retrying shortly."
    assert ProviderError("auth").retryable is False
    assert ProviderError("empty", retryable=True).message
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.kind, clone.retryable, clone.status_code, clone.retry_after_s, clone.detail) == (
        "rate_limited",
        True,
        429,
        7.0,
        "d",
    )
    assert {"rate_limited", "timeout", "context_window", "content_policy"} <= ProviderError.KINDS


# ------------------------------------------------------------------------------- out of process


def test_fake_server_as_a_process_scripted_over_http(run: Any) -> None:
    with FakeLLMProcess() as llm:
        llm.script(Fault.rate_limited(retry_after=7))
        with pytest.raises(ProviderError) as caught:
            run(complete(make(llm.base_url, CHAT)))
        assert (caught.value.kind, caught.value.retry_after_s) == ("rate_limited", 7.0)

        result = run(complete(make(llm.base_url, TEXT)))
        assert result.text == DEFAULT_TEXT
        assert [r["path"] for r in llm.requests()] == ["/v1/chat/completions", "/v1/completions"]
