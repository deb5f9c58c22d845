"""The privacy projection: staged records -> analytics table + profile store.

One code path for every source. It keeps the latest record of each identity, joins
demographics, maps raw values onto the vocabulary (``undetermined``/``other``), derives age
bands from birthdates at the reference date, and replaces the identity id by its pseudonym.
The analytics table gets the pseudonym and dimensions only; the profile store gets the raw
id with traits and metadata_public, for profile views. Nothing else of a record survives.

Everything runs as a few set-based DuckDB statements; duplicates are resolved only among
the ids that have them.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field

import duckdb

from identity_analytics.loaders.staging import DEMOGRAPHIC_FIELDS, DEMOGRAPHICS_STAGE, IDENTITY_STAGE, TRAIT_FIELDS
from identity_analytics.policy import PrivacyPolicy
from identity_analytics.schema import (
    ANALYTICS_TABLE,
    MINIMUM_MEMBER_AGE,
    MINORS_TABLE,
    PROFILE_TABLE,
    declared_type,
    enum_type,
    pseudonym_sql,
    sql_literal,
)
from identity_analytics.vocabulary import (
    AGE_BAND_STARTS,
    DIMENSIONS,
    MAX_PLAUSIBLE_AGE,
    OTHER,
    UNDETERMINED,
    Vocabulary,
)

#: Longest raw value kept in the load report's ``other_values``.
MAX_OTHER_VALUE_CHARS = 100

_TAG = "replace(trim({x}), '_', '-')"
_LOCALE = f"""CASE
    WHEN len(string_split({_TAG}, '-')) = 1 THEN lower(trim({{x}}))
    WHEN len(string_split({_TAG}, '-')) = 2
        THEN lower(split_part({_TAG}, '-', 1)) || '-' || upper(split_part({_TAG}, '-', 2))
    WHEN len(string_split({_TAG}, '-')) = 3 AND length(split_part({_TAG}, '-', 2)) = 4
        THEN lower(split_part({_TAG}, '-', 1)) || '-' || upper(split_part({_TAG}, '-', 3))
    ELSE {{x}} END"""

#: Normalisation tried when a value is not a category as it stands: these codes are
#: case-insensitive by their standards (ISO 3166, BCP 47), locales may use ``_``, and a
#: script subtag is dropped (``zh-Hant-TW`` counts as ``zh-TW``).
_NORMALISED: dict[str, str] = {"citizenship": "upper(trim({x}))", "locale": _LOCALE}

#: Raw value of each dimension other than age, over the columns of ``_JOINED``.
_RAW: dict[str, str] = {
    "state": "raw_state",
    "income": "d_income",
    "gender": "coalesce(d_gender, trait_gender)",
    "household": "d_household",
    "relationship_status": "d_relationship_status",
    "parental_status": "d_parental_status",
    "citizenship": "trait_citizenship",
    "locale": "trait_locale",
}


def _in_vocabulary(dimension: str, value: str) -> str:
    """SQL: ``value`` as a declared category of ``dimension`` (after normalisation), else NULL."""
    direct = f"TRY_CAST({value} AS {declared_type(dimension)})"
    if dimension in _NORMALISED:
        normalised = _NORMALISED[dimension].format(x=value)
        return f"coalesce({direct}, TRY_CAST({normalised} AS {declared_type(dimension)}))::VARCHAR"
    return f"{direct}::VARCHAR"


def _band(years: str) -> str:
    whens = " ".join(f"WHEN {years} >= {start} THEN '{name}'" for name, start in reversed(AGE_BAND_STARTS))
    return f"CASE WHEN {years} IS NULL OR {years} < 0 OR {years} > {MAX_PLAUSIBLE_AGE} THEN NULL {whens} END"


def completed_years(birthdate: str) -> str:
    """SQL: completed years from the DATE expression ``birthdate`` to ``$reference_date``
    (-1 for a future birthdate). A birthday counts from its month and day, so someone born
    on 29 February completes a year on 1 March in common years (DuckDB's ``date_sub`` counts
    28 February)."""
    ref = "(year($reference_date) * 10000 + month($reference_date) * 100 + day($reference_date))"
    born = f"(year({birthdate}) * 10000 + month({birthdate}) * 100 + day({birthdate}))"
    return f"CASE WHEN {birthdate} > $reference_date THEN -1 ELSE ({ref} - {born}) // 10000 END"


#: Completed years from the trait birthdate to the reference date (computed once per row).
_YEARS = completed_years("TRY_CAST(trait_birthdate AS DATE)")


def _category(dimension: str) -> str:
    """SQL: the category of one identity in ``dimension``, over the columns of ``_JOINED``."""
    if dimension == "age":
        # a whole number of years, also as a float (30.0: JSON numbers, pandas columns with NaN)
        whole = "TRY_CAST(TRY_CAST(d_age AS DOUBLE) AS INTEGER)"
        numeric = f"CASE WHEN regexp_full_match(trim(d_age), '[0-9]{{1,3}}(\\.0+)?') THEN {_band(whole)} END"
        mapped = f"""CASE WHEN d_age IS NOT NULL THEN coalesce({_in_vocabulary("age", "d_age")}, {numeric}, '{OTHER}')
            WHEN trait_birthdate IS NULL THEN '{UNDETERMINED}'
            ELSE coalesce({_band("_years")}, '{OTHER}') END"""
    else:
        raw = _RAW[dimension]
        known = _in_vocabulary(dimension, raw)
        mapped = f"CASE WHEN {raw} IS NULL THEN '{UNDETERMINED}' ELSE coalesce({known}, '{OTHER}') END"
    return f"({mapped})::{enum_type(dimension)}"


def _reported(dimension: str, vocabulary: Vocabulary) -> str:
    """SQL: the raw value of an identity as the load report shows it when counted as ``other``."""
    if dimension == "age":
        return (
            "CASE WHEN d_age IS NOT NULL THEN d_age WHEN TRY_CAST(trait_birthdate AS DATE) IS NULL "
            "THEN 'birthdate: not a date (YYYY-MM-DD)' ELSE 'birthdate: implausible age' END"
        )
    raw = _RAW[dimension]
    if OTHER in vocabulary.declared(dimension):  # a declared "other" is no out-of-vocabulary value
        return f"CASE WHEN {raw} <> '{OTHER}' THEN {raw} END"
    return raw


@dataclass
class ProjectionCounts:
    """Per source index: staged records, loaded, duplicates; plus quarantined demographics."""

    identity_staged: dict[int, int] = field(default_factory=dict)
    identity_loaded: dict[int, int] = field(default_factory=dict)
    demographics_staged: dict[int, int] = field(default_factory=dict)
    demographics_loaded: dict[int, int] = field(default_factory=dict)
    unknown_identity: list[tuple[int, int | None, dict[str, str | None]]] = field(default_factory=list)
    embedded_not_object: list[tuple[int, int | None]] = field(default_factory=list)
    embedded_duplicates: dict[int, int] = field(default_factory=dict)
    other_values: dict[str, dict[str, int]] = field(default_factory=dict)


def _by_src(con: duckdb.DuckDBPyConnection, query: str) -> dict[int, int]:
    return {int(src): int(n) for src, n in con.execute(query).fetchall()}


def count_duplicates(con: duckdb.DuckDBPyConnection, table: str, key: str) -> int:
    """Rows of ``table`` whose ``key`` an earlier row already has."""
    return int(con.execute(f"SELECT count(*) - count(DISTINCT {key}) FROM {table}").fetchall()[0][0])


def _drop_duplicates(
    con: duckdb.DuckDBPyConnection, table: str, key: str, order: str, duplicates: int | None = None
) -> str | None:
    """Delete all but the first row (by ``order``) of each ``key``; returns a table of the losers.

    ``duplicates``: the table's :func:`count_duplicates`, when the caller already knows it.
    """
    if duplicates is None:
        duplicates = count_duplicates(con, table, key)
    if not duplicates:
        return None
    losers = f"_losers_{table.strip('_')}"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {losers} AS
        SELECT _row FROM (
            SELECT rowid AS _row, row_number() OVER (PARTITION BY {key} ORDER BY {order}) AS _rank
            FROM {table} WHERE {key} IN (SELECT {key} FROM {table} GROUP BY {key} HAVING count(*) > 1))
        WHERE _rank > 1"""
    )
    return losers


_UPDATED = "TRY_CAST(updated_at AS TIMESTAMPTZ)"


def sources_needing_line_order(con: duckdb.DuckDBPyConnection, *, identities: bool = True) -> set[int]:
    """Sources read on the fast path (no line numbers) that hold records only line order can rank.

    Those are duplicate identities with the same ``updated_at`` in one source, and duplicate
    demographics in one source (the last one read wins): such sources are re-read on the
    exact path, which numbers the lines. Duplicates across sources are ranked by source.
    ``identities=False`` checks the demographics only (the identities already deduplicated).
    """
    parts = []
    tables = ((IDENTITY_STAGE, "id", f"id, {_UPDATED}"), (DEMOGRAPHICS_STAGE, "identity_id", "identity_id"))
    for table, id_key, key in tables if identities else tables[1:]:
        # the common case has no duplicate id at all, and skips the checks below
        duplicates = count_duplicates(con, table, id_key)
        if duplicates and key != id_key:
            (duplicates,) = con.execute(f"SELECT count(*) - count(DISTINCT ({key})) FROM {table}").fetchall()[0]
        if duplicates:
            parts.append(f"SELECT src FROM {table} WHERE line IS NULL GROUP BY src, {key} HAVING count(*) > 1")
    if not parts:
        return set()
    rows = con.execute(f"SELECT DISTINCT src FROM ({' UNION ALL '.join(parts)})").fetchall()
    return {int(src) for (src,) in rows}


def select_winners(con: duckdb.DuckDBPyConnection, counts: ProjectionCounts, duplicates: int | None = None) -> None:
    """Keep the latest record of each identity id (latest ``updated_at``; ties: latest read).

    Demographics embedded in the records that lose count as demographics duplicates.
    ``duplicates``: the staged identities' :func:`count_duplicates`, when already known.
    """
    counts.identity_staged = _by_src(con, f"SELECT src, count(*) FROM {IDENTITY_STAGE} GROUP BY src")
    losers = _drop_duplicates(
        con, IDENTITY_STAGE, "id", f"{_UPDATED} DESC NULLS LAST, src DESC, line DESC NULLS LAST", duplicates
    )
    if losers is not None:
        counts.embedded_duplicates = _by_src(
            con,
            f"""SELECT src, count(*) FROM {IDENTITY_STAGE}
            WHERE rowid IN (SELECT _row FROM {losers}) AND json_type(demographics) = 'OBJECT' GROUP BY src""",
        )
        con.execute(f"DELETE FROM {IDENTITY_STAGE} WHERE rowid IN (SELECT _row FROM {losers})")
        con.execute(f"DROP TABLE {losers}")
    counts.identity_loaded = _by_src(con, f"SELECT src, count(*) FROM {IDENTITY_STAGE} GROUP BY src")


def stage_embedded_demographics(con: duckdb.DuckDBPyConnection, counts: ProjectionCounts) -> None:
    """Demographics carried by the loaded combined records go to the demographics staging."""
    counts.embedded_not_object = [
        (int(src), None if line is None else int(line))
        for src, line in con.execute(
            f"""SELECT src, line FROM {IDENTITY_STAGE} WHERE demographics IS NOT NULL
            AND json_type(demographics) NOT IN ('OBJECT', 'NULL') ORDER BY src, line"""
        ).fetchall()
    ]
    structure = sql_literal(json.dumps(dict.fromkeys(DEMOGRAPHIC_FIELDS, "VARCHAR")))
    fields = ", ".join(f"d.{f}" for f in DEMOGRAPHIC_FIELDS)
    con.execute(
        f"""INSERT INTO {DEMOGRAPHICS_STAGE}
        SELECT src, line, id, {fields} FROM (
            SELECT src, line, id, from_json(demographics, {structure}) AS d FROM {IDENTITY_STAGE}
            WHERE json_type(demographics) = 'OBJECT')"""
    )


def find_unknown_identities(con: duckdb.DuckDBPyConnection) -> list[tuple[int, int | None, dict[str, str | None]]]:
    """Staged demographics whose identity was not loaded: (src, line, fields)."""
    if not con.execute(f"SELECT EXISTS (SELECT 1 FROM {DEMOGRAPHICS_STAGE})").fetchall()[0][0]:
        return []  # without demographics, the anti-join below would still hash every identity id
    rows = con.execute(
        f"""SELECT src, line, identity_id, {", ".join(DEMOGRAPHIC_FIELDS)} FROM {DEMOGRAPHICS_STAGE} d
        WHERE NOT EXISTS (SELECT 1 FROM {IDENTITY_STAGE} s WHERE s.id = d.identity_id)
        ORDER BY src, line"""
    ).fetchall()
    names = ("identity_id", *DEMOGRAPHIC_FIELDS)
    return [(int(r[0]), None if r[1] is None else int(r[1]), dict(zip(names, r[2:], strict=True))) for r in rows]


def select_demographics(con: duckdb.DuckDBPyConnection, counts: ProjectionCounts) -> None:
    """Drop demographics of unknown identities, then keep the last one read per identity."""
    counts.demographics_staged = _by_src(con, f"SELECT src, count(*) FROM {DEMOGRAPHICS_STAGE} GROUP BY src")
    con.execute(
        f"""DELETE FROM {DEMOGRAPHICS_STAGE} d
        WHERE NOT EXISTS (SELECT 1 FROM {IDENTITY_STAGE} s WHERE s.id = d.identity_id)"""
    )
    losers = _drop_duplicates(con, DEMOGRAPHICS_STAGE, "identity_id", "src DESC, line DESC NULLS LAST")
    if losers is not None:
        con.execute(f"DELETE FROM {DEMOGRAPHICS_STAGE} WHERE rowid IN (SELECT _row FROM {losers})")
        con.execute(f"DROP TABLE {losers}")
    counts.demographics_loaded = _by_src(con, f"SELECT src, count(*) FROM {DEMOGRAPHICS_STAGE} GROUP BY src")


def _present(column: str) -> str:
    """SQL: the text of ``column``, or NULL when it is empty or blank (a missing value)."""
    return f"CASE WHEN trim({column}) <> '' THEN {column} END"


#: Selected identities with their raw dimension values (``raw_state``, ``trait_``, demographics as
#: ``d_``; empty text counts as missing) and age in completed years (``_years``).
_JOINED = f"""(SELECT s.id, {_present("s.state")} AS raw_state,
    {", ".join(f"{_present(f's.trait_{t}')} AS trait_{t}" for t in TRAIT_FIELDS)},
    {", ".join(f"{_present(f'd.{f}')} AS d_{f}" for f in DEMOGRAPHIC_FIELDS)}, {_YEARS} AS _years
    FROM {IDENTITY_STAGE} s LEFT JOIN {DEMOGRAPHICS_STAGE} d ON d.identity_id = s.id)"""


def project(
    con: duckdb.DuckDBPyConnection,
    policy: PrivacyPolicy,
    vocabulary: Vocabulary,
    reference_date: datetime.date,
    counts: ProjectionCounts,
) -> None:
    """Build the analytics table and the profile store from the selected records.

    One pass computes pseudonyms and categories, and keeps the raw value of each ``other``
    (for the load report) in side columns that are then dropped.
    """
    ipad, opad = policy.hmac_pads()
    categories = ", ".join(f"{_category(d)} AS {d}" for d in DIMENSIONS)
    # the raw value is only computed where the category is ``other`` (CASE evaluates lazily)
    others = ", ".join(
        f"CASE WHEN {d} = '{OTHER}' THEN left({_reported(d, vocabulary)}, {MAX_OTHER_VALUE_CHARS}) END AS _other_{d}"
        for d in DIMENSIONS
    )
    con.execute(
        f"""CREATE OR REPLACE TABLE {ANALYTICS_TABLE} AS
        SELECT pseudonym, {", ".join(DIMENSIONS)}, {others}, _minor FROM (
            SELECT {pseudonym_sql('id')} AS pseudonym, {categories},
                * EXCLUDE (id, _years), coalesce(_years < {MINIMUM_MEMBER_AGE}, false) AS _minor
            FROM {_JOINED})""",
        {"ipad": ipad, "opad": opad, "reference_date": reference_date},
    )
    counts.other_values = _other_values(con)
    # minors by birthdate, as collect_minors finds them, without a second pass of pseudonyms
    con.execute(f"CREATE OR REPLACE TABLE {MINORS_TABLE} AS SELECT pseudonym FROM {ANALYTICS_TABLE} WHERE _minor")
    for column in [*(f"_other_{dim}" for dim in DIMENSIONS), "_minor"]:
        con.execute(f"ALTER TABLE {ANALYTICS_TABLE} DROP COLUMN {column}")
    con.execute(
        f"""CREATE OR REPLACE VIEW {PROFILE_TABLE} AS
        SELECT id, state, traits, metadata_public FROM {IDENTITY_STAGE}"""
    )
    con.execute(f"DROP TABLE {DEMOGRAPHICS_STAGE}")


def collect_minors(
    con: duckdb.DuckDBPyConnection,
    policy: PrivacyPolicy,
    reference_date: datetime.date,
    relation: str,
    birthdate: str,
) -> None:
    """Table ``minors``: pseudonyms of the identities of ``relation`` (columns ``id`` and the
    ``birthdate`` expression) younger than MINIMUM_MEMBER_AGE at ``reference_date``."""
    ipad, opad = policy.hmac_pads()
    con.execute(
        f"""CREATE OR REPLACE TABLE {MINORS_TABLE} AS
        SELECT {pseudonym_sql('id')} AS pseudonym FROM {relation}
        WHERE {completed_years(f'TRY_CAST({birthdate} AS DATE)')} < {MINIMUM_MEMBER_AGE}""",
        {"ipad": ipad, "opad": opad, "reference_date": reference_date},
    )


def _other_values(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    """Raw values counted as ``other``, with counts, per dimension (one grouped pass)."""
    columns = [f"_other_{d}" for d in DIMENSIONS]
    rows = con.execute(
        f"""SELECT {", ".join(columns)}, count(*) FROM {ANALYTICS_TABLE}
        WHERE {" OR ".join(f"{c} IS NOT NULL" for c in columns)}
        GROUP BY GROUPING SETS ({", ".join(f"({c})" for c in columns)})"""
    ).fetchall()
    result: dict[str, dict[str, int]] = {}
    for row in rows:
        for dim, value in zip(DIMENSIONS, row[:-1], strict=True):
            if value is not None:
                result.setdefault(dim, {})[value] = int(row[-1])
    return {dim: dict(sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))) for dim, values in sorted(result.items())}
