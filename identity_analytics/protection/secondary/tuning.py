"""Tuning of the secondary suppression search: tolerances, limits, rounds and budgets."""

from __future__ import annotations

TOL = 1e-6
#: reduced costs below minus this are negative (the cut coefficient is then unbounded)
DUAL_TOL = 1e-9
#: tables with at most this many cells are covered as a whole
GLOBAL_LIMIT = 1500
#: alternative codes per dimension in a local region (large tables)
REGION_ALTS = 2
#: regions take whole dimensions (smallest first) up to this many cells
REGION_CELLS = 3000
#: weight of one new obligation against one unit of loss in the greedy choice
ALPHA = 0.5
#: cover/audit rounds before falling back to the upward closure (safe)
MAX_ROUNDS = 100
#: reverse-deletion passes (each one is audited again)
MAX_REVERSE = 3
#: cover/audit rounds per local-search move
IMPROVE_ROUNDS = 4
#: local-search moves tried at most
IMPROVE_TRIALS = 2
#: restarts of the cover with one of the costliest secondary cells forbidden
RESTARTS = 3
#: LP work of one run (columns summed over solves; a solve costs ~5 us per column). The
#: hardest realistic tables measured use ~0.4 M (a 13,230-cell 4-D table; 450-cell cohort
#: tables ~6 k). Sparse tables where most cells are below k can ask for far more; past the
#: budget no pattern is left unproven: an unsettled region falls back to the upward closure
#: of its unproven cells (safe by itself), improvement and pruning stop with the last proven
#: pattern.
LP_WORK_BUDGET = 1_000_000

