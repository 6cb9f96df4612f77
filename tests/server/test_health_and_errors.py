"""Health, OpenAPI, and the uniform error body for routing and parsing failures."""

from __future__ import annotations

import pytest

from ._helpers import JOBS, PRED, assert_error, assert_not_500, create_job, new_id, row


def test_healthz_needs_no_auth(server):
    with server.client(None) as anon:
        resp = anon.get("/healthz")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body.get("database") == server.backend


def test_healthz_ignores_bad_credentials(server):
    with server.client("flk_" + "A" * 43) as bad:
        resp = bad.get("/healthz")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"


def test_openapi_json(server):
    with server.client(None) as anon:
        resp = anon.get("/openapi.json")
    assert resp.status_code == 200
    spec = resp.json()
    assert str(spec["openapi"]).startswith("3.")
    paths = spec["paths"]
    for path in (
        "/healthz",
        "/api/training/jobs",
        "/api/training/jobs/{job_id}",
        "/api/training/predictions/{job_id}",
        "/api/training/predictions/{job_id}/epochs",
        "/api/training/predictions/{job_id}/trends",
        "/api/training/predictions/{job_id}/samples/{sample_index}",
        "/api/training/predictions/{job_id}/compare",
        "/api/training/predictions/{job_id}/export",
    ):
        assert path in paths, f"{path} missing from /openapi.json"
    assert "post" in paths["/api/training/predictions/{job_id}"]
    assert {"get", "patch", "delete"} <= set(paths["/api/training/jobs/{job_id}"])


@pytest.mark.parametrize(
    "path", ["/nope", "/api/nope", "/api/training/nope", "/api/training/jobs/a/b/c"]
)
def test_unknown_route_is_404_with_error_body(http, path):
    assert_error(http.get(path), 404)


def test_unknown_route_without_auth_is_json_too(server):
    with server.client(None) as anon:
        resp = anon.get("/api/definitely/not/here")
    assert resp.status_code in (401, 404)
    assert_error(resp, resp.status_code)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", JOBS),
        ("DELETE", JOBS),
        ("POST", "/healthz"),
        ("PUT", f"{PRED}/some-job"),
        ("POST", f"{PRED}/some-job/epochs"),
    ],
)
def test_wrong_method_is_405_with_error_body(http, method, path):
    assert_error(http.request(method, path), 405)


@pytest.mark.parametrize(
    "body",
    [b'{"id": ', b"{not json}", b"\xff\xfe\x00garbage", b'{"name": "x"', b"[1, 2,"],
)
def test_malformed_json_create_job_is_400(http, body):
    resp = http.post(JOBS, content=body, headers={"content-type": "application/json"})
    assert_error(resp, 400)


def test_malformed_json_ingest_is_400_and_nothing_stored(http, unique_job_id):
    create_job(http, unique_job_id)
    resp = http.post(
        f"{PRED}/{unique_job_id}",
        content=b'{"predictions": [{"epoch": 0, "step": 0, "sample_index": 0,',
        headers={"content-type": "application/json"},
    )
    assert_error(resp, 400)
    page = http.get(f"{PRED}/{unique_job_id}").json()
    assert page["total_count"] == 0


@pytest.mark.parametrize("body", [b"[]", b'"just a string"', b"42"])
def test_valid_json_of_the_wrong_shape_is_422_for_jobs(http, body):
    resp = http.post(JOBS, content=body, headers={"content-type": "application/json"})
    assert_error(resp, 422)


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'"just a string"',
        b"42",
        b"null",
        b"{}",
        b'{"predictions": null}',
        b'{"predictions": {}}',
        b'{"predictions": [1]}',
    ],
)
def test_valid_json_of_the_wrong_shape_is_422_for_ingest(http, body):
    job_id = new_id()
    create_job(http, job_id)
    resp = http.post(f"{PRED}/{job_id}", content=body, headers={"content-type": "application/json"})
    assert_error(resp, 422)


def test_validation_error_details_shape(http):
    resp = http.post(JOBS, json={"id": "bad id with spaces"})
    error = assert_error(resp, 422)
    details = error.get("details")
    assert isinstance(details, list)
    assert details
    for item in details:
        assert {"loc", "message", "type"} <= set(item), item
        assert isinstance(item["loc"], list)


def test_lone_surrogate_never_500(http):
    # valid JSON syntax, but not encodable text for the database
    job_id = new_id()
    create_job(http, job_id)
    content = (
        b'{"predictions": [{"epoch": 0, "step": 0, "sample_index": 0, '
        b'"prompt": "\\ud800", "prediction": "x", "ground_truth": "x"}]}'
    )
    resp = http.post(
        f"{PRED}/{job_id}", content=content, headers={"content-type": "application/json"}
    )
    assert_not_500(resp)
    listing = http.get(f"{PRED}/{job_id}")
    assert listing.status_code == 200
    listing.json()


@pytest.mark.parametrize(
    "content",
    [
        b'{"predictions": [{"epoch": 0, "step": 0, "sample_index": 0, '
        b'"prompt": "p", "prediction": "x", "ground_truth": "x", "latency_ms": NaN}]}',
        b'{"predictions": [{"epoch": 0, "step": 0, "sample_index": 0, '
        b'"prompt": "p", "prediction": "x", "ground_truth": "x", "metrics": {"m": Infinity}}]}',
        b'{"predictions": [{"epoch": 0, "step": 0, "sample_index": 0, '
        b'"prompt": "p", "prediction": "x", "ground_truth": "x", "metrics": {"m": -Infinity}}]}',
        b'{"predictions": [{"epoch": 0, "step": 0, "sample_index": 0, '
        b'"prompt": "p", "prediction": "x", "ground_truth": "x", "metrics": {"m": NaN}}]}',
    ],
)
def test_nan_and_infinity_are_not_json_numbers(http, content):
    job_id = new_id()
    create_job(http, job_id)
    resp = http.post(
        f"{PRED}/{job_id}", content=content, headers={"content-type": "application/json"}
    )
    assert resp.status_code in (400, 422), resp.text
    assert_error(resp, resp.status_code)
    assert http.get(f"{PRED}/{job_id}").json()["total_count"] == 0


@pytest.mark.parametrize("number", [b"1e400", b"-1e400"])
def test_out_of_range_float_never_500(http, number):
    # valid JSON grammar, but no finite double: reject it, or store something the read
    # endpoints can still serve
    job_id = new_id()
    create_job(http, job_id)
    content = (
        b'{"predictions": [{"epoch": 0, "step": 0, "sample_index": 0, "prompt": "p", '
        b'"prediction": "x", "ground_truth": "x", "metrics": {"m": ' + number + b"}}]}"
    )
    resp = http.post(
        f"{PRED}/{job_id}", content=content, headers={"content-type": "application/json"}
    )
    assert_not_500(resp)
    for path in ("", "/trends", "/trends?group_by=step", "/samples/0", "/export?format=csv"):
        got = http.get(f"{PRED}/{job_id}{path}")
        assert got.status_code in (200, 404), (path, got.status_code, got.text[:300])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prompt", "nul\x00here"),
        ("prediction", "a\x00b"),
        ("ground_truth", "\x00"),
        ("prompt_id", "id\x00"),
        ("sample_source", "src\x00"),
        ("metrics", {"bad\x00key": 1.0}),
    ],
)
def test_nul_character_is_refused_on_both_backends(http, field, value):
    # PostgreSQL cannot store U+0000 in text, so both backends refuse it the same way: a 422
    # naming the item, and nothing of the batch stored.
    job_id = new_id()
    create_job(http, job_id)
    batch = [row(0, 0, 0), row(0, 0, 1, **{field: value})]
    err = assert_error(http.post(f"{PRED}/{job_id}", json={"predictions": batch}), 422)
    assert err["message"].startswith("predictions[1] "), err
    assert err["details"][0]["loc"][:3] == ["predictions", 1, field]
    assert http.get(f"{PRED}/{job_id}").json()["total_count"] == 0


def test_nul_character_in_job_fields_is_refused(http):
    assert_error(http.post(JOBS, json={"name": "run\x00"}), 422)
    assert_error(http.post(JOBS, json={"config": {"note": "x\x00"}}), 422)


@pytest.mark.parametrize(
    "params",
    [
        {"epoch": str(2**70)},
        {"step": str(2**64)},
        {"sample_index": "9" * 40},
        {"offset": str(2**63)},
        {"limit": "9" * 30},
        {"epoch": "1e3"},
        {"epoch": ""},
        {"validation_pass": "yes please"},
        {"cursor": "%%%"},
        {"cursor": "A" * 5000},
    ],
)
def test_hostile_query_params_never_500(http, params):
    job_id = new_id()
    create_job(http, job_id)
    assert_not_500(http.get(f"{PRED}/{job_id}", params=params))


@pytest.mark.parametrize("value", [2**31 + 7, 2**63])
@pytest.mark.parametrize("field", ["epoch", "step", "sample_index", "prompt_tokens"])
def test_huge_integers_in_body_never_500(http, field, value):
    job_id = new_id()
    create_job(http, job_id)
    item = row(0, 0, 0)
    item[field] = value
    resp = http.post(f"{PRED}/{job_id}", json={"predictions": [item]})
    assert_not_500(resp)
    if resp.status_code == 200:
        got = http.get(f"{PRED}/{job_id}")
        assert got.status_code == 200, got.text
        assert got.json()["predictions"][0][field] == value


def test_not_found_job_error_body(http):
    assert_error(http.get(f"{JOBS}/{new_id('missing')}"), 404)
    assert_error(http.get(f"{PRED}/{new_id('missing')}"), 404)


def test_docs_are_served_without_a_cdn(server):
    with server.client() as anon:
        page = anon.get("/docs")
        assert page.status_code == 200
        assert "cdn." not in page.text and "/docs/assets/swagger-ui-bundle.js" in page.text
        script = anon.get("/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200 and len(script.content) > 100_000
        assert anon.get("/openapi.json").json()["info"]["title"] == "FineTune Lab"


def test_openapi_schema_is_valid_and_documents_auth(server):
    from openapi_spec_validator import validate

    with server.client() as anon:
        schema = anon.get("/openapi.json").json()
    validate(schema)
    assert set(schema["components"]["securitySchemes"]) == {"apiKey", "bearer"}
    assert schema["paths"]["/healthz"]["get"]["security"] == []
    ingest = schema["paths"]["/api/training/predictions/{job_id}"]["post"]
    body = ingest["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PredictionsBatch"}
    assert "PredictionIn" in schema["components"]["schemas"]
