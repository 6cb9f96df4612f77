"""Errors raised by the SDK, one class per kind of failure a caller may want to handle."""

from __future__ import annotations

from typing import Any


class FinetuneLabError(Exception):
    """Base class: `status_code` and `response` (the parsed JSON body) when the server answered.

    `status`, `body` and `details` name the same things as the TypeScript SDK's errors do.
    """

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        response: Any = None,
        *,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.response = response
        self.error_type = error_type

    @property
    def status(self) -> int | None:
        """The HTTP status, as `status_code`."""
        return self.status_code

    @property
    def body(self) -> Any:
        """The parsed JSON body (or its text when it was not JSON), as `response`."""
        return self.response

    @property
    def details(self) -> Any:
        """`error.details` of the body: for 422, the list of `{loc, message, type}`."""
        if isinstance(self.response, dict):
            error = self.response.get("error")
            if isinstance(error, dict):
                return error.get("details")
        return None

    def __str__(self) -> str:
        if self.status_code is None:
            return self.message
        return f"{self.status_code} {self.error_type or 'error'}: {self.message}"


class APIStatusError(FinetuneLabError):
    """The server answered with an error status not covered by a narrower class."""


class BadRequestError(APIStatusError):
    """400: the request body could not be read."""


class AuthenticationError(APIStatusError):
    """401: no credentials, or credentials the server does not accept."""


class PermissionDeniedError(APIStatusError):
    """403: valid credentials without the needed scope."""


class NotFoundError(APIStatusError):
    """404: unknown resource (or one that belongs to another user)."""


class ConflictError(APIStatusError):
    """409: e.g. a job id taken by another user."""


class PayloadTooLargeError(APIStatusError):
    """413: the body or batch is over the server's limits."""


class ValidationError(APIStatusError):
    """422: the request was well-formed but its values are invalid."""


class RateLimitError(APIStatusError):
    """429: slow down; `retry_after` seconds when the server said."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class InternalServerError(APIStatusError):
    """5xx: the server failed; safe calls were already retried."""


class APIConnectionError(FinetuneLabError):
    """The server could not be reached."""


class APITimeoutError(APIConnectionError):
    """The server did not answer in time."""


STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitError,
}


def error_class_for_status(status_code: int) -> type[APIStatusError]:
    if status_code >= 500:
        return InternalServerError
    return STATUS_ERRORS.get(status_code, APIStatusError)
