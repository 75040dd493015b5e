"""The one place Story-Sprout calls a language model: LiteLLM behind a small, typed surface.

No Django here (an import-linter contract enforces it): activities translate settings into a
``CompletionRequest`` and a ``ProviderError`` into a Temporal ``ApplicationError``.

Two LiteLLM defaults are overridden on purpose:

* ``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set before ``import litellm``: otherwise the import
  downloads the model price list from GitHub, which stalls for seconds (or fails) on a worker
  without internet and lets prices change under a running system. The bundled map is enough.
* Every call passes ``num_retries=0``: LiteLLM's OpenAI-compatible path otherwise retries twice by
  itself, hidden inside one activity attempt. Temporal owns retries (with backoff, Retry-After,
  visibility in the history), so a failure must surface at once, classified by ``classify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import hashlib
import json
import os
import re
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Final, Literal

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx
import litellm
import openai

# LiteLLM prints coloured "Give Feedback / Get Help" banners to stdout on every failure; our
# errors are classified and logged by the activities instead.
litellm.suppress_debug_info = True

__all__ = [
    "Completion",
    "CompletionRequest",
    "OnText",
    "ProviderError",
    "classify",
    "complete",
    "warm_up",
]

OnText = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class CompletionRequest:
    model: str  # any LiteLLM model string: "openai/gpt-4o-mini", "text-completion-openai/x"
    prompt: str
    mode: Literal["chat", "completion"]  # chat: one user message; completion: a raw prompt
    api_base: str | None = None
    # From the worker's environment only, never from workflow input; kept out of repr().
    api_key: str | None = field(default=None, repr=False)
    max_tokens: int = 400
    temperature: float = 0.8
    top_p: float | None = None  # None: the model's default (some providers refuse both knobs)
    stop: tuple[str, ...] = ()
    seed: int | None = None  # sampling seed, for models that honour one
    # Per network phase (connect, each read), as httpx counts it: a stream that keeps sending
    # is not cut off. The activity's start-to-close timeout bounds the whole call.
    timeout_s: float = 60.0


@dataclass(frozen=True)
class Completion:
    text: str  # stripped, never empty
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: Decimal  # 0 for a model LiteLLM has no price for (a local model)
    model: str  # the requested LiteLLM model string (what the operator configured)


# kind -> (retryable, a sentence an author or operator can read)
_KINDS: Final[dict[str, tuple[bool, str]]] = {
    "rate_limited": (True, "The AI provider is rate-limiting us; retrying shortly."),
    "timeout": (True, "The AI provider took too long to answer; retrying."),
    "server_error": (True, "The AI provider had an internal error; retrying."),
    "connection": (True, "We could not reach the AI provider; retrying."),
    "malformed": (True, "The AI provider sent a reply we could not read; retrying."),
    "empty": (True, "The AI provider returned no text; retrying."),
    "auth": (
        False,
        "The AI provider rejected our credentials; an operator needs to check the API key.",
    ),
    "permission": (
        False,
        "Our AI account is not allowed to use this model; an operator needs to check access.",
    ),
    "bad_request": (False, "The AI provider rejected the request as invalid."),
    "context_window": (
        False,
        "The story is too long for the AI model's context window; shorten it or use a model "
        "with a larger context.",
    ),
    "content_policy": (
        False,
        "The AI provider declined this request under its content policy; try rewording the page.",
    ),
    "not_found": (
        False,
        "The AI model was not found; an operator needs to check the configured model name.",
    ),
    "unprocessable": (False, "The AI provider could not process the request."),
    # A 429 that waiting does not fix: the account is out of credit.
    "quota_exceeded": (
        False,
        "Our AI account has run out of credit or quota; an operator needs to check billing.",
    ),
}


class ProviderError(Exception):
    """A classified model-call failure.

    kind: short machine name, one of ``ProviderError.KINDS`` ("rate_limited", "timeout",
    "server_error", "connection", "malformed", "empty", "auth", "permission", "bad_request",
    "context_window", "content_policy", "not_found", "unprocessable", "quota_exceeded").
    retryable: whether another attempt may succeed (Temporal decides when).
    status_code: the provider's HTTP status, when it sent one.
    retry_after_s: the provider's Retry-After, when it sent one.
    message: a human sentence for authors/operators; ``str(err)`` is this message.
    detail: the provider's own wording for operators, with secrets scrubbed.
    """

    KINDS: Final = frozenset(_KINDS)

    def __init__(
        self,
        kind: str,
        message: str = "",
        *,
        retryable: bool | None = None,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        detail: str = "",
    ) -> None:
        default_retryable, default_message = _KINDS.get(kind, (True, "The AI call failed."))
        self.kind = kind
        self.message = message or default_message
        self.retryable = default_retryable if retryable is None else retryable
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.detail = detail
        super().__init__(self.message)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable despite keyword-only arguments
        state = {
            "retryable": self.retryable,
            "status_code": self.status_code,
            "retry_after_s": self.retry_after_s,
            "detail": self.detail,
        }
        return (_rebuild_provider_error, (self.kind, self.message, state))

    def __repr__(self) -> str:
        return (
            f"ProviderError(kind={self.kind!r}, retryable={self.retryable}, "
            f"status_code={self.status_code}, retry_after_s={self.retry_after_s}, "
            f"message={self.message!r})"
        )


def _rebuild_provider_error(kind: str, message: str, state: dict[str, Any]) -> ProviderError:
    return ProviderError(kind, message, **state)


# --------------------------------------------------------------------------------- the call


async def complete(request: CompletionRequest, *, on_text: OnText | None = None) -> Completion:
    """Run one model call; raise ``ProviderError`` for any provider-side failure.

    With ``on_text`` the reply is streamed and ``await on_text(text_so_far)`` runs after every
    chunk that adds text (the caller throttles). Exceptions raised by ``on_text`` itself propagate
    unchanged: they are the caller's, not the provider's.
    """
    if request.mode not in ("chat", "completion"):
        raise ValueError(f"unknown completion mode {request.mode!r}")  # a bug, not the provider
    secrets = (request.api_key,) if request.api_key else ()
    kwargs = _call_kwargs(request)
    if on_text is None:
        try:
            response = await _call(request, kwargs)
            text = _response_text(response, request.mode)
        except Exception as exc:  # noqa: BLE001 - the provider boundary: classify everything
            # `from None`: the provider's exception may quote request details (headers, key).
            raise classify(exc, secrets=secrets) from None
        usage = getattr(response, "usage", None)
    else:
        text, usage = await _stream(request, kwargs, on_text, secrets)

    text = text.strip()
    if not text:
        raise ProviderError("empty")
    prompt_tokens, completion_tokens, total_tokens = _token_counts(request, usage, text)
    return Completion(
        text=text,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=total_tokens,
        cost_usd=_cost(request.model, prompt_tokens, completion_tokens, usage),
        model=request.model,
    )


def _call_kwargs(request: CompletionRequest) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "timeout": request.timeout_s,
        "num_retries": 0,  # Temporal owns retries (see the module docstring)
        # Any LiteLLM model may be configured; drop knobs a model does not take (e.g.
        # temperature on reasoning models) instead of failing every job.
        "drop_params": True,
    }
    if request.stop:
        kwargs["stop"] = list(request.stop)
    if request.top_p is not None:
        kwargs["top_p"] = request.top_p
    if request.seed is not None:
        kwargs["seed"] = request.seed
    if request.api_base is not None:
        kwargs["api_base"] = request.api_base
    if request.api_key is not None:
        kwargs["api_key"] = request.api_key
    if request.model in _UNPRICED:
        # LiteLLM prices every call for its own logging (twice when streamed), searching its map
        # and its fallbacks for a model it does not know: ~2.5 ms of CPU a streamed call. Tell
        # it the price it would find, none. Not sent to the provider; our cost comes from _cost.
        kwargs["input_cost_per_token"] = 0.0
        kwargs["output_cost_per_token"] = 0.0
    return kwargs


async def _call(request: CompletionRequest, kwargs: dict[str, Any]) -> Any:
    if request.mode == "chat":
        return await litellm.acompletion(
            messages=[{"role": "user", "content": request.prompt}], **kwargs
        )
    # A client the caller names (the warm-up's in-memory one) wins over the kept one.
    client = None if "client" in kwargs else _text_completion_client(request)
    if client is not None:
        kwargs = {**kwargs, "client": client}
    return await litellm.atext_completion(prompt=request.prompt, **kwargs)


# LiteLLM's chat path keeps one OpenAI client per event loop; its text-completion path builds a
# new one for every call, and with it an httpx client whose TLS context loads the CA bundle
# (25-40 ms of CPU before the request leaves, even for plain http) and a new TCP connection. For
# an OpenAI-compatible server we name (the embedded model's), hand LiteLLM a kept client: one per
# event loop, since an httpx client's connections belong to the loop that opened them.
_TEXT_CLIENTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str, float], openai.AsyncOpenAI]
] = weakref.WeakKeyDictionary()
_TEXT_CLIENTS_PER_LOOP: Final = 8  # distinct (server, key, timeout); a worker has one


@functools.lru_cache(maxsize=64)
def _provider(model: str) -> str | None:
    try:
        return litellm.get_llm_provider(model=model)[1]
    except Exception:  # noqa: BLE001 - an unknown model: LiteLLM's own call will say so
        return None


def _text_completion_client(request: CompletionRequest) -> openai.AsyncOpenAI | None:
    # Without a base URL or a key, LiteLLM's own resolution (environment, provider defaults,
    # its auth error) stays in charge.
    if not (request.api_base and request.api_key):
        return None
    if _provider(request.model) != "text-completion-openai":
        return None
    clients = _TEXT_CLIENTS.setdefault(asyncio.get_running_loop(), {})
    key = (
        request.api_base,
        hashlib.sha256(request.api_key.encode()).hexdigest(),
        request.timeout_s,
    )
    client = clients.get(key)
    if client is None:
        if len(clients) >= _TEXT_CLIENTS_PER_LOOP:
            clients.pop(next(iter(clients)))  # dropped, not closed: a call may still use it
        # max_retries=0 as in every call (Temporal owns retries); the timeout per network phase
        # (the SDK applies it to every request). An httpx client of our own, as LiteLLM passes:
        # errors then carry httpx responses, whose Retry-After `classify` reads.
        client = openai.AsyncOpenAI(
            api_key=request.api_key,
            base_url=request.api_base,
            timeout=request.timeout_s,
            max_retries=0,
            http_client=httpx.AsyncClient(follow_redirects=True),
        )
        clients[key] = client
    return client


# A process's first model call paid 0.2-0.3 s here that no later call pays: LiteLLM imports most of
# its handlers and provider tables, and httpx its transport stack, on first use. warm_up pays it
# at the worker's start instead of on an author's first click after every deploy.
_REHEARSAL_BASE: Final = "http://warm-up.invalid/v1"  # .invalid never resolves; nothing dials it
_REHEARSAL_MODELS: Final = {
    "completion": "text-completion-openai/warm-up",
    "chat": "openai/warm-up",
}


def _rehearsal_reply(request: httpx.Request) -> httpx.Response:
    """A two-chunk OpenAI-style stream with usage, for either endpoint, served from memory."""
    chat = request.url.path.endswith("/chat/completions")
    base = {"id": "warm-up", "created": 0, "model": "warm-up"}
    base["object"] = "chat.completion.chunk" if chat else "text_completion"

    def choice(text: str | None, finish_reason: str | None) -> dict[str, Any]:
        if chat:
            delta = {"role": "assistant", "content": text} if text is not None else {}
            return {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}

    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    events = [
        {**base, "choices": [choice("Ready.", None)]},
        {**base, "choices": [choice(None, "stop")]},
        {**base, "choices": [], "usage": usage},
    ]
    body = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=body)


async def _ignore_text(text: str) -> None:
    pass


async def warm_up(request: CompletionRequest) -> None:
    """Pay the first call's one-off costs now: one streamed call of each mode down complete's
    own path (_stream, LiteLLM) against an in-memory reply (no network, no key, no cost), then
    the kept client for `request` on this event loop (see _text_completion_client)."""
    rehearsal_client = openai.AsyncOpenAI(
        api_key="warm-up",
        base_url=_REHEARSAL_BASE,
        max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(_rehearsal_reply)),
    )
    try:
        for mode, model in _REHEARSAL_MODELS.items():
            rehearsal = replace(
                request,
                model=model,
                mode=mode,  # type: ignore[arg-type]
                prompt="Once upon a time",
                api_base=_REHEARSAL_BASE,
                api_key="warm-up",
                seed=None,
            )
            kwargs = {
                **_call_kwargs(rehearsal),
                # LiteLLM prices every call for its logs; a made-up model has no price to find.
                "input_cost_per_token": 0.0,
                "output_cost_per_token": 0.0,
                "client": rehearsal_client,
            }
            await _stream(rehearsal, kwargs, _ignore_text, secrets=())
    finally:
        await rehearsal_client.close()
    _text_completion_client(request)
    # The tokenizer LiteLLM counts this model's tokens with (prompt budgets, and usage for a
    # server that sends none) loads on first use too: 0.1-0.4 s here, by model.
    count_tokens(request.model, "Once upon a time")


async def _stream(
    request: CompletionRequest,
    kwargs: dict[str, Any],
    on_text: OnText,
    secrets: tuple[str, ...],
) -> tuple[str, Any]:
    try:
        stream = await _call(
            request, {**kwargs, "stream": True, "stream_options": {"include_usage": True}}
        )
        chunks: AsyncIterator[Any] = aiter(stream)
    except Exception as exc:  # noqa: BLE001 - the provider boundary: classify everything
        raise classify(exc, secrets=secrets) from None

    text = ""
    sent = ""
    usage: Any = None
    try:
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except Exception as exc:  # noqa: BLE001 - the provider boundary
                raise classify(exc, secrets=secrets) from None
            # The usage arrives on a last chunk without choices; LiteLLM counts it itself when
            # the server sends none, and _token_counts covers the rest.
            usage = getattr(chunk, "usage", None) or usage
            piece = _chunk_text(chunk, request.mode)
            if not piece:
                continue
            text += piece
            so_far = text.lstrip()
            if so_far and so_far != sent:
                sent = so_far
                await on_text(so_far)
    finally:
        # Release the HTTP connection also when on_text raised or the activity was cancelled.
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
    return text, usage


def _response_text(response: Any, mode: str) -> str:
    choices = getattr(response, "choices", None)
    if not choices:
        raise _MalformedReplyError("the reply has no choices")
    choice = choices[0]
    if mode == "chat":
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
    else:
        content = getattr(choice, "text", None)
    if content is not None and not isinstance(content, str):
        raise _MalformedReplyError(f"the reply's text is a {type(content).__name__}")
    return content or ""


def _chunk_text(chunk: Any, mode: str) -> str:
    choices = getattr(chunk, "choices", None)
    if not choices:
        return ""
    choice = choices[0]
    content = (
        getattr(getattr(choice, "delta", None), "content", None)
        if mode == "chat"
        else getattr(choice, "text", None)
    )
    return content if isinstance(content, str) else ""


class _MalformedReplyError(Exception):
    """A reply LiteLLM accepted whose shape is not a completion."""


def _token_counts(request: CompletionRequest, usage: Any, text: str) -> tuple[int, int, int]:
    prompt_tokens = _as_int(getattr(usage, "prompt_tokens", None))
    completion_tokens = _as_int(getattr(usage, "completion_tokens", None))
    total_tokens = _as_int(getattr(usage, "total_tokens", None))
    if prompt_tokens == 0 and completion_tokens == 0:
        # No usage from the server (LiteLLM then reports zeros): count with its tokenizer.
        prompt_tokens = _count_tokens(request, prompt=True, text=request.prompt)
        completion_tokens = _count_tokens(request, prompt=False, text=text)
        total_tokens = 0
    return prompt_tokens, completion_tokens, max(total_tokens, prompt_tokens + completion_tokens)


def _count_tokens(request: CompletionRequest, *, prompt: bool, text: str) -> int:
    try:
        if prompt and request.mode == "chat":
            return int(
                litellm.token_counter(
                    model=request.model, messages=[{"role": "user", "content": text}]
                )
            )
        return int(
            litellm.token_counter(model=request.model, text=text, count_response_tokens=not prompt)
        )
    except Exception:  # noqa: BLE001 - tokenizer trouble must not fail a finished reply
        return max(1, len(text) // 4)  # a rough count beats failing a finished generation


def _as_int(value: object) -> int:
    return max(0, int(value)) if isinstance(value, int | float) else 0


# Models LiteLLM's price map does not know (a local or self-hosted one): the failed look-up costs
# ~2 ms of CPU a call, and the map is local and fixed for the process
# (LITELLM_LOCAL_MODEL_COST_MAP). Later calls to such a model also pass LiteLLM a zero per-call
# price (_call_kwargs), which spares its own look-ups; registering the model at zero cost with
# litellm.register_model() would too, but it grew a worker by ~70 MB (measured).
_UNPRICED: set[str] = set()


def _cost(model: str, prompt_tokens: int, completion_tokens: int, usage: Any) -> Decimal:
    if model in _UNPRICED:
        return Decimal("0")
    try:
        if not isinstance(usage, litellm.Usage) or not (
            usage.prompt_tokens or usage.completion_tokens
        ):
            usage = litellm.Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            )
        # The same pricing for both paths: a response carrying just the usage (keeps cached-token
        # details when the provider sent them), priced as the model we asked for.
        priced = litellm.ModelResponse(model=model, usage=usage)
        cost = litellm.completion_cost(completion_response=priced, model=model)
        value = Decimal(str(cost))
    except litellm.exceptions.ModelNotMappedError:
        _UNPRICED.add(model)
        return Decimal("0")
    except Exception:  # noqa: BLE001 - pricing trouble must not fail a finished reply
        return Decimal("0")
    return value if value.is_finite() and value > 0 else Decimal("0")


# --------------------------------------------------------------------------- classification

_CONTEXT_CODES: Final = frozenset({"context_length_exceeded"})
_QUOTA_CODES: Final = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
_POLICY_CODES: Final = frozenset(
    {"content_policy_violation", "content_filter", "responsible_ai_policy_violation"}
)
_STATUS_KINDS: Final[dict[int, str]] = {
    401: "auth",
    403: "permission",
    404: "not_found",
    408: "timeout",
    409: "server_error",  # OpenAI's "conflict" asks clients to retry
    422: "unprocessable",
    429: "rate_limited",
}
_MISSING_KEY_PHRASES: Final = ("missing credentials", "api_key client option must be set")
# A reply that is not a completion: LiteLLM wraps these in InternalServerError.
_MALFORMED_TYPES: Final[tuple[type[BaseException], ...]] = (
    _MalformedReplyError,
    json.JSONDecodeError,
    httpx.DecodingError,
    openai.APIResponseValidationError,
)


def classify(exc: BaseException, *, secrets: Iterable[str] = ()) -> ProviderError:
    """Map any exception from a LiteLLM call to a ``ProviderError``.

    LiteLLM's classes are the first guide, but not the only one: it reports a 403 as a plain
    ``APIError``, a 422 as ``BadRequestError``, a reset connection and a non-JSON body as
    ``InternalServerError`` (the real cause sits in ``__cause__``). So the HTTP status, the
    error body's ``code`` and the cause chain are consulted too. ``secrets`` (the API key) are
    scrubbed from ``detail``; ``message`` is always one of our own sentences.
    """
    if isinstance(exc, ProviderError):
        return exc
    chain = list(_chain(exc))
    kind = _kind(exc, chain)
    status = _status_code(exc)
    transport = kind in {"timeout", "connection", "malformed"}
    return ProviderError(
        kind,
        status_code=None if transport or status is None else status,
        retry_after_s=_retry_after(chain),
        detail=_scrub(_detail(exc), secrets),
    )


def _kind(exc: BaseException, chain: list[BaseException]) -> str:
    codes = _error_codes(chain)
    status = _status_code(exc)
    # Subclasses of BadRequestError first: they would otherwise read as plain bad requests.
    if isinstance(exc, litellm.ContextWindowExceededError) or codes & _CONTEXT_CODES:
        return "context_window"
    if isinstance(exc, litellm.ContentPolicyViolationError) or codes & _POLICY_CODES:
        return "content_policy"
    if _any(chain, litellm.Timeout, openai.APITimeoutError, httpx.TimeoutException, TimeoutError):
        return "timeout"
    if codes & _QUOTA_CODES or status == 402:
        return "quota_exceeded"
    if status in _STATUS_KINDS:
        return _STATUS_KINDS[status]
    if isinstance(exc, litellm.RateLimitError):
        return "rate_limited"
    if isinstance(exc, litellm.AuthenticationError) or _mentions(chain, _MISSING_KEY_PHRASES):
        return "auth"
    if isinstance(exc, litellm.PermissionDeniedError):
        return "permission"
    if isinstance(exc, litellm.NotFoundError):
        return "not_found"
    if isinstance(exc, litellm.UnprocessableEntityError):
        return "unprocessable"
    if _any(chain, *_MALFORMED_TYPES) or _mentions(chain, ("no 'choices'",)):
        return "malformed"
    if _any(chain, openai.APIConnectionError, httpx.TransportError, ConnectionError):
        return "connection"
    if isinstance(exc, litellm.BadRequestError) or (status is not None and 400 <= status < 500):
        return "bad_request"
    # InternalServerError, ServiceUnavailableError, BadGatewayError, a bare APIError, and the
    # unexpected: retrying is what Temporal would do with an unclassified failure anyway.
    return "server_error"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _any(chain: list[BaseException], *types: type[BaseException]) -> bool:
    return any(isinstance(e, types) for e in chain)


def _mentions(chain: list[BaseException], phrases: tuple[str, ...]) -> bool:
    texts = [_safe_str(e).lower() for e in chain]
    return any(phrase in text for phrase in phrases for text in texts)


def _status_code(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) and 100 <= status <= 599 else None


def _response_of(exc: BaseException) -> httpx.Response | None:
    try:
        response = getattr(exc, "response", None)
    except Exception:  # noqa: BLE001 - some SDK exceptions raise when they have no response
        return None
    return response if isinstance(response, httpx.Response) else None


def _error_codes(chain: list[BaseException]) -> set[str]:
    """The ``error.code``/``error.type`` values of any OpenAI-style error body in the chain."""
    codes: set[str] = set()
    for exc in chain:
        bodies: list[object] = [getattr(exc, "body", None)]
        response = _response_of(exc)
        if response is not None:
            with contextlib.suppress(Exception):
                bodies.append(json.loads(response.content or b"null"))
        for body in bodies:
            error = body.get("error") if isinstance(body, Mapping) else None
            found = error if isinstance(error, Mapping) else body
            if isinstance(found, Mapping):
                for key in ("code", "type"):
                    value = found.get(key)
                    if isinstance(value, str):
                        codes.add(value.lower())
    return codes


def _retry_after(chain: list[BaseException]) -> float | None:
    for exc in chain:
        candidates: list[Mapping[str, str]] = []
        response = _response_of(exc)
        if response is not None:
            candidates.append(response.headers)
        headers = getattr(exc, "headers", None)
        if isinstance(headers, Mapping):
            candidates.append(headers)
        for found in candidates:
            seconds = _parse_retry_after(found)
            if seconds is not None:
                return seconds
    return None


def _parse_retry_after(headers: Mapping[str, str]) -> float | None:
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    with contextlib.suppress(ValueError):
        if "retry-after-ms" in lowered:  # OpenAI's finer-grained variant
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
    value = lowered.get("retry-after", "").strip()
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value)  # the HTTP-date form
        return max(0.0, when.timestamp() - time.time())
    return None


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the failure
        return type(exc).__name__


def _detail(exc: BaseException) -> str:
    text = " ".join(_safe_str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500]


_KEY_PATTERNS: Final = (
    re.compile(r"\b((?:sk|pk|rk)-)[A-Za-z0-9_\-*]{6,}"),  # OpenAI-style keys, masked ones too
    re.compile(r"(?i)\b(bearer\s+|api[_-]?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9_\-.]{8,}"),
)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    for pattern in _KEY_PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}[redacted]", text)
    return text


# --- Sizing prompts -----------------------------------------------------------------------------


def count_tokens(model: str, text: str) -> int:
    """Tokens `text` costs with `model`'s tokenizer (LiteLLM's bundled ones; offline)."""
    return int(litellm.token_counter(model=model, text=text))


def context_window(model: str, default: int) -> int:
    """The model's input window from LiteLLM's model map, or `default` for models it does not
    know (a local or self-hosted one)."""
    try:
        info = litellm.get_model_info(model)
    except Exception:  # noqa: BLE001 - unknown models raise; the default is the answer
        return default
    return int(info.get("max_input_tokens") or info.get("max_tokens") or default)
