"""Child process for the full-disk tests: its file writes fail for real (RLIMIT_FSIZE = 0 with
SIGXFSZ ignored makes every write to a file raise OSError(EFBIG), even as root).

Usage: python _full_disk_child.py MODE SPOOL_DIR API_URL API_KEY JOB_ID
- ``recorder``: a real PredictionsRecorder on a tiny model records 5 rounds of 8 samples with
  the disk full from the start, then closes; prints {"delivered", "dropped"} as JSON.
- ``overflow``: the server is down; a BackgroundSender gets 105 rounds of 200 rows it can
  neither spool nor send, prints {"dropped"}, waits for a line on stdin (the server is back),
  flushes and prints {"delivered", "dropped"}.
"""

from __future__ import annotations

import json
import logging
import resource
import signal
import sys
from typing import Any


def fill_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def rows(step: int, count: int) -> list[dict[str, Any]]:
    return [
        {"epoch": step, "step": step, "sample_index": i, "prompt": f"q{i}", "prediction": f"a{i}"}
        for i in range(count)
    ]


def run_recorder(spool_dir: str, url: str, key: str, job_id: str) -> dict[str, Any]:
    from finetune_lab.client import FinetuneLabClient
    from finetune_lab.training import PredictionsRecorder
    from finetune_lab.training.toy import toy_setup

    model, tokenizer, _, held_out = toy_setup(
        train_size=32, n_layer=1, n_embd=16, n_head=1, n_positions=64
    )
    client = FinetuneLabClient(api_key=key, base_url=url, max_retries=0)
    recorder = PredictionsRecorder(
        held_out,
        client=client,
        job_id=job_id,
        job_name="full disk",
        sample_count=8,
        max_new_tokens=4,
        spool_dir=spool_dir,
    )
    fill_disk()
    for step in range(5):
        recorder.round(model, tokenizer, step=step * 10, epoch=step)
    sender = recorder._sender
    delivered = recorder.close(timeout=30)
    return {"delivered": delivered, "dropped": sender.dropped_rows if sender else None}


def run_overflow(spool_dir: str, url: str, key: str, job_id: str) -> dict[str, Any]:
    from finetune_lab.client import FinetuneLabClient
    from finetune_lab.training.sender import BackgroundSender
    from finetune_lab.training.spool import JobSpool

    spool = JobSpool(spool_dir, job_id)
    spool.update_meta(api_url=url, job={"id": job_id, "name": "overflow"}, finished=False)
    fill_disk()  # the disk fills up after the run started
    sender = BackgroundSender(
        spool,
        lambda: FinetuneLabClient(api_key=key, base_url=url, max_retries=0),
        max_backoff=1.0,
    )
    for step in range(105):
        sender.submit(rows(step, 200))
    print(json.dumps({"dropped": sender.dropped_rows}), flush=True)
    sys.stdin.readline()  # the test restarts the server, then answers
    delivered = sender.close(timeout=60)
    return {"delivered": delivered, "dropped": sender.dropped_rows}


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    mode, spool_dir, url, key, job_id = sys.argv[1:6]
    run = run_recorder if mode == "recorder" else run_overflow
    print(json.dumps(run(spool_dir, url, key, job_id)), flush=True)


if __name__ == "__main__":
    main()
