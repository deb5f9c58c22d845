"""k-anonymity protection of aggregated cohort cells (engine independent).

``CellGrid`` holds the aggregated cells; ``primary_suppression`` and
``secondary_suppression`` compute the suppression mask; ``attacker_intervals`` audits it
independently; ``optimal_secondary`` is the exact integer program used as a benchmark
reference; ``round_to_base`` is the rounding protection mode (``rounding_interval`` what a rounded
count tells).
"""

from identity_analytics.protection.audit import attacker_intervals
from identity_analytics.protection.grid import CellGrid, additivity_matrix
from identity_analytics.protection.optimal import optimal_secondary
from identity_analytics.protection.primary import primary_suppression
from identity_analytics.protection.rounding import round_to_base, rounding_interval
from identity_analytics.protection.secondary import secondary_suppression

__all__ = [
    "CellGrid",
    "additivity_matrix",
    "attacker_intervals",
    "optimal_secondary",
    "primary_suppression",
    "round_to_base",
    "rounding_interval",
    "secondary_suppression",
]
