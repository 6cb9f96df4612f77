"""Wire values are spelled once, in `finetune_lab.schema`: the live server's OpenAPI, the SDK's
signatures and the CLI's choices all come from there (a value added to one place only fails)."""

from __future__ import annotations

import inspect
from typing import Any, get_args

import httpx
import pytest
from typer.testing import CliRunner

from _support.appserver import ServerHandle
from finetune_lab.cli import app
from finetune_lab.client.resources import TrainingPredictions
from finetune_lab.schema import (
    EXPORT_FORMATS,
    SORT_KEYS,
    ExportFormat,
    GroupBy,
    PredictionFilters,
    SortKey,
)
from finetune_lab.server.services.export import MEDIA_TYPES

PREDICTIONS = "/api/training/predictions/{job_id}"


def _enum(operation: dict[str, Any], name: str) -> tuple[str, ...]:
    (param,) = [p for p in operation["parameters"] if p["name"] == name]
    schema = param["schema"]
    options = schema.get("anyOf", [schema])
    return tuple(next(o["enum"] for o in options if "enum" in o))


@pytest.fixture(scope="module")
def openapi(server: ServerHandle) -> dict[str, Any]:
    schema: dict[str, Any] = httpx.get(f"{server.base_url}/openapi.json").json()
    return schema


def test_server_parameters_are_the_schema_values(openapi: dict[str, Any]) -> None:
    paths = openapi["paths"]
    assert _enum(paths[PREDICTIONS]["get"], "sort") == SORT_KEYS
    assert _enum(paths[f"{PREDICTIONS}/export"]["get"], "format") == EXPORT_FORMATS
    assert _enum(paths[f"{PREDICTIONS}/trends"]["get"], "group_by") == get_args(GroupBy)
    assert tuple(MEDIA_TYPES) == EXPORT_FORMATS
    filters = {p["name"] for p in paths[PREDICTIONS]["get"]["parameters"]}
    assert set(PredictionFilters.__dataclass_fields__) <= filters


def test_sdk_signatures_use_the_schema_types() -> None:
    get = inspect.signature(TrainingPredictions.get).parameters
    assert get["sort"].annotation == "SortKey | None"
    export = inspect.signature(TrainingPredictions.export).parameters
    assert export["format"].annotation == "ExportFormat"
    assert get_args(SortKey) == SORT_KEYS and get_args(ExportFormat) == EXPORT_FORMATS
    for name in PredictionFilters.__dataclass_fields__:
        assert name in get and name in inspect.signature(TrainingPredictions.iter).parameters


@pytest.mark.parametrize(
    ("command", "option", "values"),
    [
        ("list", "--sort", SORT_KEYS),
        ("export", "--format", EXPORT_FORMATS),
        ("import", "--format", EXPORT_FORMATS),
        ("trends", "--group-by", get_args(GroupBy)),
    ],
)
def test_cli_choices_are_the_schema_values(
    command: str, option: str, values: tuple[str, ...]
) -> None:
    result = CliRunner().invoke(app, ["predictions", command, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if option in line)
    assert "<" + "|".join(values) + ">" in line
