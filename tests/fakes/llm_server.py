"""A fake OpenAI-compatible LLM server on loopback, for tests, benchmarks and crash drills.

Standard library only (no Django, no LiteLLM) so it starts in a fraction of a second and can run
in-process (``FakeLLMServer`` in a thread) or as its own process::

    python -m tests.fakes.llm_server --port 8099 --latency 0.0 [--fault-rate 0.3 --seed 1]

The process prints ``READY http://127.0.0.1:<port>/v1`` once it listens, and is scripted over HTTP
through ``/_control/*`` (see ``_Handler``).

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions`` (legacy text completion, the
``text-completion-openai/`` route in LiteLLM), ``GET /v1/models``. ``"stream": true`` is answered
with server-sent events; with ``stream_options.include_usage`` a final usage chunk precedes
``data: [DONE]``.

Each request consumes one scripted step (``Reply``, ``Fault``, ``Hang``, ``Malformed``, ``Reset``);
when the queue is empty ``default`` answers, unless ``fault_rate`` picks a random retryable fault.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_TEXT = "Once upon a time the fox found a lantern."

# --------------------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Reply:
    """A successful completion. Token counts default to a word count of prompt / text."""

    text: str = DEFAULT_TEXT
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency: float = 0.0  # seconds before the first byte (time to first token)
    chunk_delay: float = 0.0  # seconds between stream chunks
    chunks: list[str] | None = None  # explicit stream pieces; default: word by word
    usage: bool = True  # False: omit usage (non-stream body and stream usage chunk)
    finish_reason: str = "stop"


_DEFAULT_FAULT_MESSAGES: dict[int, str] = {
    400: "Invalid request.",
    401: "Incorrect API key provided.",
    403: "You are not allowed to access this model.",
    404: "The model does not exist.",
    422: "Unprocessable entity.",
    429: "Rate limit reached for requests. Please try again later.",
    500: "The server had an error while processing your request.",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}

_DEFAULT_FAULT_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "requests",
}


@dataclass(frozen=True)
class Fault:
    """An HTTP error with an OpenAI-style body: ``{"error": {message, type, param, code}}``."""

    status: int
    message: str = ""  # empty: a typical OpenAI message for the status
    headers: dict[str, str] = field(default_factory=dict)
    latency: float = 0.0
    code: str | None = None
    type: str | None = None  # empty: a typical OpenAI error type for the status

    @classmethod
    def rate_limited(cls, retry_after: float | None = None) -> Fault:
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        return cls(429, headers=headers, code="rate_limit_exceeded")

    @classmethod
    def context_window(cls) -> Fault:
        return cls(
            400,
            "This model's maximum context length is 8192 tokens. However, your messages resulted"
            " in 9001 tokens. Please reduce the length of the messages.",
            code="context_length_exceeded",
        )

    @classmethod
    def content_policy(cls) -> Fault:
        return cls(
            400,
            "Your request was rejected as a result of our safety system.",
            code="content_policy_violation",
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message or _DEFAULT_FAULT_MESSAGES.get(self.status, "Error."),
                "type": self.type or _DEFAULT_FAULT_TYPES.get(self.status, "server_error"),
                "param": None,
                "code": self.code,
            }
        }


@dataclass(frozen=True)
class Hang:
    """Sleep before answering with ``default``: makes clients hit their timeout."""

    seconds: float = 30.0


@dataclass(frozen=True)
class Malformed:
    """A 200 whose body is not a completion (not JSON, or JSON of the wrong shape)."""

    body: str = "<html><body>upstream proxy says hello</body></html>"
    content_type: str = "application/json"


@dataclass(frozen=True)
class Reset:
    """Close the connection without any response (TCP RST)."""


Step = Reply | Fault | Hang | Malformed | Reset

_KINDS: dict[str, type[Any]] = {
    "reply": Reply,
    "fault": Fault,
    "hang": Hang,
    "malformed": Malformed,
    "reset": Reset,
}


def step_from_json(data: dict[str, Any]) -> Step:
    """``{"kind": "fault", "status": 429, "headers": {"Retry-After": "7"}}`` -> ``Fault(...)``."""
    data = dict(data)
    kind = data.pop("kind", "reply")
    try:
        cls = _KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown step kind {kind!r}; expected one of {sorted(_KINDS)}") from None
    step: Step = cls(**data)
    return step


def step_to_json(step: Step) -> dict[str, Any]:
    kind = next(k for k, cls in _KINDS.items() if isinstance(step, cls))
    return {"kind": kind, **asdict(step)}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when it was not JSON, or None
    client_port: int = 0  # the TCP connection it came on: equal ports, a kept connection

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------- server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung handler must never keep the process alive
    allow_reuse_address = True
    request_queue_size = 256  # benchmarks open many connections at once
    fake: FakeLLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients drop keep-alive connections and time out mid-reply all the time; that is
        # their business. Anything else is a bug in the fake and gets the usual traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeLLMServer:
    """In-process fake; ``with FakeLLMServer() as llm: llm.script(Fault(429)); ...``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        default: Reply | None = None,
        fault_rate: float = 0.0,
        seed: int | None = None,
        record_limit: int = 10_000,  # the newest requests; a long benchmark must not grow forever
    ) -> None:
        self.host = host
        self.port = port
        self.default: Reply = default if default is not None else Reply()
        self._initial_default = self.default
        self.fault_rate = fault_rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._steps: deque[Step] = deque()
        self._requests: deque[RecordedRequest] = deque(maxlen=record_limit)
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)

    # -- lifecycle

    def start(self) -> FakeLLMServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.fake = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"fake-llm-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes Hang and latency sleeps
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def serve_forever(self) -> None:
        """Run in the calling thread (the CLI); returns after ``stop()`` from a signal handler."""
        self.start()
        thread = self._thread
        assert thread is not None
        while thread.is_alive():
            thread.join(timeout=0.2)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- scripting

    def script(self, *steps: Step) -> None:
        with self._lock:
            self._steps.extend(steps)

    def reset(self) -> None:
        """Forget scripted steps and recorded requests; restore the constructor's ``default``."""
        with self._lock:
            self._steps.clear()
            self._requests.clear()
            self.default = self._initial_default

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def pending_steps(self) -> int:
        with self._lock:
            return len(self._steps)

    # -- used by the handler

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_step(self) -> Step:
        with self._lock:
            if self._steps:
                return self._steps.popleft()
            if self.fault_rate and self._random.random() < self.fault_rate:
                return self._random.choice(
                    [Fault(429, headers={"Retry-After": "1"}), Fault(500), Fault(503), Reset()]
                )
            return self.default

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _next_id(self) -> int:
        return next(self._ids)


_WORDS = re.compile(r"\S+\s*|\s+")


def _count_tokens(text: str) -> int:
    return len(text.split())


def _prompt_text(path: str, body: dict[str, Any]) -> str:
    if path.endswith("/chat/completions"):
        parts = []
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):  # content parts
                parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
        return "\n".join(parts)
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        return "\n".join(p for p in prompt if isinstance(p, str))
    return prompt if isinstance(prompt, str) else ""


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, like real providers
    # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK adds
    # ~40 ms to every reply.
    disable_nagle_algorithm = True
    server_version = "FakeLLM/1.0"

    def log_message(self, *args: Any) -> None:
        pass  # quiet tests

    @property
    def fake(self) -> FakeLLMServer:
        return self.server.fake

    # -- routing

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/_control/requests":
            self._send_json(200, [r.to_json() for r in self.fake.requests])
        elif path == "/_control/health":
            self._send_json(200, {"ok": True, "pending_steps": self.fake.pending_steps})
        elif path == "/v1/models":
            self.fake._record(
                RecordedRequest("GET", path, self._headers(), None, self.client_address[1])
            )
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}
                    ],
                },
            )
        else:
            self._send_json(404, Fault(404, f"No route GET {path}").body())

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        raw = self._read_body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if path.startswith("/_control/"):
            self._control(path, body)
            return
        self.fake._record(
            RecordedRequest("POST", path, self._headers(), body, self.client_address[1])
        )
        if path not in ("/v1/chat/completions", "/v1/completions"):
            self._send_json(404, Fault(404, f"No route POST {path}").body())
            return
        if not isinstance(body, dict):
            self._send_json(400, Fault(400, "We could not parse the JSON body.").body())
            return
        self._answer(path, body, self.fake._next_step())

    def _control(self, path: str, body: Any) -> None:
        try:
            if path == "/_control/script":
                steps = [step_from_json(s) for s in (body or [])]
                self.fake.script(*steps)
                self._send_json(200, {"queued": len(steps), "pending": self.fake.pending_steps})
            elif path == "/_control/default":
                step = step_from_json({"kind": "reply", **(body or {})})
                assert isinstance(step, Reply)
                self.fake.default = step
                self._send_json(200, {"default": step_to_json(step)})
            elif path == "/_control/reset":
                self.fake.reset()
                self._send_json(200, {"ok": True})
            else:
                self._send_json(404, {"error": f"unknown control endpoint {path}"})
        except (TypeError, ValueError, AssertionError) as exc:
            self._send_json(400, {"error": str(exc)})

    # -- answering

    def _answer(self, path: str, body: dict[str, Any], step: Step) -> None:
        if isinstance(step, Hang):
            self.fake._sleep(step.seconds)
            step = self.fake.default
            if self.fake._stopping.is_set():
                self._reset_connection()
                return
        if isinstance(step, Reset):
            self._reset_connection()
        elif isinstance(step, Fault):
            self.fake._sleep(step.latency)
            self._send_json(step.status, step.body(), step.headers)
        elif isinstance(step, Malformed):
            self._send_raw(200, step.body.encode(), step.content_type)
        elif body.get("stream"):
            self._stream(path, body, step)
        else:
            self.fake._sleep(step.latency)
            self._send_json(200, self._completion(path, body, step))

    def _usage(self, path: str, body: dict[str, Any], step: Reply) -> dict[str, int]:
        prompt = (
            step.prompt_tokens
            if step.prompt_tokens is not None
            else _count_tokens(_prompt_text(path, body))
        )
        completion = (
            step.completion_tokens
            if step.completion_tokens is not None
            else _count_tokens(step.text)
        )
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _completion(self, path: str, body: dict[str, Any], step: Reply) -> dict[str, Any]:
        model = body.get("model", "fake-model")
        n = self.fake._next_id()
        reply: dict[str, Any]
        if path.endswith("/chat/completions"):
            reply = {
                "id": f"chatcmpl-fake-{n}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": step.text},
                        "logprobs": None,
                        "finish_reason": step.finish_reason,
                    }
                ],
            }
        else:
            reply = {
                "id": f"cmpl-fake-{n}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "text": step.text,
                        "logprobs": None,
                        "finish_reason": step.finish_reason,
                    }
                ],
            }
        if step.usage:
            reply["usage"] = self._usage(path, body, step)
        return reply

    def _stream(self, path: str, body: dict[str, Any], step: Reply) -> None:
        chat = path.endswith("/chat/completions")
        model = body.get("model", "fake-model")
        n = self.fake._next_id()
        created = int(time.time())
        base: dict[str, Any] = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-fake-{n}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": model,
        }

        def choice(text: str | None, finish_reason: str | None) -> dict[str, Any]:
            if chat:
                delta: dict[str, Any] = {}
                if text is not None:
                    delta = {"role": "assistant", "content": text}
                return {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return {
                "index": 0,
                "text": text or "",
                "logprobs": None,
                "finish_reason": finish_reason,
            }

        self.fake._sleep(step.latency)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pieces = step.chunks if step.chunks is not None else _WORDS.findall(step.text)
        try:
            for i, piece in enumerate(pieces):
                if i and step.chunk_delay:
                    self.fake._sleep(step.chunk_delay)
                    if self.fake._stopping.is_set():
                        self._reset_connection()
                        return
                self._write_event({**base, "choices": [choice(piece, None)]})
            self._write_event({**base, "choices": [choice(None, step.finish_reason)]})
            stream_options = body.get("stream_options") or {}
            if step.usage and stream_options.get("include_usage"):
                self._write_event({**base, "choices": [], "usage": self._usage(path, body, step)})
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")  # end of chunked body
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (cancelled or timed out)

    # -- wire helpers

    def _headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def _write_event(self, payload: dict[str, Any]) -> None:
        self._write_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _reset_connection(self) -> None:
        """Abort the TCP connection: SO_LINGER 0 makes close() send RST instead of FIN."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # the makefile() holds a reference; the fd closes with the last
            self.connection.close()
        except OSError:
            pass


# ------------------------------------------------------------------------------ out of process


class FakeLLMProcess:
    """The fake in its own process (benchmarks, crash drills), scripted over ``/_control``.

    ``with FakeLLMProcess("--latency", "0.05") as llm: llm.script(Fault(503)); ...``
    """

    def __init__(self, *args: str, port: int = 0, ready_timeout: float = 15.0) -> None:
        self.args = [*args]
        self.port = port
        self.ready_timeout = ready_timeout
        self.base_url = ""
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> FakeLLMProcess:
        repo_root = Path(__file__).resolve().parents[2]  # `-m tests.fakes...` resolves from here
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.llm_server", "--port", str(self.port), *self.args],
            cwd=repo_root,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, remaining))
            if not ready:
                self.stop()
                raise TimeoutError(f"the fake LLM server did not start in {self.ready_timeout}s")
            line = self.process.stdout.readline()
            if not line:
                code = self.process.wait()
                raise RuntimeError(f"the fake LLM server exited with status {code}")
            if line.startswith("READY "):
                self.base_url = line.split()[1]
                self.port = int(self.base_url.rsplit(":", 1)[1].split("/", 1)[0])
                return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> FakeLLMProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def control_url(self) -> str:
        return self.base_url.removesuffix("/v1") + "/_control"

    def _control(self, method: str, name: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.control_url}/{name}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # loopback only
            return json.loads(response.read())

    def script(self, *steps: Step) -> None:
        self._control("POST", "script", [step_to_json(step) for step in steps])

    def set_default(self, reply: Reply) -> None:
        payload = step_to_json(reply)
        payload.pop("kind")
        self._control("POST", "default", payload)

    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._control("GET", "requests")
        return result

    def reset(self) -> None:
        self._control("POST", "reset", {})


# --------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="the default reply text")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="0..1 random faults")
    parser.add_argument("--seed", type=int, default=None, help="seed for --fault-rate")
    args = parser.parse_args(argv)

    server = FakeLLMServer(
        args.host,
        args.port,
        default=Reply(text=args.text, latency=args.latency, chunk_delay=args.chunk_delay),
        fault_rate=args.fault_rate,
        seed=args.seed,
    )

    def _stop(signum: int, frame: object) -> None:
        # shutdown() blocks until serve_forever exits; run it off the main thread.
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.start()
    print(f"READY {server.base_url}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
