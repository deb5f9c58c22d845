"""Staging tables: raw records of every source, parsed by DuckDB, before projection.

Each source is read either on the *fast path* (DuckDB's own parallel NDJSON reader, for
files whose every record turns out good) or on the *exact path* (record texts with their
line numbers, one chunk at a time), which every source falls back to as soon as it holds a
record that must be quarantined, so that each quarantined record is reported with its line.
Both paths parse with the same column layout and insert through the same SQL expressions.
Only the fields the analytics and profile views need are ever extracted: credentials,
metadata_admin, addresses and every other key stay unread.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import duckdb
import pyarrow as pa

Layout = Literal["identity", "combined", "demographics"]

DEMOGRAPHIC_FIELDS: tuple[str, ...] = (
    "age",
    "income",
    "gender",
    "household",
    "relationship_status",
    "parental_status",
)

_IDENTITY_FIELDS: dict[str, str] = {
    "id": "JSON",
    "state": "VARCHAR",
    "updated_at": "VARCHAR",
    "traits": "JSON",
    "metadata_public": "JSON",
}
_DEMOGRAPHICS_FIELDS: dict[str, str] = {"identity_id": "JSON"} | {f: "VARCHAR" for f in DEMOGRAPHIC_FIELDS}

#: The JSON structure each layout is parsed into (field -> DuckDB type or nested structure).
STRUCTURES: dict[Layout, dict[str, object]] = {
    "identity": dict(_IDENTITY_FIELDS),
    "combined": {"identity": dict(_IDENTITY_FIELDS), "demographics": "JSON"},
    "demographics": dict(_DEMOGRAPHICS_FIELDS),
}

#: Characters of a blank line, as DuckDB's NDJSON reader skips them: space, \t, \n, \v, \f, \r.
_BLANK = "' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)"

IDENTITY_STAGE = "_stage_identities"
DEMOGRAPHICS_STAGE = "_stage_demographics"

#: Trait keys the analytics dimensions come from (extracted once, at staging).
TRAIT_FIELDS: tuple[str, ...] = ("birthdate", "gender", "citizenship", "locale")

_STAGE_DDL = f"""
CREATE TABLE IF NOT EXISTS {IDENTITY_STAGE} (
    src INTEGER, line BIGINT, id VARCHAR, updated_at VARCHAR, state VARCHAR,
    {", ".join(f"trait_{f} VARCHAR" for f in TRAIT_FIELDS)},
    traits JSON, metadata_public JSON, demographics JSON);
CREATE TEMP TABLE IF NOT EXISTS {DEMOGRAPHICS_STAGE} (
    src INTEGER, line BIGINT, identity_id VARCHAR,
    {", ".join(f"{f} VARCHAR" for f in DEMOGRAPHIC_FIELDS)});
"""


def _sql_type(spec: object) -> str:
    if isinstance(spec, Mapping):
        return "STRUCT(" + ", ".join(f"{k} {_sql_type(v)}" for k, v in spec.items()) + ")"
    return str(spec)


def _string_key(expr: str) -> str:
    """A JSON value as text when it is a non-empty string, else NULL."""
    return f"CASE WHEN json_type({expr}) = 'VARCHAR' AND ({expr} ->> '$') <> '' THEN {expr} ->> '$' END"


def _select(layout: Layout, relation: str) -> tuple[str, str, str]:
    """(target table, query over the parsed columns of ``relation``, key of a good record).

    The query's first two columns are ``src`` and ``line``, as the relation gives them.
    """
    if layout == "demographics":
        fields = ", ".join(DEMOGRAPHIC_FIELDS)
        query = f"SELECT src, line, {_string_key('identity_id')} AS identity_id, {fields} FROM {relation}"
        return DEMOGRAPHICS_STAGE, query, "identity_id"
    prefix, demographics = ("identity.", "demographics") if layout == "combined" else ("", "NULL::JSON")
    paths = ", ".join(f"'$.{f}'" for f in TRAIT_FIELDS)
    traits = ", ".join(f"_t[{i + 1}] AS trait_{f}" for i, f in enumerate(TRAIT_FIELDS))
    query = f"""SELECT src, line, {_string_key(prefix + "id")} AS id, {prefix}updated_at AS updated_at,
        {prefix}state AS state, {traits}, {prefix}traits AS traits,
        {prefix}metadata_public AS metadata_public, {demographics} AS demographics
        FROM (SELECT *, json_extract_string({prefix}traits, [{paths}]) AS _t FROM {relation})"""
    return IDENTITY_STAGE, query, "id"


def _needs_line_numbers(layout: Layout) -> str:
    """Condition on a staged row meaning the source must be re-read on the exact path."""
    if layout == "demographics":
        return "identity_id IS NULL"
    if layout == "combined":
        return "id IS NULL OR (demographics IS NOT NULL AND json_type(demographics) NOT IN ('OBJECT', 'NULL'))"
    return "id IS NULL"


class SourceInfo(Protocol):
    """What staging needs to know of an input: its name in messages and its record layout."""

    @property
    def label(self) -> str: ...

    @property
    def layout(self) -> Layout: ...


@dataclass(frozen=True)
class StreamSource:
    """A remote input (an API endpoint), named by its URL without credentials."""

    label: str
    layout: Layout


@dataclass
class StagedSource:
    """One input being staged: its index, records read and records quarantined so far."""

    src: int
    source: SourceInfo
    read: int = 0
    quarantined: int = 0
    exact: bool = False


@dataclass
class BadRecord:
    """A record the exact path could not stage; its text is redacted before it is kept."""

    line: int
    text: str | None


class Staging:
    """The staging tables of one load, in the Dataset's DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        con.execute(_STAGE_DDL)

    def fast_ndjson(self, src: int, path: str, compressed: bool, layout: Layout) -> int | None:
        """Stage a whole NDJSON file with DuckDB's reader; None if it needs the exact path.

        Returns the number of records read (DuckDB skips blank lines, as the exact path
        does). A line DuckDB cannot parse as an object makes it raise, and a record without
        a usable key stages with a NULL key: either sends the source to the exact path, as
        does a record over DuckDB's default object size (16 MB; raising the limit slows every
        read by a fifth), since the exact path has no such limit.
        DuckDB's reader is parallel only without ``ignore_errors``, hence this design.
        """
        columns = {k: _sql_type(v) for k, v in STRUCTURES[layout].items()}
        literal = path.replace("'", "''")
        reader = (
            f"(SELECT {src} AS src, NULL::BIGINT AS line, * FROM read_ndjson('{literal}', columns={columns!r}, "
            f"format='newline_delimited', records=true, "
            f"compression='{'gzip' if compressed else 'none'}'))"
        )
        table, query, _ = _select(layout, reader)
        try:
            self.con.execute(f"INSERT INTO {table} {query}")
        except (duckdb.Error, UnicodeDecodeError):  # DuckDB may quote a cut-off character in its message
            self.discard(src)
            return None
        read, bad = self.con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {_needs_line_numbers(layout)}) FROM {table} WHERE src = ?",
            [src],
        ).fetchall()[0]
        if bad:
            self.discard(src)
            return None
        return int(read)

    def exact_arrow(self, src: int, lines: pa.Array, records: pa.Array, layout: Layout) -> tuple[int, list[BadRecord]]:
        """Stage one chunk of record texts given as Arrow arrays (line numbers, texts)."""
        self.con.register("_chunk", pa.table({"line": lines, "record": records}))
        try:
            return self.exact(src, "_chunk", layout)
        finally:
            self.con.unregister("_chunk")

    def exact(self, src: int, relation: str, layout: Layout) -> tuple[int, list[BadRecord]]:
        """Stage the records of a relation with columns ``line`` and ``record`` (JSON text).

        Returns (records read, bad records). Blank records are not records and are skipped.
        """
        structure = json.dumps(STRUCTURES[layout]).replace("'", "''")
        parsed = f"(SELECT {src} AS src, line, unnest(try(from_json(record, '{structure}'))) FROM _records)"
        table, query, key = _select(layout, parsed)
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _records AS SELECT line, record FROM {relation}
            WHERE trim(record, {_BLANK}) <> ''"""
        )
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE _parsed AS {query}")
        self.con.execute(f"INSERT INTO {table} SELECT * FROM _parsed WHERE {key} IS NOT NULL")
        read = self.con.execute("SELECT count(*) FROM _records").fetchall()[0][0]
        bad = [
            BadRecord(int(line), record)
            for line, record in self.con.execute(
                f"""SELECT r.line, r.record FROM _records r
                WHERE NOT EXISTS (SELECT 1 FROM _parsed p WHERE p.line = r.line AND p.{key} IS NOT NULL)
                ORDER BY r.line"""
            ).fetchall()
        ]
        self.con.execute("DROP TABLE _parsed")
        self.con.execute("DROP TABLE _records")
        return int(read), bad

    def discard(self, src: int) -> None:
        """Forget everything staged from one source (before re-reading it)."""
        for table in (IDENTITY_STAGE, DEMOGRAPHICS_STAGE):
            self.con.execute(f"DELETE FROM {table} WHERE src = ?", [src])
