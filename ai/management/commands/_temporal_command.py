"""Base for short-lived management commands that use the Temporal SDK (not a command itself:
Django skips modules whose name starts with an underscore)."""

from __future__ import annotations

import os
import sys

from django.core.management.base import BaseCommand


class TemporalCommand(BaseCommand):
    def run_from_argv(self, argv: list[str]) -> None:
        try:
            super().run_from_argv(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        else:
            code = 0
        # The SDK's Rust threads can abort CPython's finalization of a short-lived process
        # ("Fatal Python error: PyGILState_Release ... finalizing", temporalio/sdk-python#300;
        # seen here about once in ten runs), turning exit code 0 or 1 into SIGABRT/SIGSEGV. The
        # command has finished and closed its database connections: leave without finalizing.
        # Only on the command line; call_command() (tests, other code) returns normally.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
