"""Time-ordered ids: the RFC 9562 version 7 layout, ordered across milliseconds."""

from __future__ import annotations

import time
import uuid

from finetune_lab._ids import time_ordered_hex


def test_layout_is_a_uuid_version_7_with_the_current_time() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid.UUID(time_ordered_hex())
    after = time.time_ns() // 1_000_000
    assert value.version == 7 and value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after


def test_later_ids_sort_after_and_ids_differ() -> None:
    ids = []
    for _ in range(5):
        ids.append(time_ordered_hex())
        time.sleep(0.002)
    assert ids == sorted(ids)
    same_ms = {time_ordered_hex() for _ in range(1_000)}
    assert len(same_ms) == 1_000 and all(len(i) == 32 for i in same_ms)
