"""The fake LLM server speaks enough of the OpenAI wire format to be trusted by other tests."""

from __future__ import annotations

import email.utils
import http.client
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.llm_server import (
    DEFAULT_TEXT,
    FakeLLMProcess,
    FakeLLMServer,
    Fault,
    Hang,
    Malformed,
    Reply,
    Reset,
    step_from_json,
    step_to_json,
)

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "Tell me a story"}]}
TEXT = {"model": "fake-model", "prompt": "Once upon"}


@pytest.fixture(scope="module")
def module_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def llm(module_llm: FakeLLMServer) -> FakeLLMServer:
    module_llm.reset()
    module_llm.default = Reply()
    module_llm.fault_rate = 0.0
    return module_llm


def post(
    port: int, path: str, body: Any, *, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(body),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def get(port: int, path: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def sse_events(raw: bytes) -> list[str]:
    """The ``data:`` payloads of an event stream, in order."""
    blocks = raw.decode().split("\n\n")
    assert blocks[-1] == "", "an event stream ends with a blank line"
    events = []
    for block in blocks[:-1]:
        assert block.startswith("data: "), block
        events.append(block.removeprefix("data: "))
    return events


# --------------------------------------------------------------------------- successful replies


def test_chat_completion_has_openai_shape_and_usage(llm: FakeLLMServer) -> None:
    status, headers, raw = post(llm.port, "/v1/chat/completions", CHAT)

    assert status == 200
    assert headers["content-type"] == "application/json"
    body = json.loads(raw)
    assert body["object"] == "chat.completion"
    assert body["model"] == "fake-model"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": DEFAULT_TEXT}
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] == 4  # "Tell me a story", counted in words
    assert usage["completion_tokens"] == len(DEFAULT_TEXT.split())
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_text_completion_has_openai_shape(llm: FakeLLMServer) -> None:
    llm.script(Reply(text="the fox ran.", prompt_tokens=11, completion_tokens=3))

    status, _, raw = post(llm.port, "/v1/completions", TEXT)

    body = json.loads(raw)
    assert status == 200
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "the fox ran."
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


def test_reply_without_usage(llm: FakeLLMServer) -> None:
    llm.script(Reply(usage=False))
    _, _, raw = post(llm.port, "/v1/chat/completions", CHAT)
    assert "usage" not in json.loads(raw)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_stream_sends_sse_chunks_then_usage_then_done(llm: FakeLLMServer, path: str) -> None:
    body = {**(CHAT if "chat" in path else TEXT), "stream": True}
    body["stream_options"] = {"include_usage": True}

    status, headers, raw = post(llm.port, path, body)

    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == len(DEFAULT_TEXT.split())
    if "chat" in path:
        pieces = [c["choices"][0]["delta"].get("content") for c in chunks[:-1]]
    else:
        pieces = [c["choices"][0]["text"] for c in chunks[:-1]]
    assert "".join(p or "" for p in pieces) == DEFAULT_TEXT
    assert len([p for p in pieces if p]) == len(DEFAULT_TEXT.split())  # word by word
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_stream_without_include_usage_has_no_usage_chunk(llm: FakeLLMServer) -> None:
    _, _, raw = post(llm.port, "/v1/chat/completions", {**CHAT, "stream": True})
    chunks = [json.loads(e) for e in sse_events(raw)[:-1]]
    assert all("usage" not in c for c in chunks)


def test_stream_honours_explicit_chunks_and_chunk_delay(llm: FakeLLMServer) -> None:
    llm.script(Reply(chunks=["The ", "fox ", "slept."], chunk_delay=0.1))
    conn = http.client.HTTPConnection("127.0.0.1", llm.port, timeout=5)
    started = time.monotonic()
    conn.request("POST", "/v1/chat/completions", body=json.dumps({**CHAT, "stream": True}))
    response = conn.getresponse()
    arrivals = []
    while line := response.readline():
        if line.startswith(b"data: {") and b'"content"' in line:
            arrivals.append((time.monotonic(), json.loads(line[6:])))
    conn.close()

    texts = [chunk["choices"][0]["delta"]["content"] for _, chunk in arrivals]
    assert texts == ["The ", "fox ", "slept."]
    # A lower bound that holds however late this thread gets to read: two delays were slept.
    assert arrivals[-1][0] - started >= 0.2


def test_latency_delays_the_reply(llm: FakeLLMServer) -> None:
    llm.script(Reply(latency=0.2))
    started = time.monotonic()
    post(llm.port, "/v1/chat/completions", CHAT)
    assert time.monotonic() - started >= 0.18


def test_models_endpoint(llm: FakeLLMServer) -> None:
    status, body = get(llm.port, "/v1/models")
    assert status == 200
    assert body["data"][0]["id"] == "fake-model"


# --------------------------------------------------------------------------------- scripting


def test_steps_are_consumed_in_order_then_default_answers(llm: FakeLLMServer) -> None:
    llm.script(Reply(text="one"), Fault(500), Reply(text="two"))

    results = [post(llm.port, "/v1/completions", TEXT) for _ in range(4)]

    assert [status for status, _, _ in results] == [200, 500, 200, 200]
    texts = [json.loads(raw)["choices"][0]["text"] for status, _, raw in results if status == 200]
    assert texts == ["one", "two", DEFAULT_TEXT]
    assert llm.pending_steps == 0


def test_requests_are_recorded_and_reset_clears_them(llm: FakeLLMServer) -> None:
    post(llm.port, "/v1/chat/completions", CHAT, headers={"Authorization": "Bearer sk-x"})

    (recorded,) = llm.requests
    assert recorded.method == "POST"
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == "Bearer sk-x"  # header names lower-cased
    assert recorded.body == CHAT

    llm.script(Fault(500))
    llm.default = Reply(text="changed")
    llm.reset()
    assert llm.requests == []
    assert llm.pending_steps == 0
    assert llm.default == Reply()  # back to the constructor's default


def test_fault_rate_mode_is_seeded_and_mixes_faults_with_replies() -> None:
    def outcomes(seed: int) -> list[str]:
        with FakeLLMServer(fault_rate=0.5, seed=seed) as server:
            result = []
            for _ in range(30):
                try:
                    status, _, _ = post(server.port, "/v1/chat/completions", CHAT)
                    result.append(str(status))
                except (ConnectionError, http.client.HTTPException):
                    result.append("reset")
            return result

    first = outcomes(1)
    assert first == outcomes(1)
    assert "200" in first
    assert set(first) - {"200"} <= {"429", "500", "503", "reset"}
    assert len(set(first) - {"200"}) >= 2


# ------------------------------------------------------------------------------------ faults


def test_fault_has_openai_error_body_and_headers(llm: FakeLLMServer) -> None:
    llm.script(Fault.rate_limited(retry_after=7))

    status, headers, raw = post(llm.port, "/v1/chat/completions", CHAT)

    assert status == 429
    assert headers["retry-after"] == "7"
    error = json.loads(raw)["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["message"]
    assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (Fault.context_window(), 400, "context_length_exceeded"),
        (Fault.content_policy(), 400, "content_policy_violation"),
        (Fault(401), 401, None),
        (Fault(403), 403, None),
        (Fault(503, "busy", headers={"Retry-After": "2"}), 503, None),
    ],
)
def test_fault_statuses(llm: FakeLLMServer, fault: Fault, status: int, code: str | None) -> None:
    llm.script(fault)
    got, _, raw = post(llm.port, "/v1/completions", TEXT)
    assert got == status
    assert json.loads(raw)["error"]["code"] == code


def test_reset_closes_the_connection_without_a_response(llm: FakeLLMServer) -> None:
    llm.script(Reset())
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        post(llm.port, "/v1/chat/completions", CHAT)
    assert post(llm.port, "/v1/chat/completions", CHAT)[0] == 200  # the server lives on


def test_hang_outlasts_a_client_timeout(llm: FakeLLMServer) -> None:
    llm.script(Hang(2))
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        post(llm.port, "/v1/chat/completions", CHAT, timeout=0.3)
    assert time.monotonic() - started < 1.5


def test_malformed_is_a_200_that_is_not_a_completion(llm: FakeLLMServer) -> None:
    llm.script(Malformed(), Malformed(body='{"unexpected": true}'))

    status, _, raw = post(llm.port, "/v1/chat/completions", CHAT)
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(raw)
    assert post(llm.port, "/v1/chat/completions", CHAT)[2] == b'{"unexpected": true}'


def test_steps_round_trip_through_json() -> None:
    steps = [
        Reply(text="x", chunk_delay=0.1),
        Fault.rate_limited(3),
        Hang(1.5),
        Malformed(body="nope"),
        Reset(),
    ]
    assert [step_from_json(step_to_json(s)) for s in steps] == steps
    with pytest.raises(ValueError, match="unknown step kind"):
        step_from_json({"kind": "explode"})


# ---------------------------------------------------------------------------- control endpoints


def test_control_endpoints_in_process(llm: FakeLLMServer) -> None:
    status, _, raw = post(
        llm.port,
        "/_control/script",
        [{"kind": "fault", "status": 429, "headers": {"Retry-After": "7"}}, {"kind": "reset"}],
    )
    assert (status, json.loads(raw)["queued"]) == (200, 2)
    post(llm.port, "/_control/default", {"text": "A new default."})

    assert post(llm.port, "/v1/chat/completions", CHAT)[0] == 429
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        post(llm.port, "/v1/chat/completions", CHAT)
    _, _, raw = post(llm.port, "/v1/chat/completions", CHAT)
    assert json.loads(raw)["choices"][0]["message"]["content"] == "A new default."

    status, recorded = get(llm.port, "/_control/requests")
    assert status == 200
    assert [r["path"] for r in recorded] == ["/v1/chat/completions"] * 3  # control not recorded

    assert post(llm.port, "/_control/reset", {})[0] == 200
    assert get(llm.port, "/_control/requests")[1] == []
    assert post(llm.port, "/_control/script", [{"kind": "nonsense"}])[0] == 400


def test_cli_process_prints_ready_and_is_scriptable() -> None:
    with FakeLLMProcess("--latency", "0.0") as llm:
        assert llm.base_url == f"http://127.0.0.1:{llm.port}/v1"
        llm.script(Fault.rate_limited(retry_after=7))

        status, headers, _ = post(llm.port, "/v1/chat/completions", CHAT)
        assert (status, headers["retry-after"]) == (429, "7")
        status, _, raw = post(llm.port, "/v1/chat/completions", CHAT)
        assert status == 200
        assert json.loads(raw)["choices"][0]["message"]["content"] == DEFAULT_TEXT
        assert len(llm.requests()) == 2

        llm.set_default(Reply(text="Changed."))
        _, _, raw = post(llm.port, "/v1/completions", TEXT)
        assert json.loads(raw)["choices"][0]["text"] == "Changed."
        llm.reset()
        assert llm.requests() == []

        started = time.monotonic()
        assert llm.stop() == 0  # SIGTERM is a clean shutdown
        assert time.monotonic() - started < 3


def test_cli_fault_rate_flag() -> None:
    with FakeLLMProcess("--fault-rate", "1.0", "--seed", "3") as llm:
        statuses = []
        for _ in range(5):
            try:
                statuses.append(post(llm.port, "/v1/chat/completions", CHAT)[0])
            except (ConnectionError, http.client.HTTPException):
                statuses.append(0)
        assert 200 not in statuses


def test_retry_after_http_date_is_passed_through(llm: FakeLLMServer) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    llm.script(Fault(429, headers={"Retry-After": when}))
    _, headers, _ = post(llm.port, "/v1/chat/completions", CHAT)
    assert headers["retry-after"] == when
