"""No prediction lost or duplicated when the server is down, killed or refuses a batch."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
from transformers import TrainerCallback

from _support.infra import MakeServer
from _support.net import free_port
from finetune_lab.client import FinetuneLabClient
from finetune_lab.training import PredictionsCallback
from finetune_lab.training.delivery import Outcome
from finetune_lab.training.spool import JobSpool
from finetune_lab.training.upload import upload_spool

from .conftest import RunTrainer, Toy


def stored_rounds(client: FinetuneLabClient, job_id: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for row in client.training_predictions.iter(job_id):
        counts[row.step] = counts.get(row.step, 0) + 1
    return counts


def test_server_down_for_the_whole_run_then_sync_delivers_exactly_once(
    toy: Toy, run_trainer: RunTrainer, make_server: MakeServer, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    nowhere = FinetuneLabClient(
        api_key="flk_" + "x" * 43, base_url=f"http://127.0.0.1:{free_port()}"
    )
    callback = PredictionsCallback(
        toy.held_out,
        client=nowhere,
        job_name="offline run",
        sample_count=5,
        max_new_tokens=8,
        spool_dir=spool_dir,
        flush_timeout=1.0,
    )
    run_trainer([callback], epochs=2)
    spool = JobSpool(spool_dir, callback.job_id)
    assert len(spool.pending()) == 3  # baseline + 2 epochs, all on disk

    server = make_server("sqlite")
    key = server.create_key("offline")
    args = ["sync", "--spool-dir", str(spool_dir), "--api-url", server.base_url, "--api-key", key]
    first = server.cli(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert callback.job_id in first.stdout
    with FinetuneLabClient(api_key=key, base_url=server.base_url) as client:
        assert stored_rounds(client, callback.job_id) == {0: 5, 4: 5, 8: 5}
        job = client.jobs.get(callback.job_id)
        assert (job.name, job.status) == ("offline run", "completed")
        assert not spool_dir.joinpath(callback.job_id).exists()
        again = server.cli(*args)
        assert again.returncode == 0 and "nothing to sync" in again.stdout
        assert client.jobs.get(callback.job_id).prediction_count == 15


def test_server_killed_and_restarted_mid_training(
    toy: Toy, run_trainer: RunTrainer, make_server: MakeServer, tmp_path: Path
) -> None:
    server = make_server("sqlite")
    key = server.create_key("crashy")
    assert server.pid is not None

    class KillAndRestart(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == 3:
                os.kill(server.pid, signal.SIGKILL)  # type: ignore[arg-type]
                server.stop()  # reap it
            if state.global_step == 10:
                server.start()

    client = FinetuneLabClient(api_key=key, base_url=server.base_url)
    callback = PredictionsCallback(
        toy.held_out,
        client=client,
        sample_count=4,
        max_new_tokens=8,
        spool_dir=tmp_path / "spool",
        flush_timeout=15.0,
    )
    run_trainer([callback, KillAndRestart()], epochs=3)
    # Round 8 was recorded while the server was dead; every round arrives exactly once.
    assert stored_rounds(client, callback.job_id) == {0: 4, 4: 4, 8: 4, 12: 4}
    assert client.jobs.get(callback.job_id).status == "completed"
    assert not (tmp_path / "spool" / callback.job_id).exists()


def test_a_batch_the_server_refuses_is_kept_aside_not_lost(
    make_server: MakeServer, tmp_path: Path
) -> None:
    server = make_server("sqlite")
    key = server.create_key("refused")
    spool = JobSpool(tmp_path, "t-refused")
    spool.update_meta(api_url=server.base_url, job={"id": "t-refused"}, finished=True)
    good = [{"epoch": 0, "step": 0, "sample_index": 0, "prompt": "p", "prediction": "a"}]
    spool.append(good)
    spool.append([{**good[0], "step": 1, "prompt": "bad \x00 text"}])
    [result] = upload_spool(tmp_path, api_key=key)
    assert result.report.outcome is Outcome.DONE
    assert (result.report.batches, result.report.rejected, result.remaining) == (1, 1, 0)
    reasons = list((tmp_path / "t-refused" / "rejected").glob("*.error.txt"))
    assert len(reasons) == 1 and "422" in reasons[0].read_text()
    with httpx.Client(base_url=server.base_url, headers={"X-API-Key": key}) as http:
        body = http.get("/api/training/predictions/t-refused").json()
    assert body["total_count"] == 1


def test_sync_without_any_key_reports_and_keeps_files(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("FINETUNE_LAB_API_KEY", raising=False)
    spool = JobSpool(tmp_path, "t-nokey")
    spool.update_meta(api_url="http://127.0.0.1:9", job={"id": "t-nokey"})
    spool.append([{"epoch": 0, "step": 0, "sample_index": 0, "prompt": "p", "prediction": "a"}])
    [result] = upload_spool(tmp_path)
    assert result.report.outcome is Outcome.BLOCKED and "API key" in (result.report.error or "")
    assert result.remaining == 1
