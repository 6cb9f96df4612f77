"""`finetune-lab demo` fine-tunes a real tiny model from scratch on a fresh home.

What it promises: docs/OVERVIEW.md, "Command line".

The default suite runs the short mode CI can afford; the full demo (whose exact match must
climb from ~0 to a clear majority) is marked slow: `pytest -m slow tests/test_demo.py`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytest.importorskip("transformers")


def run_demo(home: Path, *args: str, timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINETUNE_LAB_")}
    env.update(FINETUNE_LAB_HOME=str(home), COLUMNS="200", OMP_NUM_THREADS="2")
    done = subprocess.run(
        [sys.executable, "-m", "finetune_lab", "demo", "--no-serve", "--port", "0", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout


def trend(out: str) -> tuple[int, int, float]:
    found = re.search(
        r"Exact match: (\d+)% at baseline → (\d+)% after epoch \d+; CER improved "
        r"(-?[\d.]+)%",
        out,
    )
    assert found, out
    return int(found.group(1)), int(found.group(2)), float(found.group(3))


def assert_server_gone(out: str) -> None:
    url = re.search(r"http://127\.0\.0\.1:(\d+)", out)
    assert url, out
    try:
        httpx.get(f"http://127.0.0.1:{url.group(1)}/healthz", timeout=2)
    except httpx.TransportError:
        return
    raise AssertionError("the demo server is still answering after --no-serve")


def test_quick_demo_on_a_fresh_home(tmp_path: Path) -> None:
    out = run_demo(tmp_path, "--quick", timeout=600)
    assert (tmp_path / "finetune-lab.db").exists()
    assert re.search(r"flk_[A-Za-z0-9_-]{43}", out), out
    job_id = re.search(r"Job: (job_[0-9a-f]{32})", out)
    assert job_id and f"/#/jobs/{job_id.group(1)}" in out
    baseline, _, improvement = trend(out)
    assert baseline == 0 and improvement > 20  # learning visibly started
    assert (tmp_path / "demo-model" / "config.json").exists()
    # The checkpoint is registered under the job and the step of its last round.
    assert f"Checkpoint registered as model demo-{job_id.group(1)}" in out, out
    with contextlib.closing(sqlite3.connect(tmp_path / "finetune-lab.db")) as db:
        model = db.execute("SELECT job_id, step, path FROM models").fetchall()
        assert len(model) == 1 and model[0][0] == job_id.group(1), model
        assert model[0][2] == str(tmp_path / "demo-model")
        last_round = db.execute(
            "SELECT MAX(step) FROM predictions WHERE job_id = ?", (job_id.group(1),)
        ).fetchone()[0]
    assert model[0][1] == last_round, (model, last_round)
    assert not list((tmp_path / "spool").glob("*/batches/*.json"))  # all delivered
    assert_server_gone(out)


@pytest.mark.slow
def test_full_demo_exact_match_climbs_to_a_majority(tmp_path: Path) -> None:
    out = run_demo(tmp_path, timeout=1800)
    baseline, final, _ = trend(out)
    assert baseline <= 5 and final >= 60, out
