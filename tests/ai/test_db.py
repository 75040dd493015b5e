"""ai.db: a worker step never hands the next one a connection stuck inside a transaction.

The worker's threads keep their connections between steps (SQLite), so what one step leaves
behind, the next one in that thread inherits; these run outside a test transaction
(transaction=True) because that is how the worker runs them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from temporalio.exceptions import CancelledError
from temporalio.testing import ActivityEnvironment

from ai.db import DB_THREADS, db_activity, run_db

pytestmark = pytest.mark.django_db(transaction=True)
User = get_user_model()


def _begin_behind_djangos_back() -> None:
    # What a cancellation raised at the wrong bytecode leaves: the driver inside a transaction
    # (holding SQLite's write lock) while Django believes it is in autocommit.
    connection.ensure_connection()
    begin = "BEGIN IMMEDIATE" if connection.vendor == "sqlite" else "BEGIN"
    connection.connection.execute(begin)


def test_a_step_that_leaves_a_transaction_open_hands_on_a_clean_connection() -> None:
    @db_activity
    def leaves_it_open() -> None:
        User.objects.create(username="first")
        _begin_behind_djangos_back()

    @db_activity
    def next_step() -> None:
        with transaction.atomic():  # "cannot start a transaction within a transaction" before
            User.objects.create(username="second")

    leaves_it_open()
    next_step()

    assert set(User.objects.values_list("username", flat=True)) == {"first", "second"}


def test_a_cancelled_step_finishes_its_transaction_then_raises() -> None:
    env = ActivityEnvironment()

    @db_activity
    def step() -> str:
        with transaction.atomic():
            User.objects.create(username="before-cancel")
            env.cancel()  # Temporal raises CancelledError into this thread
            time.sleep(0.05)  # unshielded, it would land here, inside the transaction
            User.objects.create(username="after-cancel")
        return "finished"

    with pytest.raises(CancelledError):
        env.run(step)

    assert set(User.objects.values_list("username", flat=True)) == {
        "before-cancel",
        "after-cancel",
    }
    assert connection.connection is None or not connection.in_atomic_block


def test_run_db_steps_reuse_their_threads_connection() -> None:
    wrappers: list[Any] = []  # kept alive, so no two steps can share an id() by accident
    threads: set[int] = set()

    def step() -> None:
        User.objects.exists()
        wrappers.append(connections["default"])
        threads.add(threading.get_ident())

    async def many() -> None:
        # Each step from a task of its own, as every activity is: a connection stored in the
        # task's context (sync_to_async's way) would be one per activity, then orphaned.
        for _ in range(40):
            await asyncio.create_task(run_db(step))

    asyncio.run(many())

    distinct = {id(wrapper) for wrapper in wrappers}
    assert len(distinct) <= len(threads) <= DB_THREADS
    if connection.vendor == "sqlite":  # PostgreSQL returns it to its pool after each step
        assert all(w.connection is not None for w in wrappers)  # kept open between steps


def test_a_sync_activitys_connection_is_closed_when_it_returns() -> None:
    used: list[Any] = []

    @db_activity
    def step() -> None:
        User.objects.exists()
        used.append(connections["default"])

    ActivityEnvironment().run(step)

    # Temporal ran it in a copy of this context: left open, nothing could reach it again.
    assert used and used[0].connection is None
