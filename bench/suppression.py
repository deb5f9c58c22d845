"""Benchmark of secondary cell suppression against the exact integer program.

Run: ``.venv/bin/python bench/suppression.py``.  Deterministic (seeded) tables, 2 and 3
dimensions with margins, 50 to 500 cells.  For each table the heuristic
(``secondary_suppression``) is timed (median of several runs) and compared with the MILP
optimum (``optimal_secondary``); both results are verified with the independent audit
(``attacker_intervals``).  Loss counts secondary cells only: ``sum(1 + count / (total + 1))``.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where a module named like a stdlib
# one (e.g. bench/http.py) would shadow it; import the library from the repository instead.
_BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH_DIR]
sys.path.insert(0, str(_BENCH_DIR.parent))

import numpy as np
import numpy.typing as npt

from identity_analytics.protection import (
    CellGrid,
    attacker_intervals,
    optimal_secondary,
    primary_suppression,
    secondary_suppression,
)

RATIO_TARGET = 1.2
MS_TARGET = 100.0
MILP_TIME_LIMIT = 300.0
LARGE_SHAPE = (9, 8, 6, 20)
LARGE_TOTAL = 3_000_000


@dataclass(frozen=True)
class Case:
    """One benchmark table."""

    name: str
    counts: npt.NDArray[np.int64]
    k: int


def skewed_table(rng: np.random.Generator, shape: tuple[int, ...], total: int) -> np.ndarray:
    """Poisson counts around a product of skewed (Zipf-like) marginal profiles, with noise."""
    probs = np.ones(shape)
    for axis, size in enumerate(shape):
        prof = rng.permutation(1.0 / np.arange(1, size + 1) ** rng.uniform(0.6, 1.4))
        expand = [1] * len(shape)
        expand[axis] = size
        probs = probs * prof.reshape(expand)
    probs *= rng.lognormal(0.0, 0.7, size=shape)
    probs /= probs.sum()
    return np.asarray(rng.poisson(total * probs), dtype=np.int64)


def cases() -> list[Case]:
    """The deterministic benchmark tables (>= 20)."""
    rng = np.random.default_rng(20240601)
    shapes: list[tuple[int, ...]] = [
        (6, 8), (7, 9), (8, 10), (9, 12), (10, 14), (12, 15), (14, 18), (16, 20),
        (18, 22), (10, 40), (5, 60), (20, 20),
        (3, 4, 5), (4, 4, 6), (4, 5, 6), (3, 6, 8), (5, 5, 7), (4, 6, 9), (5, 6, 8),
        (3, 5, 12), (6, 6, 6), (4, 4, 18),
    ]
    out = []
    for i, shape in enumerate(shapes):
        cells = int(np.prod(shape))
        total = int(cells * rng.uniform(60, 200))
        counts = skewed_table(rng, shape, total)
        k = 5 if i % 4 == 3 else 10
        out.append(Case(f"T{i:02d}", counts, k))
    return out


def loss(grid: CellGrid, secondary: npt.NDArray[np.bool_]) -> float:
    """Information loss of the secondary cells."""
    total = float(grid.counts[(grid.codes < 0).all(axis=1)][0])
    return float(np.sum(1.0 + grid.counts[secondary] / (total + 1.0)))


def verify(grid: CellGrid, mask: npt.NDArray[np.bool_], primary: npt.NDArray[np.bool_],
           k: int, every: bool) -> bool:
    """Audit: primary cells hidden, nothing published in (0, k), intervals >= k wide."""
    lo, hi = attacker_intervals(grid, mask)
    pub = ~mask
    if (primary & pub).any() or ((grid.counts[pub] > 0) & (grid.counts[pub] < k)).any():
        return False
    check = mask if every else primary
    return bool(np.all(hi[check] - lo[check] >= k - 1e-6))


def time_heuristic(grid: CellGrid, primary: npt.NDArray[np.bool_], k: int,
                   runs: int = 5) -> tuple[npt.NDArray[np.bool_], float]:
    """Result and median wall time (ms) of secondary_suppression."""
    times = []
    mask = secondary_suppression(grid, primary, k)
    for _ in range(runs):
        t0 = time.perf_counter()
        mask = secondary_suppression(grid, primary, k)
        times.append((time.perf_counter() - t0) * 1000.0)
    return mask, statistics.median(times)


def main(audit_large: bool = False) -> int:
    header = (f"{'table':<6} {'shape':<12} {'k':>3} {'cells':>6} {'prim':>5} {'h_extra':>7} "
              f"{'h_loss':>8} {'o_extra':>7} {'o_loss':>8} {'ratio':>6} {'h_ms':>7} "
              f"{'o_s':>6} audit")
    print(header)
    ratios: list[float] = []
    ms_all: list[float] = []
    all_ok = True
    for case in cases():
        grid = CellGrid.full_cube(case.counts)
        primary = primary_suppression(grid.counts, case.k)
        mask, ms = time_heuristic(grid, primary, case.k)
        t0 = time.perf_counter()
        opt = optimal_secondary(grid, primary, case.k, time_limit=MILP_TIME_LIMIT)
        o_s = time.perf_counter() - t0
        h_sec = mask & ~primary
        o_sec = opt & ~primary
        h_loss, o_loss = loss(grid, h_sec), loss(grid, o_sec)
        ratio = h_loss / o_loss if o_loss > 0 else (1.0 if h_loss == 0 else float("inf"))
        ok = verify(grid, mask, primary, case.k, every=True) and verify(
            grid, opt, primary, case.k, every=False)
        all_ok &= ok
        ratios.append(ratio)
        ms_all.append(ms)
        print(f"{case.name:<6} {'x'.join(map(str, case.counts.shape)):<12} {case.k:>3} "
              f"{grid.n_cells:>6} {int(primary.sum()):>5} {int(h_sec.sum()):>7} "
              f"{h_loss:>8.3f} {int(o_sec.sum()):>7} {o_loss:>8.3f} {ratio:>6.3f} "
              f"{ms:>7.1f} {o_s:>6.1f} {'ok' if ok else 'FAIL'}", flush=True)
    ratio_ok = max(ratios) <= RATIO_TARGET
    ms_ok = max(ms_all) < MS_TARGET
    print(f"SUMMARY tables={len(ratios)} max_ratio={max(ratios):.3f} "
          f"mean_ratio={statistics.mean(ratios):.3f} max_ms={max(ms_all):.1f} "
          f"median_ms={statistics.median(ms_all):.1f} audit={'ok' if all_ok else 'FAIL'} "
          f"ratio<={RATIO_TARGET}:{'PASS' if ratio_ok else 'FAIL'} "
          f"time<{MS_TARGET:.0f}ms:{'PASS' if ms_ok else 'FAIL'}")
    large(audit_large)
    return 0 if (ratio_ok and ms_ok and all_ok) else 1


def large(audit: bool) -> None:
    """Time one large 4-dimensional table with margins (audit it with --audit-large: the
    independent audit takes minutes there, far longer than the heuristic)."""
    rng = np.random.default_rng(7)
    shape = LARGE_SHAPE
    counts = skewed_table(rng, shape, LARGE_TOTAL)
    grid = CellGrid.full_cube(counts)
    k = 10
    primary = primary_suppression(grid.counts, k)
    t0 = time.perf_counter()
    mask = secondary_suppression(grid, primary, k)
    sec = time.perf_counter() - t0
    status = "skipped (use --audit-large)"
    if audit:
        t0 = time.perf_counter()
        ok = verify(grid, mask, primary, k, every=True)
        status = f"{'ok' if ok else 'FAIL'} ({time.perf_counter() - t0:.1f}s)"
    print(f"LARGE shape={'x'.join(map(str, shape))} cells={grid.n_cells} "
          f"primary={int(primary.sum())} secondary={int((mask & ~primary).sum())} "
          f"heuristic_s={sec:.2f} audit={status}")


if __name__ == "__main__":
    sys.exit(main(audit_large="--audit-large" in sys.argv[1:]))
