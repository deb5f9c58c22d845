"""The release gate: every answer a Dataset publishes is audited with the ledger, then recorded.

A *session* holds the ledger (one transaction: the lock across processes) while one answer,
or a batch of them (a report), is audited:

* :meth:`Session.publish_cells` (cohort tables, breakdowns): the joint audit over the atoms
  of everything in the ledger, the session's earlier answers and the new cells. Cells whose
  publication would let an atom of 1 to k-1 people be narrowed below k are suppressed after
  all (one at a time, the smallest binding count first; the rows binding a narrow atom come
  from the duals of its LP; after eight tries for one atom, all its binding cells at once)
  until the audit passes; the caller hides them.
* :meth:`Session.publish_counts` (segment sizes, overlaps, risk totals): refused with
  :class:`PrivacyError` naming the earlier releases they would combine with.
* :meth:`Session.publish_members`: the membership-pattern check of
  :mod:`identity_analytics.release.members`, and the list's size as a count.

The session's answers are recorded together when it ends, also when it ends with an error
(a refusal records nothing of the refused answer, but what was handed out before it stays
recorded: the caller holds it). Only one session may be open on a ledger in a process (a
second Dataset over the same store, in the same thread, is refused until the first one's
block ends). The audit runs at the policy's k, which may not be below the highest k the
ledger's releases were audited at.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, TypeVar

import duckdb
import numpy as np
import numpy.typing as npt

from identity_analytics.errors import PrivacyError
from identity_analytics.release.atoms import AtomTable, count_atoms, data_fingerprint, snapshot_data
from identity_analytics.release.blocks import CURRENT_EPOCH, Block
from identity_analytics.release.joint import AuditBudgetExceeded, JointAuditor, Narrow
from identity_analytics.release.ledger import Ledger, MemberList, Transaction
from identity_analytics.release.members import MemberPatterns
from identity_analytics.release.problem import Atoms, InconsistentLedger, ReleaseProblem, build_problem

logger = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]
_ATOMS_KEPT = 4
#: cells suppressed one at a time for a narrow class before all the cells binding it are
_SINGLE_TRIES = 8


@dataclass
class DataVersion:
    """What the gate needs to know of the Dataset's data: its epoch (an id of its content, or
    :data:`CURRENT_EPOCH` for a ledger in memory), how to snapshot it into the ledger, and a
    check that it is still the data the ledger's store holds."""

    epoch: Callable[[], str] = lambda: CURRENT_EPOCH
    snapshot: Callable[[Path], None] | None = None
    still_current: Callable[[], None] = lambda: None

    @classmethod
    def of_connection(cls, con: duckdb.DuckDBPyConnection) -> DataVersion:
        """The data of a Dataset's own tables (loaded from files): fingerprinted when first
        needed, snapshotted by copying them."""
        return cls(epoch=lambda: data_fingerprint(con), snapshot=lambda folder: snapshot_data(con, folder))


@dataclass
class _Measures:
    """Time and work of the audits (for the benchmark and the audit record)."""

    audits: int = 0
    solves: int = 0
    iterations: int = 0
    atoms: int = 0
    classes: int = 0
    rows: int = 0
    #: wall time of the audits (atoms counted, LPs solved, member classes checked)
    seconds: float = 0.0


class ReleaseGate:
    """The gate of one Dataset: its ledger, its k, its pseudonym key's id and its data."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, ledger: Ledger, k: int, key_id: str, data: DataVersion | None = None
    ) -> None:
        self.con = con
        self.ledger = ledger
        self.k = k
        self.key_id = key_id
        self.data = data or DataVersion()
        self.measures = _Measures()
        self._atoms: dict[tuple[tuple[str, tuple[str, ...]], ...], Atoms] = {}
        self._patterns: MemberPatterns | None = None
        self._session: Session | None = None
        self._epoch: str | None = None

    @property
    def epoch(self) -> str:
        if self._epoch is None:
            self._epoch = self.data.epoch() if self.ledger.persistent else CURRENT_EPOCH
        return self._epoch

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """Hold the ledger for one answer or a batch; nested sessions join the open one."""
        if self._session is not None:
            yield self._session
            return
        committed: list[Callable[[], None]] = []
        try:
            with self.ledger.transaction() as transaction:
                self._check(transaction)
                transaction.k, transaction.key_id, transaction.epoch = self.k, self.key_id, self.epoch
                transaction.snapshot = self.data.snapshot
                session = Session(self, transaction, committed=committed)
                self._session = session
                try:
                    yield session
                finally:
                    self._session = None
                    transaction.label = "; ".join(dict.fromkeys(session.labels))
        finally:
            for done in committed:  # the answers recorded (also those before an error)
                done()

    def _check(self, transaction: Transaction) -> None:
        state = transaction.state
        if state.floor > self.k:
            raise PrivacyError(
                f"refused: {self.ledger.description} holds releases audited at k={state.floor}; a policy with "
                f"k={self.k} could publish what they protect. Use k >= {state.floor}"
            )
        if self.ledger.persistent and state.key_id not in (None, self.key_id):
            raise PrivacyError(
                f"refused: {self.ledger.description} was written under another pseudonym key, so its releases "
                "cannot be matched to these pseudonyms; use the key it was written with (or have the operator "
                "reset the ledger)"
            )
        if self.ledger.persistent:
            self.data.still_current()

    def atoms(self, blocks: Sequence[Block], epochs: dict[str, Path], table: AtomTable | None = None) -> Atoms:
        """Atoms over every dimension the blocks name, per epoch (kept for the next audits;
        read from ``table`` when it has them)."""
        needed: dict[str, set[str]] = {}
        for block in blocks:
            needed.setdefault(block.epoch, set()).update(block.dimensions())
        needed.setdefault(self.epoch, set())
        key = tuple(sorted((e, tuple(sorted(d))) for e, d in needed.items()))
        if key not in self._atoms:
            missing = [e for e in needed if e != self.epoch and e not in epochs]
            if missing:
                raise PrivacyError(
                    f"refused: {self.ledger.description} holds releases of data it has no snapshot of "
                    f"({', '.join(missing)}); they cannot be audited against, so nothing more is published"
                )
            if len(self._atoms) >= _ATOMS_KEPT:
                self._atoms.pop(next(iter(self._atoms)))
            self._atoms[key] = count_atoms(self.con, self.epoch, needed, epochs, table)
        return self._atoms[key]

    def patterns(self) -> MemberPatterns:
        if self._patterns is None:
            self._patterns = MemberPatterns(self.con)
        return self._patterns


P = ParamSpec("P")
R = TypeVar("R")


def _timed(method: Callable[P, R]) -> Callable[P, R]:
    """Add the wall time of an audit (a method of a :class:`Session`) to the gate's measures."""

    @functools.wraps(method)
    def timed(*args: P.args, **kwargs: P.kwargs) -> R:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            args[0].gate.measures.seconds += time.perf_counter() - start  # type: ignore[attr-defined]

    return timed


@dataclass
class Session:
    """One transaction of the gate: the answers audited so far and not yet recorded."""

    gate: ReleaseGate
    transaction: Transaction
    labels: list[str] = field(default_factory=list)
    #: run once the session's answers are recorded
    committed: list[Callable[[], None]] = field(default_factory=list)

    @property
    def k(self) -> int:
        return self.gate.k

    def _stamp(self, blocks: Sequence[Block]) -> list[Block]:
        release = self.transaction.release
        return [b.stamped(self.gate.epoch, release) for b in blocks]

    def _nothing_before(self) -> bool:
        state, transaction = self.transaction.state, self.transaction
        return not (state.blocks or state.lists or transaction.blocks or transaction.lists)

    def dimensions(self) -> set[str]:
        """The dimensions of the current data the audit already counts atoms over (those of
        the answers recorded and of this session's)."""
        epoch = self.gate.epoch
        blocks = [*self.transaction.state.blocks, *self.transaction.blocks]
        return set().union(*(b.dimensions() for b in blocks if b.epoch == epoch))

    def _problem(
        self, new: list[Block], table: AtomTable | None = None
    ) -> tuple[list[Block], ReleaseProblem, JointAuditor]:
        state = self.transaction.state
        everything = [*state.blocks, *self.transaction.blocks, *new]
        try:
            atoms = self.gate.atoms(everything, state.epochs, table)
            problem = build_problem(atoms, everything, self.k, new_from=len(everything) - len(new))
        except InconsistentLedger as error:
            raise PrivacyError(
                f"refused: {self.gate.ledger.description} does not match the data it recorded ({error}); "
                "nothing more is published until the operator repairs or resets it"
            ) from None
        measures = self.gate.measures
        measures.audits += 1
        measures.atoms, measures.classes, measures.rows = atoms.n, problem.problem.n_classes, problem.problem.n_rows
        return everything, problem, JointAuditor(problem.problem)

    def _narrow(self, auditor: JointAuditor, what: str) -> list[Narrow]:
        try:
            return auditor.narrow()
        except AuditBudgetExceeded as error:
            raise PrivacyError(
                f"refused: {what} could not be audited with everything released before: {error}. Nothing was "
                "published; ask for fewer dimensions or categories"
            ) from None
        finally:
            measures = self.gate.measures
            measures.solves += auditor.solves - auditor.counted[0]
            measures.iterations += auditor.work - auditor.counted[1]
            auditor.counted = (auditor.solves, auditor.work)

    @_timed
    def publish_cells(
        self,
        blocks: Sequence[Block],
        protect: Callable[[int, BoolArray], BoolArray] | None = None,
        table: AtomTable | None = None,
        audited_alone: bool = False,
    ) -> list[BoolArray]:
        """Audit the cells of ``blocks`` (one per table); per block, the cells to suppress after all.

        ``protect(i, cells)``, given cells of block ``i`` that must go, returns the cells of that
        block to suppress so that its table protects them on its own (its secondary
        suppression): the joint audit then seldom needs another round for them. The atoms
        are read from ``table`` if it has their dimensions.

        ``audited_alone``: the one block is a table whose own secondary suppression proved
        every suppressed cell's LP interval at least k wide (exact counts, margins). With
        nothing released before it, that LP is the joint one (its atoms, merged by the cells
        they lie in, are its interior cells; atoms outside its population lie in no count),
        so it is recorded without a second audit (``tests/release/test_joint_audit.py``
        checks the two agree).
        """
        new = self._stamp(blocks)
        if audited_alone and len(new) == 1 and self._nothing_before():
            self.transaction.blocks.extend(new)
            self.labels.extend(b.label for b in new)
            return [np.zeros(new[0].n_cells, dtype=bool)]
        everything, release, auditor = self._problem(new, table)
        first = len(everything) - len(new)
        hide = [np.zeros(b.n_cells, dtype=bool) for b in new]
        sources = release.sources
        row_of = {(b, cell): row for row, src in enumerate(sources) for b, cell in src}
        removable = np.array([all(b >= first for b, _ in src) for src in sources], dtype=bool)
        upper = release.problem.upper
        tries: dict[int, int] = {}
        what = " and ".join(b.label for b in new) or "the release"
        while True:
            narrow = self._narrow(auditor, what)
            if not narrow:
                break
            chosen: set[int] = set()
            for found in narrow:
                candidates = [int(r) for r in found.rows if removable[r] and not auditor.free_rows[r]]
                if not candidates:
                    candidates = np.flatnonzero(removable & ~auditor.free_rows).tolist()
                if not candidates:
                    raise PrivacyError(
                        f"refused: {what} cannot be published: the releases recorded before already let a group "
                        f"of fewer than k={self.k} people be narrowed ({_named(everything, sources, found, first)}); "
                        "the operator may reset the ledger"
                    )
                if tries.get(found.cls, 0) >= _SINGLE_TRIES:  # still narrow: give way on all its binding cells
                    chosen.update(candidates)
                else:
                    chosen.add(min(candidates, key=lambda r: (upper[r], r)))
                tries[found.cls] = tries.get(found.cls, 0) + 1
            going = [np.zeros(b.n_cells, dtype=bool) for b in new]
            for row in chosen:
                for b, cell in sources[row]:
                    going[b - first][cell] = True
            for i, cells in enumerate(going):
                if cells.any():
                    wider = protect(i, hide[i] | cells) if protect is not None else cells
                    hide[i] |= cells | wider
            # a row is freed only if every cell that publishes it is hidden (one count may be
            # published by several tables): hide them all, unless an earlier release has it
            # (a cell over no atom has no row: it tells nothing the audit does not assume known)
            hidden = [(first + i, int(cell)) for i, mask in enumerate(hide) for cell in np.flatnonzero(mask)]
            touched = {row_of.get(key, -1) for key in hidden}
            rows = sorted(r for r in touched if r >= 0 and removable[r] and not auditor.free_rows[r])
            for row in rows:
                for b, cell in sources[row]:
                    hide[b - first][cell] = True
            auditor.free(rows)
        self.transaction.blocks.extend(block.without(mask) for block, mask in zip(new, hide, strict=True))
        self.labels.extend(b.label for b in new)
        return hide

    @_timed
    def publish_counts(self, blocks: Sequence[Block], what: str) -> None:
        """Audit counts that are published whole or not at all: refuse them if any is unsafe."""
        self._counts(blocks, what)

    def _counts(self, blocks: Sequence[Block], what: str) -> None:
        new = self._stamp(blocks)
        everything, release, auditor = self._problem(new)
        narrow = self._narrow(auditor, what)
        if narrow:
            first = len(everything) - len(new)
            raise PrivacyError(
                f"refused: {what} would let a group of fewer than k={self.k} people be narrowed below k "
                f"{_named(everything, release.sources, narrow[0], first)}; nothing was published"
            )
        self.transaction.blocks.extend(new)
        self.labels.extend(b.label for b in new)

    @_timed
    def publish_members(self, population_sql: str, size: Block, what: str) -> None:
        """Audit a member list (its membership classes, and its size as a count)."""
        release = self.transaction.release
        lists = [
            *self.transaction.state.lists,
            *(MemberList(release, label, t.num_rows, members=t) for label, t in self.transaction.lists),
        ]
        patterns = self.gate.patterns()
        patterns.sync(lists)
        patterns.stage_query(population_sql)
        patterns.check(self.k, what, lists)
        self._counts([size], what)
        self.transaction.lists.append((size.label, patterns.staged()))
        patterns.add(release, size.label)


def _named(everything: Sequence[Block], sources: list[list[tuple[int, int]]], found: Narrow, first: int) -> str:
    """``together with <earlier releases>`` for a narrow class, from the rows that bind it."""
    earlier = []
    for row in found.rows.tolist():
        for b, cell in sources[row]:
            if b < first:
                earlier.append(everything[b].cell_label(cell))
    earlier = list(dict.fromkeys(earlier))
    if not earlier:
        return "on its own (its counts pin one another)"
    shown = ", ".join(earlier[:2]) + (f" and {len(earlier) - 2} more" if len(earlier) > 2 else "")
    return f"together with what was released before: {shown}"
