"""RL rollouts on the dashboard: reward functions as trend metrics, a step's completions grouped
by prompt (issue 12, item 4), in real Chromium against the live server."""

from __future__ import annotations

import hashlib
from typing import Any

from . import _seed
from .conftest import Dashboard

STEPS = 3
PROMPTS = 4
GENERATIONS = 3


def _prompt(p: int) -> str:
    return f"What is {p} plus {p}?"


def _rewards(step: int, p: int, g: int) -> dict[str, float]:
    return {"accuracy": float((step + p + g) % 2), "format": round(0.1 * g + 0.01 * step, 4)}


def rollout_rows(step: int) -> list[dict[str, Any]]:
    """One step's rollouts, prompts interleaved (the view must bring each prompt's together)."""
    rows = []
    for g in range(GENERATIONS):
        for p in range(PROMPTS):
            rows.append(
                {
                    "epoch": 1,
                    "step": step,
                    "sample_index": g * PROMPTS + p,
                    "prompt": _prompt(p),
                    "prompt_id": hashlib.sha256(_prompt(p).encode()).hexdigest(),
                    "ground_truth": str(2 * p),
                    "prediction": f"step {step}: {2 * p + g}",
                    "do_sample": True,
                    "sample_source": "rollouts",
                    "metrics": _rewards(step, p, g),
                }
            )
    return rows


def _seed_rollouts(board: Dashboard, job_id: str) -> None:
    with board.server.client(board.key) as http:
        created = http.post(
            "/api/training/jobs",
            json={
                "id": job_id,
                "model_name": "tiny-gpt2",
                "config": {"rollouts": {"reward_funcs": ["accuracy", "format"]}},
            },
        )
        assert created.status_code == 201, created.text
        for step in range(1, STEPS + 1):
            response = http.post(f"{_seed.PRED}/{job_id}", json={"predictions": rollout_rows(step)})
            assert response.status_code == 200, response.text


GROUPS_JS = """() => [...document.querySelectorAll('#predictions tbody tr')].map((r) =>
  r.classList.contains('prompt-group')
    ? {head: r.dataset.promptId, size: r.dataset.size,
       means: Object.fromEntries([...r.querySelectorAll('.group-means [data-metric]')]
         .map((s) => [s.dataset.metric, s.textContent])),
       prompt: r.querySelector('.group-prompt').innerText}
    : {row: r.dataset.promptId, sample: r.dataset.sample,
       metrics: [...r.querySelectorAll('.metrics li')].map((li) => li.innerText)})"""


def _wait_loaded(page: Any, before: str | None) -> None:
    page.wait_for_function(
        "before => document.querySelector('#predictions').dataset.loaded !== before", arg=before
    )


def test_rewards_trend_and_rollouts_group_by_prompt(
    dashboard: Dashboard, unique_job_id: str
) -> None:
    _seed_rollouts(dashboard, unique_job_id)
    page = dashboard.page
    page.evaluate(
        "id => { location.hash = '#/jobs/' + encodeURIComponent(id) + '?by=step&round=1.2'; }",
        unique_job_id,
    )
    page.wait_for_selector("#job-page[data-ready]")
    # Each reward function is a trend metric, one point per step.
    page.wait_for_selector(".chart[data-kind='metric:format']")
    kinds = page.eval_on_selector_all(".chart", "els => els.map((e) => e.dataset.kind)")
    assert {"metric:accuracy", "metric:format"} <= set(kinds)
    assert page.get_attribute(".chart[data-kind='metric:accuracy']", "data-points") == str(STEPS)

    # A rollout job opens grouped by prompt: one header per prompt, its completions under it.
    page.wait_for_selector("#predictions[data-grouped='true'] tr.prompt-group")
    assert page.get_attribute("#group-prompt", "aria-pressed") == "true"
    items = page.evaluate(GROUPS_JS)
    heads = [i for i in items if "head" in i]
    assert len(heads) == PROMPTS and len(items) == PROMPTS * (GENERATIONS + 1)
    for p, head in enumerate(heads):
        at = items.index(head)
        members = items[at + 1 : at + 1 + GENERATIONS]
        assert head["prompt"] == _prompt(p) and head["size"] == str(GENERATIONS)
        assert {m["row"] for m in members} == {head["head"]}
        assert [int(m["sample"]) for m in members] == [g * PROMPTS + p for g in range(GENERATIONS)]
        for name in ("accuracy", "format"):
            mean = sum(_rewards(2, p, g)[name] for g in range(GENERATIONS)) / GENERATIONS
            assert head["means"][name] == f"{name} {mean:.3f}"
        assert members[0]["metrics"] == [
            f"accuracy {_rewards(2, p, 0)['accuracy']:.3f}",
            f"format {_rewards(2, p, 0)['format']:.3f}",
        ]

    # Off: the stored order, no headers; the address keeps the choice.
    stamp = page.get_attribute("#predictions", "data-loaded")
    page.click("#group-prompt")
    _wait_loaded(page, stamp)
    items = page.evaluate(GROUPS_JS)
    assert not [i for i in items if "head" in i]
    assert [int(i["sample"]) for i in items] == list(range(PROMPTS * GENERATIONS))
    assert "group=none" in page.evaluate("location.hash")
    stamp = page.get_attribute("#predictions", "data-loaded")
    page.click("#group-prompt")
    _wait_loaded(page, stamp)
    assert "group=prompt" in page.evaluate("location.hash")
    assert len(page.query_selector_all("#predictions tr.prompt-group")) == PROMPTS


def test_prediction_jobs_are_not_grouped_unless_asked(dashboard: Dashboard, seeded: str) -> None:
    page = dashboard.page
    dashboard.open_job(seeded)
    page.wait_for_selector("#predictions[data-grouped='false']")
    assert not page.query_selector_all("#predictions tr.prompt-group")
    page.evaluate(
        "id => { location.hash = '#/jobs/' + encodeURIComponent(id) + '?group=prompt'; }", seeded
    )
    # Each seeded prompt is its own group of one.
    page.wait_for_selector("#predictions[data-grouped='true'] tr.prompt-group[data-size='1']")
    rows = page.query_selector_all("#predictions tbody tr[data-sample]")
    assert len(page.query_selector_all("#predictions tr.prompt-group")) == len(rows)


def test_group_headers_show_hostile_prompts_and_names_as_text(
    dashboard: Dashboard, unique_job_id: str
) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    rows = [
        {
            "epoch": 1,
            "step": 1,
            "sample_index": i,
            "prompt": hostile,
            "prompt_id": "same",
            "prediction": hostile,
            "metrics": {hostile: float(i)},
        }
        for i in range(2)
    ]
    with dashboard.server.client(dashboard.key) as http:
        created = http.post(
            "/api/training/jobs", json={"id": unique_job_id, "config": {"rollouts": {}}}
        )
        assert created.status_code == 201, created.text
        response = http.post(f"{_seed.PRED}/{unique_job_id}", json={"predictions": rows})
        assert response.status_code == 200, response.text
    page = dashboard.page
    dashboard.open_job(unique_job_id)
    page.wait_for_selector("#predictions tr.prompt-group[data-size='2']")
    head = page.query_selector("#predictions tr.prompt-group")
    assert head.query_selector(".group-prompt").inner_text() == hostile
    assert head.query_selector(".group-means [data-metric]").inner_text() == f"{hostile} 0.500"
    assert not page.query_selector_all("#predictions img")
