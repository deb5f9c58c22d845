"""The library's exceptions. Messages name the input and the place, never a secret."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


class IdentityAnalyticsError(Exception):
    """Base class of every error raised by identity_analytics."""


class LoadError(IdentityAnalyticsError, ValueError):
    """A source could not be read, or (with ``strict=True``) held a bad record.

    ``source`` is the file path or URL without credentials, ``line`` the 1-based line
    (NDJSON), element (JSON array) or row (Parquet) number when the error concerns a record.
    """

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        super().__init__(message)
        self.source = source
        self.line = line


class PrivacyError(IdentityAnalyticsError):
    """A request was refused because answering it would break a privacy rule."""


class NotFound(IdentityAnalyticsError, LookupError):
    """The requested identity (or other object) is not in the loaded data."""


class SourceError(IdentityAnalyticsError):
    """A remote source failed after retries; the message names the URL without credentials."""


# validation messages ------------------------------------------------------------------------


class FieldError(ValueError):
    """A problem below the field being validated; ``path`` continues that field's location."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.path = path


def field_location(loc: Sequence[str | int]) -> str:
    """A validation location as written in the config: ``cohorts[1].where.citizenship``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def describe(error: ValidationError) -> tuple[str, str]:
    """The location and message of the first problem of ``error`` (with a count of the others)."""
    first = error.errors()[0]
    loc = [*first["loc"]]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, FieldError):
        loc += cause.path
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return field_location(loc), message + more
