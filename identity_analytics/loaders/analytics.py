"""Input already in the analytics layout (``pseudonym`` and the dimensions): an Arrow table or
Parquet files, checked column by column and value by value before anything is counted.

Any other column is refused (it could hold a direct identifier), as are null values, values
outside each dimension's categories and pseudonyms that are not HMAC-SHA256 hex digests.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from identity_analytics.errors import LoadError
from identity_analytics.schema import (
    ANALYTICS_COLUMNS,
    ANALYTICS_TABLE,
    MINORS_DDL,
    PROFILE_TABLE,
    enum_type,
    sql_literal,
)
from identity_analytics.vocabulary import DIMENSIONS, Vocabulary

_TRY_ENUM_COLUMNS = ", ".join(
    "pseudonym::VARCHAR AS pseudonym" if c == "pseudonym" else f"TRY_CAST({c}::VARCHAR AS {enum_type(c)}) AS {c}"
    for c in ANALYTICS_COLUMNS
)
#: Rows whose pseudonym is not 64 lowercase hex digits (HMAC-SHA256).
_PSEUDONYM_CHECK = "count(*) FILTER (WHERE NOT regexp_full_match(coalesce(pseudonym::VARCHAR, ''), '[0-9a-f]{64}'))"


_PROFILE_DDL = f"""CREATE TABLE IF NOT EXISTS {PROFILE_TABLE} (
    id VARCHAR, state VARCHAR, traits JSON, metadata_public JSON)"""


def load_arrow(con: duckdb.DuckDBPyConnection, table: pa.Table, vocabulary: Vocabulary) -> None:
    """The analytics table of ``con`` from ``table`` (one typed copy), with empty profile and minors tables."""
    con.register("_input", table)
    _check_analytics_columns(table.column_names)
    # one typed copy; values outside the categories become NULL there, which is cheap to
    # count on ENUM columns (the input is only read again to name a bad value)
    con.execute(f"CREATE TABLE {ANALYTICS_TABLE} AS SELECT {_TRY_ENUM_COLUMNS} FROM _input")
    nulls = ", ".join(f"count(*) FILTER (WHERE {c} IS NULL)" for c in DIMENSIONS)
    if any(con.execute(f"SELECT {_PSEUDONYM_CHECK}, {nulls} FROM {ANALYTICS_TABLE}").fetchall()[0]):
        _check_analytics_layout(con, "_input", table.column_names, vocabulary)
    con.unregister("_input")
    con.execute(_PROFILE_DDL)
    con.execute(MINORS_DDL)


def load_analytics_parquet(con: duckdb.DuckDBPyConnection, path: str, vocabulary: Vocabulary) -> int:
    """The analytics table of ``con`` as a view over the Parquet files ``path`` (a glob allowed),
    checked in one streaming pass; its number of rows."""
    relation = f"read_parquet({sql_literal(path)})"
    try:
        names = [c[0] for c in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
        _check_analytics_layout(con, relation, names, vocabulary)
        con.execute(f"CREATE VIEW {ANALYTICS_TABLE} AS SELECT {', '.join(ANALYTICS_COLUMNS)} FROM {relation}")
        (rows,) = con.execute(f"SELECT count(*) FROM {ANALYTICS_TABLE}").fetchall()[0]
        con.execute(_PROFILE_DDL)
        con.execute(MINORS_DDL)
    except duckdb.Error as error:
        raise LoadError(f"cannot read {path}: {type(error).__name__} while reading Parquet", source=path) from None
    return int(rows)


def _check_analytics_layout(
    con: duckdb.DuckDBPyConnection, relation: str, names: list[str], vocabulary: Vocabulary
) -> None:
    """Refuse a relation that is not exactly the analytics layout with in-vocabulary values."""
    _check_analytics_columns(names)
    checks = ", ".join(
        f"count(*) FILTER (WHERE {c} IS NULL OR TRY_CAST({c}::VARCHAR AS {enum_type(c)}) IS NULL), "
        f"any_value({c}::VARCHAR) FILTER (WHERE TRY_CAST({c}::VARCHAR AS {enum_type(c)}) IS NULL)"
        for c in DIMENSIONS
    )
    row = con.execute(f"SELECT {_PSEUDONYM_CHECK}, {checks} FROM {relation}").fetchall()[0]
    if row[0]:
        raise LoadError(f"{row[0]} rows have a pseudonym that is not 64 lowercase hex digits (HMAC-SHA256)")
    for i, dim in enumerate(DIMENSIONS):
        bad, example = row[1 + 2 * i], row[2 + 2 * i]
        if bad:
            shown = "null" if example is None else repr(example)
            raise LoadError(
                f"column {dim!r} has {bad} values outside its categories (e.g. {shown}); "
                f"allowed: {_shorten(vocabulary.categories(dim))}"
            )


def _check_analytics_columns(names: list[str]) -> None:
    """Refuse columns other than exactly the analytics layout (another could hold a direct identifier)."""
    missing = [c for c in ANALYTICS_COLUMNS if c not in names]
    extra = [c for c in names if c not in ANALYTICS_COLUMNS]
    if missing or extra:
        raise LoadError(
            f"the table is not in the analytics layout: missing columns {missing}, unexpected columns {extra}; "
            f"it must have exactly {list(ANALYTICS_COLUMNS)} (load raw records with Dataset.from_files)"
        )


def _shorten(values: tuple[str, ...], limit: int = 12) -> str:
    shown = ", ".join(values[:limit])
    return f"{shown}, … ({len(values)} in all)" if len(values) > limit else shown
