"""`manage.py register_search_attributes` on the real dev server: a fresh namespace gets them,
a second run (and the test server's default namespace, registered at start) changes nothing,
and a same-named attribute of another type is reported, never overwritten."""

from __future__ import annotations

import asyncio
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.service import RPCError

from ai.workflows.types import SEARCH_ATTRIBUTES

pytestmark = pytest.mark.temporal
NAMES = [key.name for key in SEARCH_ATTRIBUTES]


@pytest.fixture
def on_dev_server(temporal, settings):
    settings.TEMPORAL_ADDRESS = temporal.address
    return temporal


def _fresh_namespace(temporal) -> str:
    name = f"sa-{uuid.uuid4().hex[:8]}"

    async def register() -> None:
        service = temporal.client.workflow_service
        await service.register_namespace(
            RegisterNamespaceRequest(
                namespace=name, workflow_execution_retention_period=Duration(seconds=86400)
            )
        )
        for _ in range(100):  # the namespace cache catches up within a second or so
            try:
                await service.describe_namespace(DescribeNamespaceRequest(namespace=name))
                return
            except RPCError:
                await asyncio.sleep(0.1)

    temporal.run(register())
    return name


def _custom(temporal, namespace: str) -> dict[str, int]:
    listed = temporal.run(
        temporal.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
    )
    return dict(listed.custom_attributes)


def test_registers_on_a_fresh_namespace_then_is_idempotent(on_dev_server):
    namespace = _fresh_namespace(on_dev_server)

    out = StringIO()
    call_command("register_search_attributes", "--namespace", namespace, stdout=out)
    first = out.getvalue()

    for name in NAMES:
        assert f"{name} (" in first and "added" in first
    registered = _custom(on_dev_server, namespace)
    assert registered["AiJobId"] == IndexedValueType.INDEXED_VALUE_TYPE_INT
    assert registered["StoryId"] == IndexedValueType.INDEXED_VALUE_TYPE_INT
    assert registered["PageId"] == IndexedValueType.INDEXED_VALUE_TYPE_INT
    assert registered["AiJobType"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    assert registered["AiJobStatus"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    assert "5 added, 0 already there" in first

    out = StringIO()
    call_command("register_search_attributes", "--namespace", namespace, stdout=out)
    assert "AiJobId (Int): already registered" in out.getvalue()
    assert "0 added, 5 already there" in out.getvalue()


def test_the_test_servers_default_namespace_already_has_them(on_dev_server, settings):
    settings.TEMPORAL_NAMESPACE = "default"
    out = StringIO()
    call_command("register_search_attributes", stdout=out)
    assert "AiJobType (Keyword): already registered" in out.getvalue()
    assert "0 added, 5 already there" in out.getvalue()


def test_an_attribute_of_another_type_is_a_conflict_and_nothing_is_added(on_dev_server):
    namespace = _fresh_namespace(on_dev_server)
    on_dev_server.run(
        on_dev_server.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace,
                search_attributes={"AiJobType": IndexedValueType.INDEXED_VALUE_TYPE_INT},
            )
        )
    )

    out = StringIO()
    with pytest.raises(CommandError, match="AiJobType"):
        call_command("register_search_attributes", "--namespace", namespace, stdout=out)

    assert "AiJobType (Keyword): conflict: registered as Int" in out.getvalue()
    assert set(_custom(on_dev_server, namespace)) & set(NAMES) == {"AiJobType"}


def test_temporal_unreachable_is_a_clear_error(settings):
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"
    with pytest.raises(CommandError, match="unreachable"):
        call_command("register_search_attributes")
