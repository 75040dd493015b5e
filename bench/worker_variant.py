"""The product's worker (`temporal_worker.worker.run`, unchanged wiring) with one Worker option
overridden, for the benchmark's configuration experiments. Not for production use.

    python -m bench.worker_variant --runner unsandboxed     # UnsandboxedWorkflowRunner
    python -m bench.worker_variant --runner passthrough-ai  # sandbox, `ai` passed through
    python -m bench.worker_variant --no-eager-activities    # disable_eager_activity_execution

Everything else (task queue, model, database, stream on/off) comes from the environment, as for
`python -m temporal_worker`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runner", choices=("sandboxed", "unsandboxed", "passthrough-ai"), default="sandboxed"
    )
    parser.add_argument("--no-eager-activities", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from temporalio.worker import UnsandboxedWorkflowRunner
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    import temporal_worker.worker as product

    extra: dict[str, object] = {}
    if args.runner == "unsandboxed":
        extra["workflow_runner"] = UnsandboxedWorkflowRunner()
    elif args.runner == "passthrough-ai":
        restrictions = SandboxRestrictions.default.with_passthrough_modules("ai")
        extra["workflow_runner"] = SandboxedWorkflowRunner(restrictions=restrictions)
    if args.no_eager_activities:
        extra["disable_eager_activity_execution"] = True
    if extra:
        # build_worker() calls `Worker(...)` from its module: give it the extra options.
        product.Worker = functools.partial(product.Worker, **extra)  # type: ignore[misc]
    asyncio.run(product.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
