"""Output validators configured per job (`config.predictions.validators`)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema import Draft202012Validator, SchemaError
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from referencing.exceptions import Unresolvable

from finetune_lab.scoring.re2_schema import check_schema, re2_validator
from finetune_lab.scoring.regex import PatternCache, RegexError, reason

# 19+ digits may be an integer beyond 64 bits, which orjson reads as an inexact float.
_LONG_DIGITS = re.compile(r"[0-9]{19}")


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"number {literal[:40]} is out of range")
    return value


def _check_unicode(value: Any) -> None:
    """Refuse escaped lone surrogates ("\\ud800"), as orjson and PostgreSQL do: they are no
    text, and could not be stored in a validation message."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")  # UnicodeEncodeError is a ValueError
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_json(text: str) -> Any:
    """RFC 8259 JSON: big integers exact, other numbers within a double's range, no lone
    surrogates. orjson reads the common case fast; it rounds big integers, so texts with long
    digit runs (and texts it refuses, to get the json module's verdict and message) go to the
    json module, without its NaN/Infinity extension. Raises ValueError, or RecursionError when
    nested too deeply."""
    if not _LONG_DIGITS.search(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    value = json.loads(text, parse_constant=_not_json, parse_float=_finite_float)
    _check_unicode(value)
    return value


@dataclass(frozen=True)
class ValidationResult:
    passed: bool
    kind: str
    errors: list[dict[str, Any]]


class Validators:
    """A compiled validator set; build once per job config (it never changes), apply to every
    prediction. Schema regexes run on RE2 and are compiled once per validator set."""

    def __init__(
        self,
        json_parse: bool = False,
        json_schema: dict[str, Any] | None = None,
        *,
        checked: bool = False,
    ) -> None:
        """`checked`: the schema already passed `check_schema` (at job creation), so only
        compile it: the check costs ~0.7 ms per subschema."""
        self.json_parse = json_parse or json_schema is not None
        self._schema_validator: Any = None
        if json_schema is not None:
            cls = validator_for(json_schema, default=Draft202012Validator)
            patterns = PatternCache()
            if not checked:
                check_schema(cls, json_schema, patterns)
            self._schema_validator = re2_validator(cls, json_schema, patterns)

    @classmethod
    def from_config(
        cls, config: dict[str, Any] | None, *, checked: bool = False
    ) -> Validators | None:
        """Validators of a job config, or None when the job has none."""
        spec = ((config or {}).get("predictions") or {}).get("validators") or {}
        if not spec.get("json_parse") and spec.get("json_schema") is None:
            return None
        return cls(
            json_parse=bool(spec.get("json_parse")),
            json_schema=spec.get("json_schema"),
            checked=checked,
        )

    @property
    def kind(self) -> str:
        return "json_parse+json_schema" if self._schema_validator is not None else "json_parse"

    def __call__(self, prediction: str) -> ValidationResult:
        try:
            value = parse_json(prediction)
        except (ValueError, RecursionError) as exc:
            error: dict[str, Any] = {
                "validator": "json_parse",
                "message": "output is not valid JSON",
                "detail": str(exc),
            }
            return ValidationResult(False, self.kind, [error])
        if self._schema_validator is None:
            return ValidationResult(True, self.kind, [])
        # One error per failing validator (docs/OVERVIEW.md): report the most relevant one.
        try:
            errors = list(self._schema_validator.iter_errors(value))
        except (RecursionError, OverflowError, Unresolvable, RegexError) as exc:
            # A recursive schema walking a degenerate "[[[[..." output, a number too large for
            # a float keyword (`multipleOf: 0.1`), a `$ref` the schema does not hold (never
            # fetched), or a regex the metaschema does not mark as one (draft 4
            # `patternProperties`) that RE2 cannot run: the output fails, the ingest goes on.
            if isinstance(exc, RecursionError):
                why = "nested too deeply"
            elif isinstance(exc, RegexError):
                why = f"a schema pattern is not supported by RE2: {reason(exc)}"
            else:
                why = str(exc)
            error = {
                "validator": "json_schema",
                "message": f"output cannot be validated: {why}",
                "detail": {"path": "/", "schema_path": "/", "error_count": 1},
            }
            return ValidationResult(False, self.kind, [error])
        if not errors:
            return ValidationResult(True, self.kind, [])
        first = best_match(errors)
        detail = {
            "path": "/" + "/".join(str(p) for p in first.absolute_path),
            "schema_path": "/" + "/".join(str(p) for p in first.absolute_schema_path),
            "error_count": len(errors),
        }
        error = {"validator": "json_schema", "message": first.message, "detail": detail}
        return ValidationResult(False, self.kind, [error])


def validate(prediction: str, validators: Validators | None) -> ValidationResult | None:
    return None if validators is None else validators(prediction)


class UnusableValidators(Validators):
    """A job whose schema this server cannot apply (created by an older version, before RE2
    rules were enforced at creation): every output fails with the reason, the ingest goes on."""

    def __init__(self, problem: str) -> None:
        super().__init__(json_parse=True)
        self.problem = problem

    @property
    def kind(self) -> str:
        return "json_parse+json_schema"

    def __call__(self, prediction: str) -> ValidationResult:
        error = {"validator": "json_schema", "message": f"schema cannot be applied: {self.problem}"}
        return ValidationResult(False, self.kind, [error])


def compile_validators(
    config: dict[str, Any] | None, *, checked: bool = False
) -> tuple[Validators | None, str | None]:
    """(validators of a job config or None, None) or (None, why the config is unusable)."""
    try:
        return Validators.from_config(config, checked=checked), None
    except SchemaError as exc:
        problem = "config.predictions.validators.json_schema is not a valid JSON Schema: "
        problem += exc.message
        if isinstance(exc.cause, RegexError):
            problem += (
                f" (patterns run on RE2: no lookarounds, no backreferences; {reason(exc.cause)})"
            )
        return None, problem
    except (AttributeError, TypeError) as exc:
        return None, f"config.predictions.validators is malformed: {exc}"


def check_validators_config(config: dict[str, Any] | None) -> str | None:
    """Why a job config's validators are unusable, or None when they are fine."""
    return compile_validators(config)[1]
