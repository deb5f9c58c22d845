"""Member lists released together: every class of people in exactly the same lists holds 0
or at least k people.

The attacker holds every released list of pseudonyms and can intersect and subtract them
(A \\ B, A ∩ B \\ C, ...): the smallest pieces are the *membership-pattern classes*, the people
who are in exactly the same set of lists. A new list splits each class in two (in it, not in
it) and adds its people who were in no list yet; it is released only if every piece is 0 or
at least k. Classes are kept in DuckDB, each identified by the XOR of random 64-bit tags of
its lists (a new list's pieces are new patterns), so a new list costs one join of its members.
Members are the first 128 bits of their pseudonyms (an HMAC: as good as random).
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from identity_analytics.errors import PrivacyError
from identity_analytics.release.ledger import MemberList

#: SQL of a member key from a row's pseudonym.
MEMBER_SQL = "unhex(left(pseudonym, 32))"
_PATTERNS = "_ia_member_pattern"
_SIZES = "_ia_pattern_size"
_NEW = "_ia_new_members"
_DELTA = "_ia_pattern_delta"


def _tag(release: int, index: int) -> str:
    return f"hash('ia-member-list', {release}, {index})"


class MemberPatterns:
    """The membership-pattern classes of the lists released so far (in the Dataset's DuckDB).

    A list is first *staged* (its members in a temporary table, straight from the query that
    lists them, or from a list the ledger kept), then checked, then added: the patterns are
    rewritten by one hash join of the staged members with them (no row-by-row update).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.known: list[tuple[int, str]] = []  # (release, label) of each list folded in
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_PATTERNS} (member BLOB, pattern UBIGINT)")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_SIZES} (pattern UBIGINT, n BIGINT)")

    def sync(self, lists: Sequence[MemberList]) -> None:
        """Fold in the lists of the ledger not yet here (all again after a reset)."""
        seen = [(m.release, m.label) for m in lists]
        if seen[: len(self.known)] != self.known:
            self.__init__(self.con)  # type: ignore[misc]
        for listed in lists[len(self.known) :]:
            self.stage_table(listed.table())
            self.add(listed.release, listed.label)

    def stage_query(self, population_sql: str) -> None:
        """Stage the members of a population (a query with a ``pseudonym`` column, one row per identity)."""
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_NEW} AS SELECT {MEMBER_SQL} AS member FROM ({population_sql})"
        )
        self._delta()

    def stage_table(self, members: pa.Table) -> None:
        """Stage a list kept by the ledger (a ``member`` column)."""
        con = self.con
        con.register("_ia_members_arrow", members)
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {_NEW} AS SELECT DISTINCT member FROM _ia_members_arrow")
        finally:
            con.unregister("_ia_members_arrow")
        self._delta()

    def staged(self) -> pa.Table:
        """The staged members (a ``member`` column), as the ledger keeps them."""
        return self.con.sql(f"SELECT member FROM {_NEW}").to_arrow_table()

    def check(self, k: int, what: str, lists: Sequence[MemberList]) -> None:
        """Refuse (:class:`PrivacyError`) the staged list if its pieces would hold 1 to k-1 people."""
        rows = self.con.execute(
            f"""SELECT d.pattern, d.inside
            FROM {_DELTA} d LEFT JOIN {_SIZES} s USING (pattern)
            WHERE d.inside BETWEEN 1 AND $small OR (d.pattern IS NOT NULL AND s.n - d.inside BETWEEN 1 AND $small)
            LIMIT 1""",
            {"small": k - 1},
        ).fetchall()
        if not rows:
            return
        pattern, inside = rows[0]
        if pattern is None:
            piece = "people in no earlier list"
        else:
            piece = "people it shares with" if 0 < inside < k else "people it leaves out of"
            earlier = self._lists_of(pattern, lists)
            piece += f" {earlier}" if earlier else " earlier lists"
        raise PrivacyError(
            f"refused: {what} would set apart fewer than k={k} {piece}: the lists together would "
            "single them out; nothing was published"
        )

    def add(self, release: int, label: str) -> None:
        """Fold in the staged list (it was released)."""
        tag = _tag(release, len(self.known))
        con = self.con
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {_SIZES} AS
            SELECT pattern, sum(n)::BIGINT AS n FROM (
                SELECT s.pattern, s.n - coalesce(d.inside, 0) AS n FROM {_SIZES} s LEFT JOIN {_DELTA} d USING (pattern)
                UNION ALL
                SELECT CASE WHEN pattern IS NULL THEN {tag} ELSE xor(pattern, {tag}) END, inside FROM {_DELTA}
            ) GROUP BY pattern HAVING sum(n) > 0"""
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {_PATTERNS} AS
            SELECT coalesce(p.member, n.member) AS member,
                   CASE WHEN n.member IS NULL THEN p.pattern WHEN p.member IS NULL THEN {tag}
                        ELSE xor(p.pattern, {tag}) END AS pattern
            FROM {_PATTERNS} p FULL OUTER JOIN {_NEW} n USING (member)"""
        )
        self.known.append((release, label))

    # ---------------------------------------------------------------------------------------

    def _delta(self) -> None:
        """Per existing pattern (null: in no list yet), how many of the staged members it holds."""
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {_DELTA} AS SELECT p.pattern, count(*) AS inside
            FROM {_NEW} n LEFT JOIN {_PATTERNS} p USING (member) GROUP BY p.pattern"""
        )

    def _lists_of(self, pattern: int, lists: Sequence[MemberList]) -> str:
        """The labels of the lists one class is in (found from one of its members)."""
        rows = self.con.execute(f"SELECT member FROM {_PATTERNS} WHERE pattern = ? LIMIT 1", [pattern]).fetchall()
        if not rows:
            return ""
        example = pa.scalar(rows[0][0], pa.binary())
        labels = [m.label for m in lists if pc.any(pc.equal(m.table().column("member"), example)).as_py()]
        return ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
