"""JSON Schema `pattern`s on RE2: matching in time linear in the text, whatever the pattern.

Python's `re` backtracks: `^(a+)+$` against "aaaa…a!" doubles its work per character. RE2 has
no backtracking, so it also has no lookarounds and no backreferences: a schema using them is
refused when the job is created (a 422), never half-applied at ingest.
"""

from __future__ import annotations

import re

import re2

# RE2 spells the ECMA-262 escape \uXXXX as \x{XXXX}. Only an escape preceded by an even
# number of backslashes is one (`\\u0041` is a literal backslash, then "u0041").
_UNICODE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u([0-9A-Fa-f]{4})")

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # refused patterns are reported to the caller, not to stderr

RegexError = re2.error


def translate(pattern: str) -> str:
    """An ECMA-262 pattern in RE2 syntax (the two differ in the \\uXXXX escape)."""
    return _UNICODE_ESCAPE.sub(r"\1\\x{\2}", pattern)


def compile_pattern(pattern: str) -> re2._Regexp:
    """Raises RegexError with RE2's reason when RE2 cannot run the pattern."""
    return re2.compile(translate(pattern), _OPTIONS)


def reason(exc: Exception) -> str:
    """RE2's message as text (the binding hands it over as bytes)."""
    message = exc.args[0] if exc.args else exc
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)


class PatternCache:
    """The compiled patterns of one schema: each pattern is compiled once, not per match.

    Owned by one validator set, so a schema with 50,000 patterns cannot evict another job's
    (Python's own `re` cache holds 512)."""

    def __init__(self) -> None:
        self._compiled: dict[str, re2._Regexp] = {}

    def compile(self, pattern: str) -> re2._Regexp:
        compiled = self._compiled.get(pattern)
        if compiled is None:
            compiled = self._compiled[pattern] = compile_pattern(pattern)
        return compiled

    def search(self, pattern: str, text: str) -> bool:
        compiled = self._compiled.get(pattern) or self.compile(pattern)
        return compiled.search(text) is not None
