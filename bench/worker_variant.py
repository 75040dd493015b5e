"""The product's worker (`temporal_worker.worker.run`, unchanged wiring) with one Worker option,
or one adapter behaviour, overridden for the benchmark's experiments. Not for production use.

    python -m bench.worker_variant --runner unsandboxed     # UnsandboxedWorkflowRunner
    python -m bench.worker_variant --runner passthrough-ai  # sandbox, `ai` passed through
    python -m bench.worker_variant --no-eager-activities    # disable_eager_activity_execution
    python -m bench.worker_variant --litellm-client-per-call  # LiteLLM's own client every call

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
    parser.add_argument(
        "--litellm-client-per-call",
        action="store_true",
        help="no kept client for text-completion models (as LiteLLM does by itself)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from temporalio.worker import UnsandboxedWorkflowRunner
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    import ai.adapters.litellm as adapter
    import temporal_worker.worker as product

    if args.litellm_client_per_call:
        adapter._text_completion_client = lambda request: None  # type: ignore[assignment]

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
