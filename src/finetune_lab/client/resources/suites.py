"""`client.test_suites`: prompts (or chat messages) with expected answers, for batch tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finetune_lab.client._transport import (
    AsyncTransport,
    RequestSpec,
    SyncTransport,
    parse_model,
    path_segment,
)
from finetune_lab.schema_serving import TestSuite, TestSuiteDeleted, TestSuitesList

_PREFIX = "/api/test-suites"


def _create_spec(
    name: str, items: Sequence[dict[str, Any]], description: str | None
) -> RequestSpec[TestSuite]:
    body: dict[str, Any] = {"name": name, "items": list(items)}
    if description is not None:
        body["description"] = description
    return RequestSpec("POST", _PREFIX, parse_model(TestSuite), json=body)


def _upload_spec(name: str, path: str | Path, description: str | None) -> RequestSpec[TestSuite]:
    params = {"name": name, "description": description}
    content = Path(path).read_bytes()
    return RequestSpec(
        "POST", f"{_PREFIX}/upload", parse_model(TestSuite), params=params, content=content
    )


def _get_spec(suite_id: str) -> RequestSpec[TestSuite]:
    return RequestSpec("GET", f"{_PREFIX}/{path_segment(suite_id)}", parse_model(TestSuite))


def _list_spec() -> RequestSpec[TestSuitesList]:
    return RequestSpec("GET", _PREFIX, parse_model(TestSuitesList))


def _delete_spec(suite_id: str) -> RequestSpec[TestSuiteDeleted]:
    path = f"{_PREFIX}/{path_segment(suite_id)}"
    return RequestSpec("DELETE", path, parse_model(TestSuiteDeleted))


class TestSuites:
    """Sync access to `/api/test-suites`."""

    __test__ = False

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def create(
        self, name: str, items: Sequence[dict[str, Any]], *, description: str | None = None
    ) -> TestSuite:
        """`items`: `{"prompt": ...}` or `{"messages": [...]}`, each with an optional
        `"expected"` answer."""
        return self._transport.execute(_create_spec(name, items, description))

    def upload(self, name: str, path: str | Path, *, description: str | None = None) -> TestSuite:
        """A suite from a JSON array or JSONL file (prompt/completion, input/output or chat)."""
        return self._transport.execute(_upload_spec(name, path, description))

    def list(self) -> TestSuitesList:
        return self._transport.execute(_list_spec())

    def get(self, suite_id: str) -> TestSuite:
        """The suite with its items."""
        return self._transport.execute(_get_spec(suite_id))

    def delete(self, suite_id: str) -> TestSuiteDeleted:
        return self._transport.execute(_delete_spec(suite_id))


class AsyncTestSuites:
    """Async access to `/api/test-suites`; same methods as `TestSuites`."""

    __test__ = False

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def create(
        self, name: str, items: Sequence[dict[str, Any]], *, description: str | None = None
    ) -> TestSuite:
        """`items`: `{"prompt": ...}` or `{"messages": [...]}`, each with an optional
        `"expected"` answer."""
        return await self._transport.execute(_create_spec(name, items, description))

    async def upload(
        self, name: str, path: str | Path, *, description: str | None = None
    ) -> TestSuite:
        """A suite from a JSON array or JSONL file (prompt/completion, input/output or chat)."""
        return await self._transport.execute(_upload_spec(name, path, description))

    async def list(self) -> TestSuitesList:
        return await self._transport.execute(_list_spec())

    async def get(self, suite_id: str) -> TestSuite:
        """The suite with its items."""
        return await self._transport.execute(_get_spec(suite_id))

    async def delete(self, suite_id: str) -> TestSuiteDeleted:
        return await self._transport.execute(_delete_spec(suite_id))


__all__ = ["AsyncTestSuites", "TestSuites"]
