"""JSON Schema validation whose regexes run on RE2 (see regex.py for why).

jsonschema's own `pattern`, `patternProperties` and `additionalProperties` keywords call
Python's `re`; here they are replaced (`validators.extend`) by versions with the same semantics
and messages that match through a PatternCache. `unevaluatedProperties` still re-runs
`patternProperties` with `re` inside jsonschema: the validation time budget bounds that path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from jsonschema import FormatChecker, SchemaError, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend, validator_for

from finetune_lab.scoring.regex import PatternCache, RegexError


def _keywords(base: type[Validator], patterns: PatternCache) -> type[Validator]:
    """`base` with every keyword that matches a regex matching it through `patterns`."""

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


def _schema_regexes(schema: Any) -> Iterator[tuple[str, str]]:
    """("pattern" | "patternProperties", regex) for every place of `schema` that may hold one
    (also values that only look like one, e.g. inside `const`: callers decide)."""
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("pattern"), str):
                yield "pattern", item["pattern"]
            if isinstance(item.get("patternProperties"), dict):
                for regex in item["patternProperties"]:
                    yield "patternProperties", regex
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def re2_validator(cls: type[Validator], schema: Any, patterns: PatternCache) -> Validator:
    """A validator of `schema` matching through `patterns`, every regex compiled up front (so a
    row's time budget is never spent compiling); a regex RE2 refuses fails the rows it meets."""
    for _, regex in _schema_regexes(schema):
        with contextlib.suppress(RegexError):
            patterns.compile(regex)
    return _keywords(cls, patterns)(schema)


def _format_checker(meta_validator: type[Validator], patterns: PatternCache) -> FormatChecker:
    """The metaschema's format checker with `regex` meaning "RE2 can run it"."""
    checker = FormatChecker()
    checker.checkers = dict(meta_validator.FORMAT_CHECKER.checkers)

    def is_regex(instance: object) -> bool:
        if isinstance(instance, str):
            patterns.compile(instance)
        return True

    checker.checks("regex", raises=RegexError)(is_regex)
    return checker


def check_schema(cls: type[Validator], schema: Any, patterns: PatternCache) -> None:
    """`cls.check_schema` where every regex must be one RE2 can run (SchemaError otherwise)."""
    meta_validator = validator_for(cls.META_SCHEMA, default=cls)
    cls.check_schema(schema, format_checker=_format_checker(meta_validator, patterns))
    # Drafts 3 and 4 do not mark `patternProperties` keys as regexes: check them here.
    for where, regex in _schema_regexes(schema):
        if where == "patternProperties":
            try:
                patterns.compile(regex)
            except RegexError as exc:
                raise SchemaError(f"{regex!r} is not a 'regex'", cause=exc) from exc
