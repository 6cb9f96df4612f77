"""`RolloutsCallback` in real TRL GRPO/RLOO runs on CPU against a live server (issue 12, item 4)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from _support.appserver import ServerHandle  # noqa: E402
from _support.net import free_port  # noqa: E402
from finetune_lab.client import FinetuneLabClient  # noqa: E402
from finetune_lab.training import RolloutsCallback  # noqa: E402
from finetune_lab.training.delivery import upload  # noqa: E402
from finetune_lab.training.spool import JobSpool  # noqa: E402
from finetune_lab.training.toy import task_records  # noqa: E402

from .conftest import Toy  # noqa: E402

STEPS = 3
BATCH = 4  # completions per step (per_device_train_batch_size)
GENERATIONS = 2  # completions per prompt: 2 prompts a step


def brace(completions: list[Any], **kwargs: Any) -> list[float]:
    """1 when the completion opens a JSON object (text or chat completions)."""
    return [1.0 if "{" in _text(c) else 0.0 for c in completions]


async def closeness(completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
    """Async on purpose (TRL awaits those on its own loop): minus the length gap, in tens."""
    return [-abs(len(_text(c)) - len(a)) / 10 for c, a in zip(completions, answer, strict=True)]


def vowels(completions: list[Any], **kwargs: Any) -> list[float | None]:
    """Share of vowels; None (no value) for an empty completion."""
    texts = [_text(c) for c in completions]
    return [sum(ch in "aeiou" for ch in t) / len(t) if t else None for t in texts]


def _text(completion: Any) -> str:
    if isinstance(completion, list):
        return "".join(m["content"] for m in completion)
    return str(completion)


@pytest.fixture
def client(sqlite_server: ServerHandle) -> FinetuneLabClient:
    key = sqlite_server.create_key("rl")
    return FinetuneLabClient(api_key=key, base_url=sqlite_server.base_url)


def _records(count: int) -> list[dict[str, str]]:
    return [
        {"prompt": r["prompt"], "answer": r["completion"].strip()}
        for r in task_records(count, seed=7)
    ]


def _train(toy: Toy, tmp_path: Path, trainer_cls: Any, config_cls: Any, data: Any, **kw: Any):
    callback = kw.pop("callback")
    funcs = kw.pop("funcs")
    eval_dataset = kw.pop("eval_dataset", None)
    args = config_cls(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=BATCH,
        num_generations=GENERATIONS,
        max_completion_length=8,
        max_steps=STEPS,
        learning_rate=1e-4,
        beta=0.0,
        use_cpu=True,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        **kw,
    )
    trainer = trainer_cls(
        model=toy.model(),
        reward_funcs=callback.wrap(funcs),
        args=args,
        train_dataset=data,
        eval_dataset=eval_dataset,
        processing_class=toy.tokenizer,
        callbacks=[callback],
    )
    trainer.train()
    return trainer


def _logged_means(trainer: Any, name: str) -> dict[int, float]:
    return {
        entry["step"]: entry[f"rewards/{name}/mean"]
        for entry in trainer.state.log_history
        if f"rewards/{name}/mean" in entry
    }


def _check_rollouts(rows: list[Any], trainer: Any, names: list[str]) -> None:
    """Every rollout once, numbered in its step, grouped by prompt, rewards as TRL logged."""
    assert len(rows) == STEPS * BATCH
    assert Counter(r.step for r in rows) == {s: BATCH for s in range(1, STEPS + 1)}
    for step in range(1, STEPS + 1):
        in_step = sorted((r for r in rows if r.step == step), key=lambda r: r.sample_index)
        assert [r.sample_index for r in in_step] == list(range(BATCH))
        groups = Counter(r.prompt_id for r in in_step)
        assert sorted(groups.values()) == [GENERATIONS] * (BATCH // GENERATIONS)
        # TRL's sampler repeats each prompt num_generations times in a row
        assert [r.prompt_id for r in in_step[::GENERATIONS]] == [
            r.prompt_id for r in in_step[1::GENERATIONS]
        ]
    for row in rows:
        assert row.prompt_id == hashlib.sha256(row.prompt.encode()).hexdigest()
        assert row.do_sample is True and row.sample_source == "rollouts"
    assert trainer.reward_func_names == names  # the wrappers keep TRL's names
    for name in names:
        logged = _logged_means(trainer, name)
        assert sorted(logged) == list(range(1, STEPS + 1))
        for step, mean in logged.items():
            values = [r.metrics[name] for r in rows if r.step == step and name in (r.metrics or {})]
            assert values, (name, step)
            assert math.isclose(sum(values) / len(values), mean, rel_tol=1e-5, abs_tol=1e-6)


def test_grpo_records_each_rollout_once_with_trl_rewards(
    toy: Toy, client: FinetuneLabClient, tmp_path: Path
) -> None:
    records = _records(2)  # two prompts: both come back every step (one step per epoch)
    data = datasets.Dataset.from_list(records)
    callback = RolloutsCallback(client=client, job_name="grpo", spool_dir=tmp_path / "spool")
    trainer = _train(
        toy,
        tmp_path,
        trl.GRPOTrainer,
        trl.GRPOConfig,
        data,
        callback=callback,
        funcs=[brace, closeness, vowels],
        # evaluation runs the reward functions too: those rollouts are not training's
        eval_dataset=data,
        eval_strategy="steps",
        eval_steps=2,
        per_device_eval_batch_size=BATCH,
    )
    assert any("eval_rewards/brace/mean" in e for e in trainer.state.log_history)
    rows = list(client.training_predictions.iter(callback.job_id))
    _check_rollouts(rows, trainer, ["brace", "closeness", "vowels"])
    truth = {r["prompt"]: r["answer"] for r in records}
    ids_by_step = defaultdict(set)
    for row in rows:
        assert row.ground_truth == truth[row.prompt]  # the dataset's `answer` column
        assert row.epoch == row.step  # one step per epoch here
        assert row.max_new_tokens == 8 and 1 <= (row.completion_tokens or 0) <= 8
        ids_by_step[row.step].add(row.prompt_id)
        # the stored values are what the reward functions return for the stored completion
        assert row.metrics["brace"] == brace([row.prediction])[0]
        assert math.isclose(
            row.metrics["closeness"], -abs(len(row.prediction) - len(truth[row.prompt])) / 10
        )
    assert ids_by_step[1] == ids_by_step[2] == ids_by_step[3]  # stable across steps
    job = client.jobs.get(callback.job_id)
    assert job.status == "completed" and job.name == "grpo"
    assert job.config["rollouts"]["reward_funcs"] == ["brace", "closeness", "vowels"]
    # The dashboard's trends: reward functions are metrics, averaged per step like TRL did.
    trends = client.training_predictions.trends(callback.job_id, group_by="step").trends
    assert [p.step for p in trends] == [1, 2, 3]
    for point in trends:
        for name in ("brace", "closeness", "vowels"):
            logged = _logged_means(trainer, name)[point.step]
            assert math.isclose(point.metrics[name], logged, rel_tol=1e-5, abs_tol=1e-6)
    assert not callback.spool.directory.exists()  # delivered: nothing left behind


def test_rloo_chat_prompts_and_named_truth_column(
    toy: Toy, client: FinetuneLabClient, tmp_path: Path
) -> None:
    records = [
        {"prompt": [{"role": "user", "content": r["prompt"]}], "target": r["answer"]}
        for r in _records(6)
    ]
    data = datasets.Dataset.from_list(records)
    callback = RolloutsCallback(
        client=client, ground_truth_column="target", spool_dir=tmp_path / "spool"
    )
    trainer = _train(
        toy,
        tmp_path,
        trl.RLOOTrainer,
        trl.RLOOConfig,
        data,
        callback=callback,
        funcs=[brace, vowels],
    )
    rows = list(client.training_predictions.iter(callback.job_id))
    _check_rollouts(rows, trainer, ["brace", "vowels"])
    rendered = {
        toy.tokenizer.apply_chat_template(
            r["prompt"], tokenize=False, add_generation_prompt=True
        ): r["target"]
        for r in records
    }
    for row in rows:
        assert row.prompt in rendered  # the chat prompt as the model saw it
        assert row.ground_truth == rendered[row.prompt]
        assert row.epoch == 1


def test_rollouts_wait_in_the_spool_while_the_server_is_down(
    toy: Toy, client: FinetuneLabClient, tmp_path: Path
) -> None:
    down = FinetuneLabClient(api_key="flk_unused", base_url="http://127.0.0.1:9", max_retries=0)
    callback = RolloutsCallback(client=down, spool_dir=tmp_path / "spool", flush_timeout=0.5)
    _train(
        toy,
        tmp_path,
        trl.GRPOTrainer,
        trl.GRPOConfig,
        datasets.Dataset.from_list(_records(4)),
        callback=callback,
        funcs=[brace],
    )
    spool = JobSpool(tmp_path / "spool", callback.job_id)
    assert len(spool.pending()) == STEPS  # one file per step, kept
    report = upload(client, spool)  # what `finetune-lab sync` does once the server is back
    assert report.rows == STEPS * BATCH
    rows = list(client.training_predictions.iter(callback.job_id))
    assert Counter(r.step for r in rows) == {s: BATCH for s in range(1, STEPS + 1)}


def _named(name: str) -> Any:
    def fn(completions: list[Any], **kwargs: Any) -> list[float]:
        return [0.0] * len(completions)

    fn.__name__ = name
    return fn


@pytest.mark.parametrize(
    ("funcs", "message"),
    [
        ([_named("score"), _named("score")], "two reward functions"),
        ([_named("exact_match")], "built-in score"),
        ([_named("x" * 129)], "cannot be a metric name"),
        (["not a model id but a string is passed through", 3], "not callable"),
    ],
)
def test_wrap_refuses_names_the_server_would_mix_up(funcs: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RolloutsCallback().wrap(funcs)


def test_wrapped_functions_keep_results_names_and_asyncness(tmp_path: Path) -> None:
    import asyncio
    import functools

    callback = RolloutsCallback(spool_dir=tmp_path)
    partial = functools.partial(closeness, answer=["ab"])
    wrapped = callback.wrap([brace, partial])
    assert [f.__name__ for f in wrapped] == ["brace", "closeness"]
    assert not asyncio.iscoroutinefunction(wrapped[0])
    assert asyncio.iscoroutinefunction(wrapped[1])
    assert wrapped[0](prompts=["p"], completions=["{x"]) == [1.0]
    assert asyncio.run(wrapped[1](prompts=["p"], completions=["abcd"])) == [-0.2]
    callback.close(0.1)


def test_torchrun_two_ranks_gather_rollouts_to_rank_zero(
    toy: Toy, sqlite_server: ServerHandle, tmp_path: Path
) -> None:
    key = sqlite_server.create_key("rl-ddp")
    records = tmp_path / "records.json"
    records.write_text(json.dumps(_records(8)))
    env = {
        **os.environ,
        "FINETUNE_LAB_API_KEY": key,
        "FINETUNE_LAB_API_URL": sqlite_server.base_url,
        "OMP_NUM_THREADS": "1",
    }
    # fmt: off
    argv = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        str(Path(__file__).with_name("_ddp_grpo.py")),
        str(toy.checkpoint), str(tmp_path), str(records),
    ]
    # fmt: on
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    job_id = (tmp_path / "job_id.0").read_text()
    assert (tmp_path / "recorded.1").read_text() == "0"  # rank 1 hands its share to rank 0
    assert (done.stdout + done.stderr).count(f"job {job_id}: rollouts at ") == 1
    history = json.loads((tmp_path / "log_history.json").read_text())
    with FinetuneLabClient(api_key=key, base_url=sqlite_server.base_url) as client:
        rows = list(client.training_predictions.iter(job_id))
        assert client.jobs.list().total == 1  # rank 1 created no job of its own
    ranks, steps = 2, 2
    assert len(rows) == ranks * steps * BATCH
    for step in (1, 2):
        in_step = sorted((r for r in rows if r.step == step), key=lambda r: r.sample_index)
        assert [r.sample_index for r in in_step] == list(range(ranks * BATCH))
        assert sorted(Counter(r.prompt_id for r in in_step).values()) == [GENERATIONS] * 4
        logged = next(e for e in history if e.get("step") == step and "loss" in e)
        for name in ("brace", "closeness"):
            mean = sum(r.metrics[name] for r in in_step) / len(in_step)
            assert math.isclose(mean, logged[f"rewards/{name}/mean"], rel_tol=1e-5, abs_tol=1e-6)
    assert not list((tmp_path / "spool").glob("*/batches/*.json"))


def test_without_a_trainer_each_reward_computation_is_a_step(
    client: FinetuneLabClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A custom loop calling the wrapped functions (no trainer state): one step per batch."""
    callback = RolloutsCallback(
        client=client, ground_truth_column="label", spool_dir=tmp_path / "spool"
    )
    first, second = callback.wrap([brace, vowels])
    for prompts, completions in ((["a", "a"], ["{x", "yy"]), (["b"], ["o\x00o"])):
        kwargs = {"prompts": prompts, "completions": completions, "answer": ["t"] * len(prompts)}
        first(**kwargs)
        second(**kwargs)
    assert callback.close(10.0)
    rows = sorted(
        client.training_predictions.iter(callback.job_id), key=lambda r: (r.step, r.sample_index)
    )
    assert [(r.step, r.sample_index, r.prediction) for r in rows] == [
        (1, 0, "{x"),
        (1, 1, "yy"),
        (2, 0, "o\ufffdo"),  # the server refuses NUL: it is replaced, not the batch lost
    ]
    assert rows[0].metrics == {"brace": 1.0, "vowels": 0.0}
    assert rows[2].metrics == {"brace": 0.0, "vowels": pytest.approx(2 / 3)}
    assert all(r.ground_truth is None for r in rows)  # `label` is not a column: said once
    assert caplog.text.count("has no column 'label'") == 1
    assert caplog.text.count("no trainer state") == 1
