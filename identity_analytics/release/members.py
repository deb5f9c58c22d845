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
    """The membership-pattern classes of the lists released so far (in the Dataset's DuckDB)."""

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
            self.add(listed.table(), listed.release, listed.label)

    def check(self, members: pa.Table, k: int, what: str, lists: Sequence[MemberList]) -> None:
        """Refuse (:class:`PrivacyError`) a new list whose pieces would hold 1 to k-1 people."""
        self._stage(members)
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

    def add(self, members: pa.Table, release: int, label: str) -> None:
        """Fold in a list that was released."""
        self._stage(members)
        tag = _tag(release, len(self.known))
        con = self.con
        con.execute(f"UPDATE {_SIZES} SET n = n - d.inside FROM {_DELTA} d WHERE {_SIZES}.pattern = d.pattern")
        con.execute(
            f"INSERT INTO {_SIZES} SELECT CASE WHEN pattern IS NULL THEN {tag} ELSE xor(pattern, {tag}) END, inside "
            f"FROM {_DELTA}"
        )
        con.execute(f"DELETE FROM {_SIZES} WHERE n = 0")
        con.execute(
            f"UPDATE {_PATTERNS} SET pattern = xor(pattern, {tag}) FROM {_NEW} n WHERE {_PATTERNS}.member = n.member"
        )
        con.execute(f"INSERT INTO {_PATTERNS} SELECT member, {tag} FROM {_NEW} ANTI JOIN {_PATTERNS} USING (member)")
        self.known.append((release, label))

    # ---------------------------------------------------------------------------------------

    def _stage(self, members: pa.Table) -> None:
        """The list's distinct members, and per existing pattern (null: in no list yet) how many it holds."""
        con = self.con
        con.register("_ia_members_arrow", members)
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {_NEW} AS SELECT DISTINCT member FROM _ia_members_arrow")
        finally:
            con.unregister("_ia_members_arrow")
        con.execute(
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
