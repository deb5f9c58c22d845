"""Redaction, in one place: excerpts of bad records safe to keep in the quarantine table, and
URLs safe to show in messages, logs and load reports (:func:`safe_url`).

An excerpt shows a record's shape, never its values: every string value becomes ``"…"``,
every number or bare word becomes ``…``, key names are kept only when they belong to the
API contracts, and ``credentials``/``metadata_admin`` subtrees are cut away whole when the
record can be parsed. Malformed text is redacted token by token, unterminated and
single-quoted strings included, and every run of characters that is not JSON structure
(letters of any script, digits, punctuation) is masked as a value, so a secret or a name in
a broken line is masked as well.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from identity_analytics.contracts import DROPPED_IDENTITY_KEYS

MASK = "…"
MAX_EXCERPT_CHARS = 200

#: Key names shown in excerpts; any other key is masked like a value.
KNOWN_KEYS: frozenset[str] = frozenset(
    {
        # identity
        "id", "schema_id", "schema_url", "source", "organization_id", "external_id", "state",
        "state_changed_at", "created_at", "updated_at", "credentials", "traits",
        "verifiable_addresses", "recovery_addresses", "metadata_public", "metadata_admin",
        # traits and addresses
        "name", "given_name", "family_name", "middle_name", "birthdate", "email", "emails",
        "username", "gender", "citizenship", "locale", "value", "verified", "via", "status",
        "verified_at", "picture",
        # demographics and combined records
        "identity", "demographics", "identity_id", "age", "income", "household",
        "relationship_status", "parental_status",
    }
)  # fmt: skip

_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"?'  # a string literal, possibly unterminated
    r"|'(?:[^'\\]|\\.)*'?"  # a single-quoted string (not JSON, but a common slip)
    r"|[^\s{}\[\]:,\"']+"  # any other run of characters that are not JSON structure: a value
)


def _key(name: str) -> str:
    return json.dumps(name if name in KNOWN_KEYS else MASK, ensure_ascii=False)


def _render(value: Any) -> str:
    if isinstance(value, dict):
        items = (f"{_key(str(k))}:{_render(v)}" for k, v in value.items() if k not in DROPPED_IDENTITY_KEYS)
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_render(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, str):
        return f'"{MASK}"'
    return MASK


def _redact_tokens(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.startswith("'"):
            return f"'{MASK}'"
        if token.startswith('"'):
            rest = text[match.end() :].lstrip()
            inner = token[1:-1] if len(token) > 1 and token.endswith('"') else None
            if inner is not None and rest.startswith(":") and inner in KNOWN_KEYS:
                return token
            return f'"{MASK}"'
        return token if token in ("true", "false", "null") else MASK

    return _TOKEN.sub(replace, text)


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_EXCERPT_CHARS else text[: MAX_EXCERPT_CHARS - 1] + MASK


def redact_value(value: Any) -> str:
    """The excerpt of an already parsed record."""
    return _truncate(_render(value))


def redact_text(text: str) -> str:
    """The excerpt of a record's raw text, parseable or not."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return _truncate(_redact_tokens(text.strip()))
    return redact_value(value)


#: Query parameters whose values never appear in messages.
_SECRET_PARAMS = frozenset({"token", "access_token", "api_key", "apikey", "key", "secret", "password", "auth"})


def safe_url(url: str | httpx.URL) -> str:
    """The URL without user info and without the values of secret-looking query parameters."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    query = urlencode(
        [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
