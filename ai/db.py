"""Database access from Temporal activities.

No request cycle runs in a worker, so Django never closes stale connections by itself: every
activity that touches the ORM closes outdated ones before and after (otherwise a long-lived
worker fails with "connection already closed" after the database restarts or times out).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

P = ParamSpec("P")
R = TypeVar("R")


def db_activity(fn: Callable[P, R]) -> Callable[P, R]:
    """For sync activities, which the worker runs on its thread pool."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return wrapper


async def run_db(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ORM work from an async activity on a worker thread of its own (not asgiref's single
    thread-sensitive one, which would queue every job's writes behind each other)."""
    return await sync_to_async(db_activity(fn), thread_sensitive=False)(*args, **kwargs)
