"""Test suites: prompts or chat messages with expected answers, owned by one user."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import Connection, delete, insert, select

from finetune_lab.schema_serving import MAX_SUITE_ITEMS, TestSuiteCreate, TestSuiteItemIn
from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database
from finetune_lab.server.db.serving_tables import test_suite_items, test_suites
from finetune_lab.server.errors import APIError, describe_validation_errors, not_found
from finetune_lab.server.services.rows import plain
from finetune_lab.server.services.tokens import utcnow

SUITE_COLUMNS = (
    test_suites.c.id,
    test_suites.c.name,
    test_suites.c.description,
    test_suites.c.item_count,
    test_suites.c.created_at,
)
# Record shapes accepted in uploads (the same ones training samples use), mapped to ours.
PROMPT_KEYS = ("prompt", "input", "question")
EXPECTED_KEYS = ("expected", "expected_answer", "ground_truth", "completion", "output", "answer")


def _normalize(record: Any, index: int) -> dict[str, Any]:
    """One uploaded record → {prompt|messages, expected}; chat records whose last message is
    the assistant's use it as the expected answer."""
    if not isinstance(record, dict):
        raise APIError(422, f"item {index}: expected a JSON object", details=[_loc(index)])
    item: dict[str, Any] = {}
    messages = record.get("messages")
    if messages is not None:
        if (
            isinstance(messages, list)
            and messages
            and isinstance(messages[-1], dict)
            and messages[-1].get("role") == "assistant"
            and not any(key in record for key in EXPECTED_KEYS)
        ):
            item["expected"] = messages[-1].get("content")
            messages = messages[:-1]
        item["messages"] = messages
    for key in PROMPT_KEYS:
        if key in record and "messages" not in item:
            item["prompt"] = record[key]
            break
    for key in EXPECTED_KEYS:
        if key in record:
            item["expected"] = record[key]
            break
    return item


def _loc(index: int) -> dict[str, Any]:
    return {"loc": ["items", index], "message": "invalid item", "type": "value_error"}


def parse_upload(raw: bytes) -> list[dict[str, Any]]:
    """A JSON array (or `{"items": [...]}`) or JSONL, one record per line."""
    text = raw.strip()
    if not text:
        raise APIError(422, "the upload is empty")
    records: Any
    try:
        records = orjson.loads(text)
        if isinstance(records, dict):
            records = records.get("items", [records]) if "items" in records else [records]
    except orjson.JSONDecodeError:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise APIError(
                    400, f"line {number} is not valid JSON: {exc}", type="bad_request"
                ) from None
    if not isinstance(records, list):
        raise APIError(422, "expected a JSON array of items or JSONL")
    if len(records) > MAX_SUITE_ITEMS:
        raise APIError(413, f"a suite holds at most {MAX_SUITE_ITEMS} items")
    return [_normalize(record, index) for index, record in enumerate(records)]


def validate_upload(name: str, description: str | None, raw: bytes) -> TestSuiteCreate:
    items = parse_upload(raw)
    try:
        return TestSuiteCreate(name=name, description=description, items=items)  # type: ignore[arg-type]
    except ValidationError as exc:
        message, details = describe_validation_errors([dict(e) for e in exc.errors()])
        raise APIError(422, message, details=details) from None


def _item_row(suite_id: str, position: int, item: TestSuiteItemIn) -> dict[str, Any]:
    messages = None
    if item.messages is not None:
        messages = [{"role": m.role, "content": m.text} for m in item.messages]
    return {
        "suite_id": suite_id,
        "position": position,
        "prompt": item.prompt,
        "messages": messages,
        "expected": item.expected,
    }


def create_suite(db: Database, principal: Principal, body: TestSuiteCreate) -> dict[str, Any]:
    suite_id = f"ts_{uuid.uuid4().hex}"
    rows = [_item_row(suite_id, i, item) for i, item in enumerate(body.items)]
    with db.write() as conn:
        conn.execute(
            insert(test_suites).values(
                id=suite_id,
                user_id=principal.user_id,
                name=body.name,
                description=body.description,
                item_count=len(rows),
                created_at=utcnow(),
            )
        )
        conn.execute(insert(test_suite_items), rows)
        return plain(owned_suite(conn, principal, suite_id))


def owned_suite(conn: Connection, principal: Principal, suite_id: str) -> Any:
    row = conn.execute(
        select(*SUITE_COLUMNS).where(
            test_suites.c.id == suite_id, test_suites.c.user_id == principal.user_id
        )
    ).first()
    if row is None:
        raise not_found("test suite")
    return row


def suite_items(conn: Connection, suite_id: str, limit: int | None = None) -> list[dict[str, Any]]:
    query = (
        select(test_suite_items)
        .where(test_suite_items.c.suite_id == suite_id)
        .order_by(test_suite_items.c.position)
    )
    if limit is not None:
        query = query.limit(limit)
    return [
        {
            "index": row.position,
            "prompt": row.prompt,
            "messages": row.messages,
            "expected": row.expected,
        }
        for row in conn.execute(query)
    ]


def get_suite(db: Database, principal: Principal, suite_id: str) -> dict[str, Any]:
    with db.read() as conn:
        suite = plain(owned_suite(conn, principal, suite_id))
        suite["items"] = suite_items(conn, suite_id)
    return suite


def list_suites(db: Database, principal: Principal) -> dict[str, Any]:
    with db.read() as conn:
        rows = conn.execute(
            select(*SUITE_COLUMNS)
            .where(test_suites.c.user_id == principal.user_id)
            .order_by(test_suites.c.created_at.desc(), test_suites.c.id)
        ).all()
    return {"test_suites": [plain(row) for row in rows]}


def delete_suite(db: Database, principal: Principal, suite_id: str) -> dict[str, Any]:
    with db.write() as conn:
        owned_suite(conn, principal, suite_id)
        conn.execute(delete(test_suite_items).where(test_suite_items.c.suite_id == suite_id))
        conn.execute(delete(test_suites).where(test_suites.c.id == suite_id))
    return {"id": suite_id, "deleted": True}
