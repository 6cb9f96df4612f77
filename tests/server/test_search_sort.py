"""Text search (`q`) and score ordering (`sort`) of the predictions list, both backends."""

from __future__ import annotations

import httpx

from _support.appserver import ServerHandle
from finetune_lab import FinetuneLabClient

from ._helpers import PRED, assert_error, create_job, ingest, list_page, row


def _seed(http: httpx.Client, job_id: str) -> None:
    create_job(http, job_id)
    ingest(
        http,
        job_id,
        [
            row(1, 1, 0, prompt="What is 50% of 10?", prediction="five", ground_truth="5"),
            row(1, 1, 1, prompt="Name a colour", prediction="Blue sky", ground_truth="blue"),
            row(1, 1, 2, prompt="snake_case?", prediction="yes", ground_truth="yes"),
            row(2, 2, 0, prompt="What is 50% of 10?", prediction="5", ground_truth="5"),
            row(2, 2, 1, prompt="Name a colour", prediction="red", ground_truth=None),
            row(2, 2, 2, prompt="snakeXcase?", prediction="no", ground_truth="yes"),
        ],
    )


def _keys(page: dict) -> list[tuple[int, int]]:
    return [(p["epoch"], p["sample_index"]) for p in page["predictions"]]


def test_q_searches_prompt_prediction_and_truth(http: httpx.Client, unique_job_id: str) -> None:
    _seed(http, unique_job_id)
    page = list_page(http, unique_job_id, q="BLUE")  # prediction and truth, any case
    assert _keys(page) == [(1, 1)] and page["total_count"] == 1
    assert _keys(list_page(http, unique_job_id, q="colour")) == [(1, 1), (2, 1)]
    assert _keys(list_page(http, unique_job_id, q="colour", epoch=2)) == [(2, 1)]
    # LIKE wildcards are plain characters.
    assert _keys(list_page(http, unique_job_id, q="50%")) == [(1, 0), (2, 0)]
    assert _keys(list_page(http, unique_job_id, q="snake_case")) == [(1, 2)]
    assert list_page(http, unique_job_id, q="nothing like this")["total_count"] == 0
    # Paging through a search keeps the filter.
    first = list_page(http, unique_job_id, q="?", limit=2)
    second = list_page(http, unique_job_id, q="?", limit=2, cursor=first["next_cursor"])
    assert first["total_count"] == 4
    assert _keys(first) + _keys(second) == [(1, 0), (1, 2), (2, 0), (2, 2)]


def test_sort_by_score_with_offset_pages(http: httpx.Client, unique_job_id: str) -> None:
    _seed(http, unique_job_id)
    worst = list_page(http, unique_job_id, sort="-char_error_rate", limit=3)
    cers = [p["char_error_rate"] for p in worst["predictions"]]
    assert cers == sorted(cers, reverse=True) and cers[0] == 1.0
    assert worst["next_cursor"] is None and worst["total_count"] == 6
    rest = list_page(http, unique_job_id, sort="-char_error_rate", limit=3, offset=3)
    everything = worst["predictions"] + rest["predictions"]
    assert len({(p["epoch"], p["sample_index"]) for p in everything}) == 6
    assert everything[-1]["char_error_rate"] is None  # no ground truth: nulls last
    best = list_page(http, unique_job_id, sort="char_error_rate", limit=6)["predictions"]
    assert [p["char_error_rate"] for p in best] == [0.0, 0.0, 1.0, 1.0, 1.0, None]
    assert best[-1]["char_error_rate"] is None  # nulls last in both directions
    misses = list_page(http, unique_job_id, sort="exact_match", epoch=1)["predictions"]
    assert [p["exact_match"] for p in misses] == [0.0, 0.0, 1.0]


def test_q_and_sort_are_validated(http: httpx.Client, unique_job_id: str) -> None:
    _seed(http, unique_job_id)
    path = f"{PRED}/{unique_job_id}"
    assert_error(http.get(path, params={"q": ""}), 422)
    assert_error(http.get(path, params={"q": "x" * 201}), 422)
    assert_error(http.get(path, params={"q": "a\x00b"}), 422)
    assert_error(http.get(path, params={"sort": "prompt"}), 422)
    cursor = list_page(http, unique_job_id, limit=1)["next_cursor"]
    assert_error(http.get(path, params={"sort": "exact_match", "cursor": cursor}), 422)


def test_sdk_passes_q_and_sort(server: ServerHandle, api_key: str, unique_job_id: str) -> None:
    with FinetuneLabClient(api_key=api_key, base_url=server.base_url) as client:
        client.jobs.create(id=unique_job_id)
        rows = [row(1, 1, i, prediction=f"answer {i}", ground_truth="answer 1") for i in range(3)]
        client.training_predictions.create(unique_job_id, rows)
        page = client.training_predictions.get(unique_job_id, q="ANSWER 2")
        assert [p.sample_index for p in page.predictions] == [2]
        ordered = client.training_predictions.get(unique_job_id, sort="-char_error_rate")
        assert [p.sample_index for p in ordered.predictions][-1] == 1
        found = client.training_predictions.iter(unique_job_id, q="answer 0")
        assert [p.sample_index for p in found] == [0]
