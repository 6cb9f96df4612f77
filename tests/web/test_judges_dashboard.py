"""Judge scores on the dashboard: a `judge:<name>` metric shows up like any custom metric, live."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from _support.fake_openai import FakeOpenAI

from .conftest import Dashboard


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.close()


def test_judge_scores_appear_live_as_a_metric_chart(dashboard: Dashboard, fake: FakeOpenAI) -> None:
    job_id = f"t-{uuid.uuid4().hex}"
    with dashboard.server.client(dashboard.key) as http:
        model = http.post(
            "/api/models",
            json={
                "name": f"grader-{uuid.uuid4().hex[:6]}",
                "kind": "openai",
                "base_url": fake.base_url,
                "upstream_model": "slow-1000",
            },
        ).json()
        judge = {"name": "quality", "model": model["name"], "prompt": "score: {prediction}"}
        config = {"predictions": {"judges": [{**judge, "min": 0, "max": 10}]}}
        assert http.post("/api/training/jobs", json={"id": job_id, "config": config}).is_success
        rows = [
            {"epoch": e, "step": e, "sample_index": i, "prompt": "q", "prediction": str(e + i)}
            for e in (1, 2)
            for i in range(3)
        ]
        assert http.post(
            f"/api/training/predictions/{job_id}", json={"predictions": rows}
        ).is_success
    dashboard.open_job(job_id)  # before the judge answered: the chart comes with the stream
    dashboard.page.wait_for_selector(".chart[data-kind='metric:judge:quality']", timeout=20_000)
