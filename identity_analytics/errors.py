"""The library's exceptions. Messages name the input and the place, never a secret."""

from __future__ import annotations


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
