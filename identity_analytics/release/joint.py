"""The joint audit: every small atom keeps an attacker interval at least k wide.

Over the classes of a :class:`~identity_analytics.release.problem.JointProblem`, the
attacker knows every row's bounds and that counts are non-negative. An atom of 1 to k-1
people alone in its class is safe when the class total can range over at least k (LP
maximum minus minimum); an atom sharing its class with others can hold anything from 0 to
the class's maximum, so it is safe when that maximum reaches k.

Proofs are *witnesses*: feasible points of the LP. The true point is one; every LP solution
is another, and a class is proven once two known points are k apart on it (or one reaches k,
for a shared class). So one LP usually proves many classes. The audit runs, on one HiGHS
model kept warm (primal simplex: objectives and bounds change, the basis stays):

1. one LP that pushes every unproven single-atom class down (to 0 where it can go);
2. rounds that push every unproven class up to its goal at once (the goal as a bound, so
   classes do not compete beyond it), while a round proves new classes;
3. one LP per class still unproven: its maximum (with the goal as a bound), then its minimum
   (unless a witness already has it at 0). A class whose exact interval is narrower than k is
   *narrow*; the rows that bind it (those with a non-zero dual) are where a release could give
   way. A round reports at most eight narrow classes: the cells given up for them (and their
   tables' suppression run again) often settle others, which are then audited again.

Freeing rows (cells suppressed after all) only widens the polytope, so every witness stays
valid and only the classes not yet proven are audited again. Past the work budget the audit stops
with :class:`AuditBudgetExceeded`: nothing unaudited is ever published.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from identity_analytics.protection._lp import INF, new_highs, pass_lp, run
from identity_analytics.release.problem import JointProblem

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Simplex iterations one audit may spend (over all its solves). The audits measured in
#: ``bench/release.py`` use a few thousand; past this the release is refused, not published.
WORK_BUDGET = 400_000
#: Distance below which LP values count as equal (HiGHS works to 1e-7).
_TOL = 1e-6
#: Rounds of step 2 at most.
_PUSH_ROUNDS = 12
_DUAL_TOL = 1e-9
#: Narrow classes reported per round at most (the release gives way on them, then audits again).
_NARROW_PER_ROUND = 8


class AuditBudgetExceeded(Exception):
    """The joint audit ran out of work budget before every small atom was proven safe."""


@dataclass(frozen=True)
class Narrow:
    """A class whose attacker interval is narrower than k, and the rows that bind it."""

    cls: int
    lo: float
    hi: float
    rows: IntArray


class JointAuditor:
    """Audits one joint problem; :meth:`free` rows, then :meth:`narrow` again."""

    def __init__(self, problem: JointProblem, budget: int | None = None) -> None:
        self.problem = problem
        self.k = problem.k
        self.budget = WORK_BUDGET if budget is None else budget
        self.work = 0
        self.solves = 0
        #: solves and work already added to the gate's measures
        self.counted = (0, 0)
        self.highest = problem.counts.copy()
        self.lowest = problem.counts.copy()
        self.targets = np.flatnonzero(problem.small)
        self.shared = problem.multiplicity >= 2  # any atom of the class may hold all or none of it
        self.free_rows = np.zeros(problem.n_rows, dtype=bool)
        self._h: Any = None
        self._fresh = True

    # proofs -----------------------------------------------------------------------------

    def _floor(self, classes: IntArray) -> FloatArray:
        """The lowest value an atom of each class can take, as known so far."""
        return np.where(self.shared[classes], 0.0, self.lowest[classes])

    def _unproven(self) -> IntArray:
        t = self.targets
        return t[self.highest[t] - self._floor(t) < self.k - _TOL]

    def _absorb(self, point: FloatArray) -> None:
        """Take an LP solution as a witness, once checked to satisfy every row."""
        matrix = self.problem.matrix
        sums = matrix @ point
        lower = np.where(self.free_rows, -np.inf, self.problem.lower)
        upper = np.where(self.free_rows, np.inf, self.problem.upper)
        scale = 1.0 + np.abs(sums)
        if (point < -_TOL).any() or (sums < lower - _TOL * scale).any() or (sums > upper + _TOL * scale).any():
            return  # not a feasible point after all: it proves nothing
        point = np.maximum(point, 0.0)
        np.maximum(self.highest, point, out=self.highest)
        np.minimum(self.lowest, point, out=self.lowest)

    # the model ------------------------------------------------------------------------------

    def _model(self) -> Any:
        if self._h is None:
            p = self.problem
            h = new_highs()
            h.setOptionValue("presolve", "off")
            h.setOptionValue("simplex_strategy", 4)  # primal: a new objective keeps the basis feasible
            n = p.n_classes
            pass_lp(h, np.zeros(n), np.zeros(n), np.full(n, INF), p.matrix,
                    p.lower.astype(np.float64), p.upper.astype(np.float64))  # fmt: skip
            self._h = h
        return self._h

    def _solve(self, cost: dict[int, float], caps: dict[int, float]) -> tuple[FloatArray, FloatArray] | None:
        """Minimise ``sum cost[c] * X_c`` with ``X_c <= caps[c]``; the solution and row duals."""
        h = self._model()
        n = self.problem.n_classes
        columns = np.arange(n, dtype=np.int32)
        costs = np.zeros(n)
        uppers = np.full(n, INF)
        for c, value in cost.items():
            costs[c] = value
        for c, value in caps.items():
            uppers[c] = value
        h.changeColsCost(n, columns, costs)
        h.changeColsBounds(n, columns, np.zeros(n), uppers)
        run(h)
        info = h.getInfo()
        self.work += int(info.simplex_iteration_count)
        self.solves += 1
        if self.work > self.budget:
            raise AuditBudgetExceeded(
                f"the joint audit needed more than {self.budget:,} simplex iterations over "
                f"{self.problem.n_classes:,} classes of atoms and {self.problem.n_rows:,} published counts"
            )
        if h.modelStatusToString(h.getModelStatus()) != "Optimal":
            return None
        solution = h.getSolution()
        return np.asarray(solution.col_value, dtype=np.float64), np.asarray(solution.row_dual, dtype=np.float64)

    def free(self, rows: npt.ArrayLike) -> None:
        """Rows no longer published (their cells are suppressed): no constraint any more."""
        rows = np.asarray(rows, dtype=np.int64)
        self.free_rows[rows] = True
        if self._h is not None and rows.size:
            self._h.changeRowsBounds(rows.size, rows.astype(np.int32), np.full(rows.size, -INF),
                                     np.full(rows.size, INF))  # fmt: skip

    # the audit ------------------------------------------------------------------------------

    def narrow(self) -> list[Narrow]:
        """Every small class whose attacker interval is narrower than k (empty: the release is safe)."""
        if self._fresh:
            self._fresh = False
            self._push_down()
            self._push_up()
        narrow = []
        for c in self._unproven().tolist():
            found = self._exact(c)
            if found is not None:
                narrow.append(found)
                if len(narrow) >= _NARROW_PER_ROUND:
                    break  # the cells these give up may settle others: they are pushed again first
        return narrow

    def _push_down(self) -> None:
        single = self._unproven()
        single = single[~self.shared[single]]
        if single.size:
            solved = self._solve(dict.fromkeys(single.tolist(), 1.0), {})
            if solved is not None:
                self._absorb(solved[0])

    def _push_up(self) -> None:
        for _ in range(_PUSH_ROUNDS):
            unproven = self._unproven()
            if unproven.size == 0:
                return
            goals = self._floor(unproven) + self.k
            targets = unproven.tolist()
            solved = self._solve(dict.fromkeys(targets, -1.0), dict(zip(targets, goals.tolist(), strict=True)))
            if solved is None:
                return
            self._absorb(solved[0])
            if self._unproven().size == unproven.size:
                return

    def _exact(self, c: int) -> Narrow | None:
        """Audit one class with its own LPs; None once it is proven safe."""
        binding: list[IntArray] = []
        goal = float(self._floor(np.array([c]))[0] + self.k)
        solved = self._solve({c: -1.0}, {c: goal})
        if solved is not None:
            self._absorb(solved[0])
            binding.append(np.flatnonzero(np.abs(solved[1]) > _DUAL_TOL))
        if not self.shared[c] and self.lowest[c] > _TOL and self.highest[c] - self.lowest[c] < self.k - _TOL:
            solved = self._solve({c: 1.0}, {})
            if solved is not None:
                self._absorb(solved[0])
                binding.append(np.flatnonzero(np.abs(solved[1]) > _DUAL_TOL))
        floor = float(self._floor(np.array([c]))[0])
        if self.highest[c] - floor >= self.k - _TOL:
            return None
        rows = np.unique(np.concatenate(binding)) if binding else np.zeros(0, dtype=np.int64)
        return Narrow(c, _snap(floor), _snap(float(self.highest[c])), rows.astype(np.int64))


def _snap(value: float) -> float:
    whole = round(value)
    return float(whole) if abs(value - whole) <= _TOL else value

