"""How far SQLite's search index falls behind a writer ingesting at full speed (migration 0010).

One SDK writer sends 1,000-row batches back to back (every prompt new, as bench/ingest.py) to
a server with the defaults; every 0.25 s the rows above the index's watermark are counted
(what a search must scan besides the index). Prints the writer's rate and the median and
largest count. A search is exact whatever the count; this shows what it costs.
"""

from __future__ import annotations

import argparse
import sqlite3
import threading
import time

from _common import prediction_rows, running_server
from finetune_lab import FinetuneLabClient

BEHIND = (
    "SELECT (SELECT coalesce(max(id), 0) FROM predictions) - "
    "(SELECT watermark FROM search_watermarks WHERE source = 'predictions')"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    with (
        running_server(None, env={"FINETUNE_LAB_RATE_LIMIT": "off"}) as server,
        FinetuneLabClient(api_key=server.key, base_url=server.url) as client,
    ):
        job_id = client.jobs.create(name="lag").id
        stop, sent = threading.Event(), [0]

        def writer() -> None:
            step = 0
            while not stop.is_set():
                client.training_predictions.create(job_id, prediction_rows(step, step // 10, 1000))
                step += 1
                sent[0] = step * 1000

        thread = threading.Thread(target=writer)
        thread.start()
        path = server.database_url.removeprefix("sqlite:///")
        behind: list[int] = []
        started = time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            time.sleep(0.25)
            conn = sqlite3.connect(path)
            behind.append(int(conn.execute(BEHIND).fetchone()[0] or 0))
            conn.close()
        stop.set()
        thread.join()
        rate = sent[0] / (time.perf_counter() - started)
    behind.sort()
    print(
        f"writer {rate:,.0f} predictions/s for {args.seconds:.0f} s; rows not indexed yet "
        f"(sampled every 0.25 s): median {behind[len(behind) // 2]:,}, max {behind[-1]:,}"
    )


if __name__ == "__main__":
    main()
