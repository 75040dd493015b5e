"""Settings from the environment, read in a fresh interpreter per case (they are module-level)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRINT_DATABASE = (
    "import json; from config import settings; "
    "print(json.dumps(settings.DATABASES['default'], default=str))"
)


def database_settings(**env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PRINT_DATABASE],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


PG = "postgres://app@db.example:5432/sprout"


def test_postgresql_gets_a_bounded_pool_by_default() -> None:
    db = database_settings(DATABASE_URL=PG)
    assert db["CONN_MAX_AGE"] == 0
    assert db["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 10, "timeout": 30.0}


@pytest.mark.parametrize(
    "env", [{"DB_POOL_MAX_SIZE": "0"}, {"DB_CONN_MAX_AGE": "60"}], ids=["off", "persistent"]
)
def test_no_pool_when_turned_off_or_with_persistent_connections(env: dict[str, str]) -> None:
    db = database_settings(DATABASE_URL=PG, **env)
    assert "pool" not in db.get("OPTIONS", {})


def test_sqlite_has_no_pool_and_waits_for_the_write_lock() -> None:
    db = database_settings(DATABASE_URL="sqlite:////tmp/story-sprout-settings-test.sqlite3")
    assert "pool" not in db["OPTIONS"]
    assert db["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_sqlite_keeps_each_threads_connection_open_and_checks_it() -> None:
    db = database_settings(DATABASE_URL="sqlite:////tmp/story-sprout-settings-test.sqlite3")
    assert db["CONN_MAX_AGE"] == 600
    assert db["CONN_HEALTH_CHECKS"] is True


def test_sqlite_connections_can_be_closed_after_every_step() -> None:
    db = database_settings(
        DATABASE_URL="sqlite:////tmp/story-sprout-settings-test.sqlite3", DB_CONN_MAX_AGE="0"
    )
    assert db["CONN_MAX_AGE"] == 0
