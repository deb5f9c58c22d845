"""HiGHS helpers: solves survive other HiGHS users and a replaced scheduler in the process."""

from __future__ import annotations

import subprocess
import sys

TOL = 1e-6


SHARED_SCHEDULER = """
import highspy, numpy as np
from identity_analytics.protection import (
    CellGrid, attacker_intervals, optimal_secondary, primary_suppression, secondary_suppression)
other = highspy.Highs()
other.setOptionValue("output_flag", False)
other.addVar(0.0, 1.0)
other.run()
rng = np.random.default_rng(3)
grid = CellGrid.full_cube(rng.poisson(12, size=(6, 7, 3)))
primary = primary_suppression(grid.counts, 10)
optimal_secondary(grid, primary, 10)
mask = secondary_suppression(grid, primary, 10)
lo, hi = attacker_intervals(grid, mask)
assert (hi - lo)[mask].min() >= 10 - 1e-6
print(int(primary.sum()), int(mask.sum()))
"""




#: Another HiGHS user replaces the process's scheduler with one of another size after our
#: solvers learnt its thread count: their solves are refused until the count is probed again.
REPLACED_SCHEDULER = """
import highspy, numpy as np
from identity_analytics.protection import CellGrid, attacker_intervals, primary_suppression, secondary_suppression
from identity_analytics.protection import _lp
rng = np.random.default_rng(3)
grid = CellGrid.full_cube(rng.poisson(12, size=(6, 7, 3)))
primary = primary_suppression(grid.counts, 10)
first = secondary_suppression(grid, primary, 10)
before = _lp._threads()
highspy.Highs.resetGlobalScheduler(True)
other = highspy.Highs()
other.setOptionValue("output_flag", False)
other.setOptionValue("threads", before + 1)
other.addVar(0.0, 1.0)
other.run()
again = secondary_suppression(grid, primary, 10)
assert np.array_equal(first, again)
lo, hi = attacker_intervals(grid, again)
assert (hi - lo)[again].min() >= 10 - 1e-6
print(before, _lp._threads())
"""


def test_heuristic_after_other_highs_users_in_the_process() -> None:
    done = subprocess.run([sys.executable, "-c", SHARED_SCHEDULER], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    n_primary, n_suppressed = map(int, done.stdout.splitlines()[-1].split())
    assert 0 < n_primary < n_suppressed


def test_heuristic_after_the_scheduler_is_replaced() -> None:
    done = subprocess.run([sys.executable, "-c", REPLACED_SCHEDULER], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    before, after = map(int, done.stdout.splitlines()[-1].split())
    assert after == before + 1
