"""Register Story-Sprout's search attributes (AiJobId, StoryId, ...) on a Temporal namespace.

Needed once per namespace of a self-hosted cluster before the first job starts: a workflow
started with an unregistered attribute is refused. `make run`'s dev server registers them itself
(scripts/temporal_dev.sh). Idempotent: attributes already registered with the same type are left
alone; one registered with another type is a conflict this command reports and does not touch.
Temporal Cloud does not offer the operator API: add them with `tcld` or the Cloud UI instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from ai.management.commands._temporal_command import TemporalCommand
from ai.temporal import connect
from ai.workflows.types import SEARCH_ATTRIBUTES


@dataclass(frozen=True)
class Registration:
    name: str
    type_name: str
    action: str  # "added" | "already registered" | "conflict: ..."

    @property
    def conflict(self) -> bool:
        return self.action.startswith("conflict")


def type_name(value: int) -> str:
    return IndexedValueType.Name(value).removeprefix("INDEXED_VALUE_TYPE_").title().replace("_", "")


async def _registered(client: Client, namespace: str) -> tuple[dict[str, int], dict[str, int]]:
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return dict(listed.custom_attributes), dict(listed.system_attributes)


async def ensure_search_attributes(
    client: Client,
    namespace: str,
    keys: Sequence[SearchAttributeKey[Any]] = SEARCH_ATTRIBUTES,
) -> list[Registration]:
    """Add the missing keys; report every key. Adds nothing when any key conflicts."""
    custom, system = await _registered(client, namespace)
    wanted = {key.name: int(key.indexed_value_type) for key in keys}
    report: dict[str, Registration] = {}
    for name, value in wanted.items():
        existing = custom.get(name, system.get(name))
        if existing is None:
            continue
        if existing == value and name in custom:
            report[name] = Registration(name, type_name(value), "already registered")
        else:
            kind = (
                "a system attribute" if name in system else f"registered as {type_name(existing)}"
            )
            report[name] = Registration(name, type_name(value), f"conflict: {kind}")
    missing = {name: value for name, value in wanted.items() if name not in report}
    if missing and not any(r.conflict for r in report.values()):
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
        except RPCError as exc:
            if exc.status != RPCStatusCode.ALREADY_EXISTS:
                raise
            # Another process registered them meanwhile: check what it registered.
            return await ensure_search_attributes(client, namespace, keys)
        for name, value in missing.items():
            report[name] = Registration(name, type_name(value), "added")
    return [report[name] for name in wanted if name in report]


class Command(TemporalCommand):
    help = "Register the AI job search attributes on a Temporal namespace (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--namespace",
            default=None,
            help="Namespace to register on (default: settings.TEMPORAL_NAMESPACE).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        namespace = options["namespace"] or settings.TEMPORAL_NAMESPACE

        async def run() -> list[Registration]:
            return await ensure_search_attributes(await connect(), namespace)

        try:
            report = asyncio.run(run())
        except RPCError as exc:
            hint = (
                " (Temporal Cloud: add them with tcld or the Cloud UI)"
                if exc.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED)
                else ""
            )
            raise CommandError(f"Temporal refused: {exc.status.name}: {exc.message}{hint}") from exc
        except RuntimeError as exc:  # the SDK's core raises RuntimeError when it cannot connect
            raise CommandError(
                f"Temporal unreachable at {settings.TEMPORAL_ADDRESS}: {exc}"
            ) from exc
        for item in report:
            line = f"{item.name} ({item.type_name}): {item.action}"
            self.stdout.write(self.style.ERROR(line) if item.conflict else line)
        conflicts = [item.name for item in report if item.conflict]
        if conflicts:
            raise CommandError(
                f"Not registered: {', '.join(conflicts)} already exist with another type in "
                f"namespace {namespace!r}; nothing was added."
            )
        added = sum(item.action == "added" for item in report)
        self.stdout.write(
            self.style.SUCCESS(
                f"Namespace {namespace!r}: {added} added, {len(report) - added} already there."
            )
        )
