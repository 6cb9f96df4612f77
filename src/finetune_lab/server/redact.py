"""Secrets out of what leaves the server: URLs with credentials, and upstream error text.

A model's `base_url` may carry `user:pass@` or a secret query parameter (`?api_key=`); the
stored value is used as is for calls, and `mask_url` is what responses, errors and logs show.
Upstream error bodies are free text from a third party: `redact` removes what looks like a
credential (and the model's own known secrets) before a bounded excerpt is shown or traced.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "***"
#: Upstream text shown in an error message or trace, after redaction.
MAX_UPSTREAM_TEXT = 300
#: Upstream text looked at for redaction at all (the rest is dropped unread).
_SCAN_CHARS = 4096
#: Known secrets shorter than this are not searched for literally (they would mangle text).
_MIN_LITERAL = 4

# Query parameter names whose values are credentials (matched as substrings, any case).
_SECRET_PARAM = re.compile(
    r"key|token|secret|passw|pwd|auth|sig|credential|session|cookie", re.IGNORECASE
)
_NAMED_SECRET = re.compile(
    r"""(?P<name>["']?[\w.-]*(?:key|token|secret|password|passwd|pwd|auth|credential)"""
    r"""["']?\s*[=:]\s*)"""
    r"""(?P<quote>["']?)(?P<value>[^\s"'&,;}]+)""",
    re.IGNORECASE,
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization schemes with their credential.
    (re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{4,}", re.IGNORECASE), r"\1 ***"),
    # OpenAI-style keys (sk-..., sk-proj-...), and other common key shapes.
    (re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"), "sk-***"),
    (re.compile(r"\b(?:ghp|gho|ghs|github_pat|xox[abpr]|hf)_[A-Za-z0-9_]{8,}"), MASK),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), MASK),
    # Userinfo in any URL: scheme://user:pass@host → scheme://***@host.
    (re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@]+@"), r"\g<scheme>***@"),
)


def mask_url(url: str | None) -> str | None:
    """The URL with its userinfo and secret-looking query values replaced by `***`."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        query = "&".join(_mask_param(pair) for pair in query.split("&"))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _mask_param(pair: str) -> str:
    name, sep, value = pair.partition("=")
    if sep and value and _SECRET_PARAM.search(name):
        return f"{name}={MASK}"
    return pair


def url_secrets(url: str | None) -> list[str]:
    """The credentials a URL carries (password, secret query values), to redact literally.

    The user name is not one: it is masked inside URLs, but it may be a common word."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
        found += [v for k, v in parse_qsl(parts.query) if _SECRET_PARAM.search(k)]
    except ValueError:
        return []
    return [s for s in found if s]


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with known `secrets` and anything credential-shaped replaced by `***`."""
    for secret in sorted(
        {s for s in secrets if s and len(s) >= _MIN_LITERAL}, key=len, reverse=True
    ):
        text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _NAMED_SECRET.sub(lambda m: f"{m['name']}{m['quote']}{MASK}", text)


def excerpt(text: str, secrets: Iterable[str | None] = (), limit: int = MAX_UPSTREAM_TEXT) -> str:
    """A redacted excerpt of third-party text: redacted first, so no cut secret survives."""
    clean = redact(text[:_SCAN_CHARS], secrets)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


class MaskURLsInLogs(logging.Filter):
    """For the `httpx` logger: its request lines carry the full URL (userinfo, query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                mask_url(str(arg)) if "://" in str(arg) else arg for arg in record.args
            )
        return True


def mask_httpx_logs() -> None:
    """Install the filter once on the `httpx` logger."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, MaskURLsInLogs) for f in logger.filters):
        logger.addFilter(MaskURLsInLogs())
