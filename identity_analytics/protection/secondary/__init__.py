"""Secondary suppression, one module per concern: ``structure`` (the relations), ``world`` (the
attacker's LP), ``witnesses``, ``cover``, ``driver``; tuning in ``tuning``.

k-anonymity cell suppression on aggregated cells (primary and secondary).

Primary suppression hides every cell with ``0 < count < k``.  Secondary suppression then hides
further cells ("complements") until, for every suppressed cell, the interval an attacker can
derive by linear programming from the published cells is at least ``k`` wide.

Method: a greedy cover of necessary conditions, driven by exact LP audits (Benders cuts);
exact with respect to the guarantee, close to the minimum loss, and with few LPs.

* Cover (compiled loops, no LP): the pattern grows one cell at a time until it meets
  conditions that every protected pattern meets.  Structural: a suppressed cell alone in one
  of its relations is determined by it.  Capacity of one relation: a suppressed cell with count ``a < k`` that
  is a child of a relation moves up only by lowering its suppressed siblings or raising the
  parent, so the siblings' counts (each capped at ``k``) plus ``k`` for a suppressed parent
  must reach ``k - a``.  And the Benders cuts found so far.  The next cell is the one that
  repairs most violated conditions per unit of loss (``1 + count / (total + 1)``) and of the
  obligations it brings (relations where it would be alone, its own capacity and cuts).
* Audit (LP): each suppressed cell not yet proven safe gets an attacker LP that maximises
  its interval: two blocks of columns (a table moved up and one moved down, deviations from
  the true counts, the audited cell capped at ``k`` both ways) over the suppressed cells,
  rows = the relations touching them.  One HiGHS model per cover is kept and only grows
  (new cells become columns, cells published again are fixed at 0, the audited cell is a
  cost and bound change), so every solve is a warm (dual simplex) re-solve.  The optimal
  tables, cut down to the cell's connected component, are kept as *witnesses*: two
  consistent tables ``k`` apart prove a cell safe for as long as every cell they move stays
  suppressed, so one LP usually proves several cells.  If the interval is too narrow, weak
  duality on the row duals gives a Benders cut ``sum_j c_j x_j >= k`` (coefficients
  strengthened to ``min(c_j, k)``; for a secondary cell the cut only binds when it is
  suppressed).  Any dual vector gives a valid cut, so the same duals also bound the other
  cells of the component: those already shown narrower than ``k`` get their cut without an
  LP of their own.  The cells suppressed from the start (the primary cells) are audited
  first; the others only once those are all safe.  Cover and audit alternate until the
  audit passes.
* Reverse deletion: once a pattern passes the audit, every secondary cell the known
  conditions allow is published again (smallest count first) and the pattern is audited
  again (``MAX_REVERSE`` times at most).
* Local search (tables up to ``GLOBAL_LIMIT`` cells): a few secondary cells, largest loss
  first, are published and forbidden in turn and the cover resumes from there; a cheaper
  pattern that passes the audit replaces the current one.  Then the cover restarts from the
  primary cells with every cut learnt so far, once freely and once with each of the
  ``RESTARTS`` costliest secondary cells forbidden; the cheapest audited pattern wins.
* Pruning: secondary cells are then tentatively published, largest loss first, and stay
  published when every suppressed cell whose witnesses used them is proven safe again by
  the remaining witnesses or new LPs.  A cell the known conditions keep needs no LP.

The result is exact with respect to the guarantee: every suppressed cell ends with valid
witnesses ``k`` apart, or with all its margins suppressed (checked independently by
:func:`attacker_intervals` in the tests).
Should the rounds (``MAX_ROUNDS``) or the LP work budget of the run (``LP_WORK_BUDGET``) run
out before a pattern is proven, the unproven cells are suppressed with all their margins (the
upward closure), which is safe by itself: each can move up by k with all its margins; no
pruning follows. Improvement and pruning stop at the budget with the last proven pattern.

Large tables (more than ``GLOBAL_LIMIT`` cells) are processed region by region: the cover
runs on a sub-cube around each primary cell not yet safe (whole dimensions, smallest first,
up to ``REGION_CELLS`` cells; in the other dimensions its code, the margin and a few cheap
codes); cells outside the region count as published for the audit, which only narrows
intervals, so the witnesses stay valid.  Suppressing more cells never narrows an interval,
so earlier regions stay safe.  There is no pruning across regions.
"""

from identity_analytics.protection.secondary.driver import secondary_suppression

__all__ = ["secondary_suppression"]
