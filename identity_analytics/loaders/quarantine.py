"""The quarantine: bad records kept with source, line, reason and a redacted excerpt."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from identity_analytics.errors import LoadError
from identity_analytics.loaders.redaction import redact_text, redact_value
from identity_analytics.loaders.staging import BadRecord, Layout, StagedSource

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("line", pa.int64()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("excerpt", pa.string()),
    ]
)

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "a number")


def diagnose(text: str, layout: Layout) -> str:
    """Why a record the staging SQL rejected is bad, in words that name the fault."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        where = f"column {error.colno}" if error.lineno == 1 else f"line {error.lineno} column {error.colno}"
        return f"malformed JSON: {error.msg.removesuffix(' at')} ({where})"
    except (ValueError, RecursionError):
        return "malformed JSON"
    if not isinstance(value, dict):
        return f"record is not a JSON object (got {_json_type(value)})"
    if layout == "combined":
        value = value.get("identity")
        if not isinstance(value, dict):
            return f"`identity` is not an object (got {_json_type(value)})"
    key = "identity_id" if layout == "demographics" else "id"
    if key not in value:
        return f"missing `{key}`"
    if not isinstance(value[key], str):
        return f"`{key}` is not a string (got {_json_type(value[key])})"
    if not value[key]:
        return f"`{key}` is empty"
    return "record rejected by the JSON parser"


@dataclass
class QuarantineLog:
    """Collects bad records; with ``strict`` the first one raises :class:`LoadError` instead."""

    strict: bool = False
    rows: list[tuple[str, int | None, str, str | None]] = field(default_factory=list)

    def add(
        self,
        source: str,
        line: int | None,
        reason: str,
        *,
        text: str | None = None,
        value: Any = None,
    ) -> None:
        """Record one bad record; its excerpt is redacted from ``text`` or ``value``."""
        if self.strict:
            where = f"{source}:{line}" if line is not None else source
            raise LoadError(
                f"{where}: {reason}. Fix the record, or load without strict=True to quarantine it.",
                source=source,
                line=line,
            )
        excerpt = redact_text(text) if text is not None else redact_value(value) if value is not None else None
        self.rows.append((source, line, reason, excerpt))

    def __len__(self) -> int:
        return len(self.rows)

    def to_arrow(self) -> pa.Table:
        """The quarantine table: source, line, reason, excerpt; by source (in load order), then line."""
        order = {source: i for i, source in reversed(list(enumerate(r[0] for r in self.rows)))}
        rows = sorted(self.rows, key=lambda r: (order[r[0]], r[1] if r[1] is not None else -1))
        arrays = [pa.array([row[i] for row in rows], type=f.type) for i, f in enumerate(QUARANTINE_SCHEMA)]
        return pa.Table.from_arrays(arrays, schema=QUARANTINE_SCHEMA)


def report_bad(log: QuarantineLog, staged: StagedSource, bad: list[BadRecord]) -> None:
    """Quarantine the bad records of one staged chunk, each with its diagnosis."""
    for record in bad:
        text = (record.text or "").rstrip("\r\n")
        log.add(staged.source.label, record.line, diagnose(text, staged.source.layout), text=text)
    staged.quarantined += len(bad)
