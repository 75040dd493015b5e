"""Probe workflows: Temporal's own floor on this server, with no product code in them.

They run on a task queue of their own, on a worker inside the bench process, and do nothing but
orchestrate: the difference between a probe and the product is the product's own cost (HTTP,
database, LiteLLM), the difference between two probes is what a Temporal design choice costs.

No Django here: the workflow sandbox re-imports this module for every run.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

STEP_TIMEOUT = timedelta(seconds=30)


@activity.defn(name="bench_noop")
async def bench_noop(value: int) -> int:
    return value


@workflow.defn(name="BenchNoActivity")
class NoActivity:
    """The floor: a workflow that starts and returns."""

    @workflow.run
    async def run(self, value: int) -> int:
        return value


@workflow.defn(name="BenchThreeActivities")
class ThreeActivities:
    """The naive design: three ordinary activities in a row (render, call, attach)."""

    @workflow.run
    async def run(self, value: int) -> int:
        for _ in range(3):
            value = await workflow.execute_activity(
                bench_noop, value, start_to_close_timeout=STEP_TIMEOUT
            )
        return value


@workflow.defn(name="BenchThreeLocalActivities")
class ThreeLocalActivities:
    """The issue's best case: three local activities (run with eager start)."""

    @workflow.run
    async def run(self, value: int) -> int:
        for _ in range(3):
            value = await workflow.execute_local_activity(
                bench_noop, value, start_to_close_timeout=STEP_TIMEOUT
            )
        return value


@workflow.defn(name="BenchProductShape")
class ProductShape:
    """Story-Sprout's shape with empty steps: local, ordinary (the model call), local."""

    @workflow.run
    async def run(self, value: int) -> int:
        value = await workflow.execute_local_activity(
            bench_noop, value, start_to_close_timeout=STEP_TIMEOUT
        )
        value = await workflow.execute_activity(
            bench_noop, value, start_to_close_timeout=STEP_TIMEOUT
        )
        return await workflow.execute_local_activity(
            bench_noop, value, start_to_close_timeout=STEP_TIMEOUT
        )


WORKFLOWS = [NoActivity, ThreeActivities, ThreeLocalActivities, ProductShape]
ACTIVITIES = [bench_noop]
