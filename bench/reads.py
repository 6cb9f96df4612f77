"""Read latency that must not grow with the job: /trends, /epochs and deep cursor pages.

Targets (issue 2): /trends and /epochs on a 1,000,000-prediction job within 2x of a
1,000-prediction job; a cursor page at the end of 1,000,000 rows within 2x of the first page.
Both jobs have the same number of rounds (100): rollups make these reads O(rounds), so the
number of predictions per round must not matter. The jobs are filled through the server's
own ingest service (the same code the HTTP route runs) to keep the setup short.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import orjson

from _common import paired_medians, prediction_rows, running_server, verdict
from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database
from finetune_lab.server.services import ingest
from finetune_lab.server.services.queries import encode_cursor
from finetune_lab.server.services.scoring_pool import ScoringPool

ROUNDS = 100
BIG_PER_ROUND = 10_000  # 1,000,000 predictions
SMALL_PER_ROUND = 10  # 1,000 predictions
REPEAT = 30


def fill(db: Database, owner: Principal, job_id: str, per_round: int) -> None:
    for round_index in range(ROUNDS):
        for start in range(0, per_round, 5_000):
            rows = prediction_rows(
                step=round_index * 10,
                epoch=round_index // 2,
                count=min(5_000, per_round - start),
                start=start,
            )
            items = ingest.parse_batch(orjson.dumps({"predictions": rows}))
            ingest.ingest(db, owner, job_id, items, ScoringPool.in_process())


def main() -> None:
    with running_server() as server:
        http = httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=120)
        for job_id in ("big", "small"):
            http.post("/api/training/jobs", json={"id": job_id}).raise_for_status()
        owner = Principal(user_id=1, user="bench", credential="api_key", scopes=("all",))
        db = Database(server.database_url)
        started = time.perf_counter()
        fill(db, owner, "small", SMALL_PER_ROUND)
        fill(db, owner, "big", BIG_PER_ROUND)
        db.dispose()
        total = http.get("/api/training/predictions/big", params={"limit": 1}).json()["total_count"]
        assert total == ROUNDS * BIG_PER_ROUND, total
        print(
            f"reads: filled 1,000,000 + 1,000 predictions in {time.perf_counter() - started:.0f} s"
        )

        def getter(path: str, **params: object) -> Callable[[], None]:
            def call() -> None:
                http.get(path, params=params).raise_for_status()

            return call

        for endpoint in ("trends", "epochs"):
            small, big = paired_medians(
                getter(f"/api/training/predictions/small/{endpoint}"),
                getter(f"/api/training/predictions/big/{endpoint}"),
                REPEAT,
            )
            ratio = big / small
            print(
                f"  /{endpoint:<7} 1k job {small * 1e3:7.2f} ms (baseline)"
                f"  1M job {big * 1e3:7.2f} ms"
                f"  ratio {ratio:5.2f}x  target <= 2  {verdict(ratio <= 2)}"
            )

        last_epoch, last_step = (ROUNDS - 1) // 2, (ROUNDS - 1) * 10
        deep = encode_cursor(last_epoch, last_step, BIG_PER_ROUND - 51)
        page = http.get(
            "/api/training/predictions/big", params={"limit": 50, "cursor": deep}
        ).json()
        assert len(page["predictions"]) == 50 and page["next_cursor"] is None
        first_page = getter("/api/training/predictions/big", limit=50)
        first, end = paired_medians(
            first_page, getter("/api/training/predictions/big", limit=50, cursor=deep), REPEAT
        )
        ratio = end / first
        print(
            f"  cursor page: first {first * 1e3:7.2f} ms (baseline)"
            f"  at row 999,950 {end * 1e3:7.2f} ms"
            f"  ratio {ratio:5.2f}x  target <= 2  {verdict(ratio <= 2)}"
        )
        last_offset = ROUNDS * BIG_PER_ROUND - 50
        first, offset = paired_medians(
            first_page, getter("/api/training/predictions/big", limit=50, offset=last_offset), 10
        )
        print(
            f"  (for contrast) offset page at row 999,950: {offset * 1e3:7.2f} ms"
            f"  ratio {offset / first:5.1f}x"
        )


if __name__ == "__main__":
    main()
