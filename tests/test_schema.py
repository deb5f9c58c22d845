"""The schema helpers: the pseudonym SQL is the policy's HMAC, literals survive any quote."""

from __future__ import annotations

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

import identity_analytics as ia
from identity_analytics.schema import ANALYTICS_COLUMNS, pseudonym_sql, sql_literal
from identity_analytics.vocabulary import DIMENSIONS


@settings(max_examples=50, deadline=None)
@given(ids=st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=20), key=st.binary(min_size=1, max_size=100))
def test_the_pseudonym_sql_computes_the_policys_hmac(ids: list[str], key: bytes) -> None:
    policy = ia.PrivacyPolicy(pseudonym_key=key)
    ipad, opad = policy.hmac_pads()
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, id VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(ids)))
    rows = con.execute(f"SELECT i, {pseudonym_sql('id')} FROM t ORDER BY i", {"ipad": ipad, "opad": opad}).fetchall()
    assert [p for _, p in rows] == [policy.pseudonym(i) for i in ids]
    assert key.hex() not in pseudonym_sql("id")  # the statement names parameters, never the key


@given(st.text(max_size=60))
def test_a_sql_literal_reads_back_as_the_same_text(text: str) -> None:
    text = text.replace("\x00", "")  # DuckDB strings hold no NUL
    assert duckdb.connect().execute(f"SELECT {sql_literal(text)}").fetchall()[0][0] == text


def test_the_analytics_layout_is_the_pseudonym_and_every_dimension() -> None:
    assert ("pseudonym", *DIMENSIONS) == ANALYTICS_COLUMNS
