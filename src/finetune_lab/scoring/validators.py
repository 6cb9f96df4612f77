"""Output validators configured per job (`config.predictions.validators`)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema import Draft202012Validator, FormatChecker, SchemaError, ValidationError
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from jsonschema.validators import extend, validator_for
from referencing.exceptions import Unresolvable

from finetune_lab.scoring.regex import PatternCache, RegexError, compile_pattern, reason

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


def _re2_keywords(base: type[Validator], patterns: PatternCache) -> type[Validator]:
    """`base` with every keyword that matches a regex matching it with RE2 (same semantics and
    messages as jsonschema's own keywords, which call Python's backtracking `re`)."""

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Any:
        if validator.is_type(instance, "string") and not patterns.search(patrn, instance):
            yield ValidationError(f"{instance!r} does not match {patrn!r}")

    def pattern_properties(validator: Any, pattern_props: Any, instance: Any, schema: Any) -> Any:
        if not validator.is_type(instance, "object"):
            return
        for patrn, subschema in pattern_props.items():
            for key, value in instance.items():
                if patterns.search(patrn, key):
                    yield from validator.descend(value, subschema, path=key, schema_path=patrn)

    def additional_properties(validator: Any, extra: Any, instance: Any, schema: Any) -> Any:
        if not validator.is_type(instance, "object"):
            return
        known = schema.get("properties", {})
        regexes = list(schema.get("patternProperties", {}))
        extras = {
            key
            for key in instance
            if key not in known and not any(patterns.search(p, key) for p in regexes)
        }
        if validator.is_type(extra, "object"):
            for key in extras:
                yield from validator.descend(instance[key], extra, path=key)
        elif not extra and extras:
            names = sorted(extras, key=str)
            if "patternProperties" in schema:
                verb = "does" if len(names) == 1 else "do"
                listed = ", ".join(repr(p) for p in sorted(regexes))
                message = f"{', '.join(map(repr, names))} {verb} not match any of the regexes: "
                yield ValidationError(message + listed)
            else:
                verb = "was" if len(names) == 1 else "were"
                message = f"Additional properties are not allowed ({', '.join(map(repr, names))}"
                yield ValidationError(f"{message} {verb} unexpected)")

    replaced = {
        "pattern": pattern,
        "patternProperties": pattern_properties,
        "additionalProperties": additional_properties,
    }
    keywords = {name: fn for name, fn in replaced.items() if name in base.VALIDATORS}
    return extend(base, keywords)


def _re2_format_checker(meta_validator: type[Validator]) -> FormatChecker:
    """The metaschema's format checker with `regex` meaning "RE2 can run it"."""
    checker = FormatChecker()
    checker.checkers = dict(meta_validator.FORMAT_CHECKER.checkers)

    def is_regex(instance: object) -> bool:
        if isinstance(instance, str):
            compile_pattern(instance)
        return True

    checker.checks("regex", raises=RegexError)(is_regex)
    return checker


def check_schema(cls: type[Validator], schema: Any) -> None:
    """`cls.check_schema` where every regex must be one RE2 can run (SchemaError otherwise)."""
    meta_validator = validator_for(cls.META_SCHEMA, default=cls)
    cls.check_schema(schema, format_checker=_re2_format_checker(meta_validator))
    # Drafts 3 and 4 do not mark `patternProperties` keys as regexes: check them here.
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            keyed = item.get("patternProperties")
            for patrn in keyed if isinstance(keyed, dict) else ():
                try:
                    compile_pattern(patrn)
                except RegexError as exc:
                    error = SchemaError(f"{patrn!r} is not a 'regex'", cause=exc)
                    raise error from exc
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


@dataclass(frozen=True)
class ValidationResult:
    passed: bool
    kind: str
    errors: list[dict[str, Any]]


class Validators:
    """A compiled validator set; build once per job config (it never changes), apply to every
    prediction. Schema regexes run on RE2 and are compiled once per validator set."""

    def __init__(self, json_parse: bool = False, json_schema: dict[str, Any] | None = None) -> None:
        self.json_parse = json_parse or json_schema is not None
        self._schema_validator: Any = None
        if json_schema is not None:
            cls = validator_for(json_schema, default=Draft202012Validator)
            check_schema(cls, json_schema)
            self._schema_validator = _re2_keywords(cls, PatternCache())(json_schema)

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> Validators | None:
        """Validators of a job config, or None when the job has none."""
        spec = ((config or {}).get("predictions") or {}).get("validators") or {}
        if not spec.get("json_parse") and spec.get("json_schema") is None:
            return None
        return cls(json_parse=bool(spec.get("json_parse")), json_schema=spec.get("json_schema"))

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
        # One error per failing validator, as the spec asks: report the most relevant one.
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


def compile_validators(config: dict[str, Any] | None) -> tuple[Validators | None, str | None]:
    """(validators of a job config or None, None) or (None, why the config is unusable)."""
    try:
        return Validators.from_config(config), None
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
