"""Connecting to Temporal from Django processes (site, management commands, worker).

A Temporal client is bound to the event loop it was created on and does not survive fork(), so
the site keeps one client per process on one background loop, created lazily on first use.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from temporalio.client import Client, TLSConfig

T = TypeVar("T")


class TemporalUnavailable(Exception):
    """The Temporal frontend could not be reached (down, wrong address, TLS refused)."""


def tls_config() -> TLSConfig | bool:
    cert, key = settings.TEMPORAL_TLS_CERT, settings.TEMPORAL_TLS_KEY
    if cert and key:
        return TLSConfig(
            client_cert=Path(cert).read_bytes(), client_private_key=Path(key).read_bytes()
        )
    return bool(settings.TEMPORAL_TLS)


async def connect(address: str | None = None) -> Client:
    return await Client.connect(
        address or settings.TEMPORAL_ADDRESS,
        namespace=settings.TEMPORAL_NAMESPACE,
        api_key=settings.TEMPORAL_API_KEY or None,
        tls=tls_config(),
    )


class Bridge:
    """Runs coroutines on a private event loop thread, with one lazily connected client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid: int | None = None
        self._client: Client | None = None
        self._client_key: tuple[str, str] | None = None
        self._client_lock: asyncio.Lock | None = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                # New process (or first use): never reuse a parent's loop or client.
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="temporal-bridge", daemon=True
                )
                thread.start()
                self._loop, self._pid, self._client = loop, os.getpid(), None
                self._client_lock = None
            return self._loop

    async def client(self) -> Client:
        if self._client_lock is None:
            self._client_lock = asyncio.Lock()
        key = (settings.TEMPORAL_ADDRESS, settings.TEMPORAL_NAMESPACE)
        async with self._client_lock:
            if self._client is None or self._client_key != key:
                try:
                    self._client = await connect()
                except RuntimeError as exc:  # the SDK's core raises RuntimeError on connect
                    raise TemporalUnavailable(f"{key[0]}: {exc}") from exc
                self._client_key = key
            return self._client

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = self.submit(coro)
        try:
            return future.result(timeout=timeout)
        except BaseException:
            future.cancel()
            raise

    def forget_client(self) -> None:
        """Drop the client (after a connection failure) so the next call reconnects."""
        self._client = None


bridge = Bridge()
