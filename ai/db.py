"""Database access from Temporal activities.

No request cycle runs in a worker, so Django never closes stale connections by itself: every
step that touches the ORM closes outdated ones before and after (otherwise a long-lived worker
fails with "connection already closed" after the database restarts or times out).

Where a step's connection lives decides whether the next step can reuse it. Django keeps
connections in an asgiref ``Local``, which follows contextvars, and Temporal runs each sync
activity inside a *copy* of the caller's context: whatever connection a sync activity opens
is unreachable once it returns, so it is closed there (left open, it would linger until the
garbage collector found it: hundreds of open SQLite connections in a 200-click burst, measured).
``run_db`` instead runs steps on threads of its own without copying a context, so each of
those threads keeps one connection between steps (SQLite: CONN_MAX_AGE; PostgreSQL: its pool).

A kept connection must never be handed on inside a transaction: it would hold SQLite's write
lock for good ("database is locked" everywhere, "cannot start a transaction within a
transaction" in its own thread). Temporal cancels a sync activity (a timed-out local activity,
Stop) by raising an exception in its thread at any bytecode, also inside Django's transaction
bookkeeping; so a sync step runs shielded (the cancellation is raised when it returns), and a
connection still in a transaction that Django does not know about is closed, rolling it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.db import close_old_connections, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from temporalio import activity

P = ParamSpec("P")
R = TypeVar("R")

# Threads for the database steps of async activities (the model call's attempt count, partial
# text, result) and the reconciler. The loop's default executor has min(32, CPUs + 4) threads;
# SQLite takes one writer at a time and a PostgreSQL pool 10 connections a process, so more
# threads would only wait in the database instead of here.
DB_THREADS = 16
# Its threads start on first use: importing this module starts none.
_EXECUTOR = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="db")


def db_activity(fn: Callable[P, R]) -> Callable[P, R]:
    """For sync activities, which the worker runs on its thread pool (and for run_db's steps)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        # In a sync activity, Temporal may raise a cancellation into this thread.
        in_activity = activity.in_activity()
        shield = (
            activity.shield_thread_cancel_exception() if in_activity else contextlib.nullcontext()
        )
        with shield:
            close_old_connections()
            try:
                return fn(*args, **kwargs)
            finally:
                if in_activity:
                    connections.close_all()  # its context is discarded (module docstring)
                else:
                    close_unfinished_transactions()
                    close_old_connections()

    return wrapper


async def run_db(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ORM work from an async activity on a database thread (not asgiref's single
    thread-sensitive one, which would queue every job's writes behind each other, and not
    sync_to_async, whose context copy would give every step a connection of its own)."""
    step = functools.partial(db_activity(fn), *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, step)


def close_unfinished_transactions() -> None:
    """Close every connection of this thread whose driver is inside a transaction while Django
    believes it is in autocommit (outside an atomic block: that one is the caller's)."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block and _driver_in_transaction(conn):
            conn.close()


def _driver_in_transaction(conn: BaseDatabaseWrapper) -> bool:
    raw = conn.connection
    if raw is None:
        return False
    try:
        in_transaction = getattr(raw, "in_transaction", None)  # sqlite3
        if isinstance(in_transaction, bool):
            return in_transaction
        status = getattr(getattr(raw, "info", None), "transaction_status", None)  # psycopg
        return status is not None and int(status) != 0  # 0: IDLE
    except Exception:  # noqa: BLE001 - a broken connection: close_old_connections drops it
        return False
