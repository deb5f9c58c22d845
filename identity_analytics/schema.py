"""The shape of the data in DuckDB, shared by every layer above: table names, the analytics
layout, the ENUM types of the dimensions, one SQL string-literal helper, the pseudonym SQL.

Loaders write these tables, the store saves them, analyses and the release audit read them:
each names them from here, so none of them has to know the others.
"""

from __future__ import annotations

import duckdb

from identity_analytics.vocabulary import DIMENSIONS, Vocabulary

#: One row per identity counted: its pseudonym and its category of every dimension.
ANALYTICS_TABLE = "identities"
#: Raw ids with traits and metadata_public, for profile views only (never analytics).
PROFILE_TABLE = "profiles"
#: Pseudonyms of identities younger than MINIMUM_MEMBER_AGE by birthdate at the reference date,
#: kept beside the analytics table (and in the store) so member lists can leave them out
#: without recomputing pseudonyms, whatever key the store is later opened with.
MINORS_TABLE = "minors"
MINIMUM_MEMBER_AGE = 16
MINORS_DDL = f"CREATE TABLE IF NOT EXISTS {MINORS_TABLE} (pseudonym VARCHAR)"
#: The columns of the analytics table, in order.
ANALYTICS_COLUMNS: tuple[str, ...] = ("pseudonym", *DIMENSIONS)


def sql_literal(value: str) -> str:
    """A SQL string literal of ``value`` (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def pseudonym_sql(column: str) -> str:
    """SQL of the HMAC-SHA256 pseudonym of ``column``, with the key's pads bound as the
    parameters ``$ipad`` and ``$opad`` (see :meth:`PrivacyPolicy.hmac_pads`): the key itself
    never appears in a statement."""
    return f"sha256($opad || unhex(sha256($ipad || encode({column}))))"


def enum_type(dimension: str) -> str:
    """Name of the DuckDB ENUM type holding every category of a dimension."""
    return f"ia_{dimension}"


def declared_type(dimension: str) -> str:
    """Name of the DuckDB ENUM type of the categories a source may declare for a dimension."""
    return f"ia_{dimension}_declared"


def create_enum_types(con: duckdb.DuckDBPyConnection, vocabulary: Vocabulary) -> None:
    """Declare one ENUM per dimension (all categories) and one of its declared categories."""
    for dim in DIMENSIONS:
        for name, values in (
            (enum_type(dim), vocabulary.categories(dim)),
            (declared_type(dim), vocabulary.declared(dim)),
        ):
            con.execute(f"DROP TYPE IF EXISTS {name}")
            con.execute(f"CREATE TYPE {name} AS ENUM ({', '.join(sql_literal(v) for v in values)})")
