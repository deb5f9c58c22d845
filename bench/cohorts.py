"""Cohort benchmark: a protected 3-dimension report vs DuckDB's bare GROUP BY CUBE.

In one process, on the same data, runs taken in turn (median of --repeat rounds):
  * identity_analytics   ds.cohorts(["age", "income", "parental_status"]) on a fresh Dataset each
                         run (a table asked again is the answer released before): the scan into
                         the atom table, the CUBE summed from it, every category filled in,
                         primary + secondary suppression, the release gate
  * bare CUBE, same table    the same CUBE on the Dataset's own DuckDB table
  * bare CUBE, same Arrow    the same CUBE on the Arrow table the Dataset was built from
then two filtered tables (audited jointly with the tables before them: timed once each), the
same over a Parquet file (Dataset.from_parquet vs CUBE over read_parquet), and finally
--big-rows rows (default 100 M) from Parquet, each side in a fresh process with its peak RSS.

    .venv/bin/python bench/cohorts.py                       # 10 M in memory + 100 M from Parquet
    .venv/bin/python bench/cohorts.py --big-rows 0          # skip the 100 M part
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py (named by its issue) would shadow the standard library's `http` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import identity_analytics as ia
from identity_analytics.vocabulary import DIMENSIONS

DATA = ROOT / "bench" / ".data"
BY = ("age", "income", "parental_status")
CUBE = f"SELECT {', '.join(BY)}, count(*) AS count FROM {{source}} GROUP BY CUBE ({', '.join(BY)})"
POLICY = ia.PrivacyPolicy(pseudonym_key=b"bench-cohorts")
#: A skewed population: the first categories common, the last rare (some cells fall below k).
VALUES: dict[str, list[str]] = {
    "state": ["active"] * 30 + ["inactive"],
    "age": ["_25_to_34", "_35_to_44", "_15_to_24", "_45_to_54", "_55_to_64", "_65_plus", "_0_to_14", "undetermined"],
    "income": ["middle", "lower_middle", "low", "upper_middle", "high", "none", "undetermined", "other"],
    "gender": ["female", "male", "non_binary", "other", "undetermined"],
    "household": ["true", "false", "undetermined"],
    "relationship_status": ["single", "married", "in_relationship", "divorced", "widowed", "undetermined"],
    "parental_status": ["not_parent", "parent", "undetermined"],
    "citizenship": ["US", "GB", "DE", "FR", "NG", "KE", "IN", "BR", "JP", "IS", "undetermined", "other"],
    "locale": ["en-US", "en", "de-DE", "fr-FR", "pt-BR", "ja-JP", "sw-KE", "is-IS", "undetermined"],
}


def _pick(dim: str) -> str:
    """SQL choosing a value of ``dim`` from the uniform column ``u_<dim>``, each next value ~2.5x rarer."""
    values = VALUES[dim]
    weights = [0.4**i for i in range(len(values))]
    total, cumulative, whens = sum(weights), 0.0, []
    for value, weight in zip(values[:-1], weights[:-1], strict=True):
        cumulative += weight / total
        whens.append(f"WHEN u_{dim} < {cumulative:.9f} THEN '{value}'")
    return f"CASE {' '.join(whens)} ELSE '{values[-1]}' END"


def population_sql(rows: int) -> str:
    """A deterministic synthetic analytics table of ``rows`` rows, as a query."""
    uniforms = ", ".join(f"(hash(i, {seed}) % 1000000000) / 1e9 AS u_{dim}" for seed, dim in enumerate(DIMENSIONS))
    picks = ", ".join(f"{_pick(dim)} AS {dim}" for dim in DIMENSIONS)
    return f"SELECT sha256(i::VARCHAR) AS pseudonym, {picks} FROM (SELECT i, {uniforms} FROM range({rows}) t(i))"


def timed(fns: list[Callable[[], object]], repeat: int) -> list[float]:
    """Median seconds of each of ``fns``, run in turn (``repeat`` rounds of one run each, the
    order rotating from round to round), so that the machine's slower and faster moments, and
    the caches one run leaves to the next, fall on every side alike."""
    times: list[list[float]] = [[] for _ in fns]
    for round_ in range(repeat):
        for i in range(len(fns)):
            j = (round_ + i) % len(fns)
            gc.collect()
            start = time.perf_counter()
            fns[j]()
            times[j].append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, path: str) -> None:
    start = time.perf_counter()
    if mode == "ours":
        ds = ia.Dataset.from_parquet(path, policy=POLICY, memory_limit="2GB")
        opened = time.perf_counter()
        table = ds.cohorts(list(BY))
        cells = table.grid.n_cells
        print(f"{peak_rss_mib():.0f} {time.perf_counter() - opened:.2f} {opened - start:.2f} {cells}")
    else:
        con = duckdb.connect(config={"memory_limit": "2GB"})
        con.execute(CUBE.format(source=f"read_parquet('{path}')")).fetchall()
        print(f"{peak_rss_mib():.0f} {time.perf_counter() - start:.2f} 0 0")


def run_child(mode: str, path: Path) -> list[float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(path)], check=True, capture_output=True, text=True
    )
    return [float(x) for x in out.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description="cohort benchmark")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--big-rows", type=int, default=100_000_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    con = duckdb.connect()
    start = time.perf_counter()
    table: pa.Table = con.sql(population_sql(args.rows)).to_arrow_table()
    print(f"generated {args.rows:,} rows in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    ds = ia.Dataset.from_arrow(table, policy=POLICY)
    print(f"Dataset.from_arrow (validate + load): {time.perf_counter() - start:.1f} s")
    report = ds.cohorts(list(BY))
    print(
        f"report: {report.grid.n_cells} cells, {int(report.primary.sum())} primary + "
        f"{int(report.suppressed.sum() - report.primary.sum())} secondary suppressions"
    )
    bare = duckdb.connect()
    bare.register("population", table)
    # a table asked again is the answer released the first time: each timed run asks a fresh
    # Dataset (built before the timings) over the same data
    fresh = iter([ia.Dataset.from_arrow(table, policy=POLICY) for _ in range(args.repeat)])
    ours, same_table = timed(
        [
            lambda: next(fresh).cohorts(list(BY)),
            lambda: ds.connection.execute(CUBE.format(source="identities")).fetchall(),
        ],
        args.repeat,
    )
    # over the Arrow table's strings the CUBE takes ~8x longer: timed apart, so that the caches
    # it clears do not fall on the pair above
    (same_arrow,) = timed([lambda: bare.execute(CUBE.format(source="population")).fetchall()], args.repeat)

    # filtered tables pass the joint release audit with the tables released before them
    start = time.perf_counter()
    ds.cohorts(list(BY), where={"gender": ["female"]})
    first_filtered = time.perf_counter() - start
    start = time.perf_counter()
    ds.cohorts(list(BY), where={"gender": ["male"]})
    second_filtered = time.perf_counter() - start

    DATA.mkdir(parents=True, exist_ok=True)
    parquet = DATA / f"cohorts-{args.rows}.parquet"
    if not parquet.exists():
        bare.execute(f"COPY population TO '{parquet}' (FORMAT parquet)")
    fresh_parquet = iter([ia.Dataset.from_parquet(parquet, policy=POLICY) for _ in range(args.repeat)])
    ours_parquet, bare_parquet = timed(
        [
            lambda: next(fresh_parquet).cohorts(list(BY)),
            lambda: bare.execute(CUBE.format(source=f"read_parquet('{parquet}')")).fetchall(),
        ],
        args.repeat,
    )

    print(f"\n{args.rows:,} rows, {' x '.join(BY)}, margins + suppression (k={POLICY.k}); median of {args.repeat}")
    print(f"{'run':<44}{'seconds':>9}{'ours / it':>11}")
    print(f"{'identity_analytics ds.cohorts (in memory)':<44}{ours:>9.3f}{1:>10.2f}x")
    print(f"{'bare CUBE, same DuckDB table':<44}{same_table:>9.3f}{ours / same_table:>10.2f}x")
    print(f"{'bare CUBE, same Arrow table':<44}{same_arrow:>9.3f}{ours / same_arrow:>10.2f}x")
    print(f"{'identity_analytics ds.cohorts (Parquet)':<44}{ours_parquet:>9.3f}{1:>10.2f}x")
    print(f"{'bare CUBE, same Parquet file':<44}{bare_parquet:>9.3f}{ours_parquet / bare_parquet:>10.2f}x")
    print("target: ours / bare CUBE <= 1.5x")
    print(
        f"filtered tables (joint release audit): first {first_filtered:.2f} s, "
        f"second (audited with the first) {second_filtered:.2f} s"
    )

    if args.big_rows:
        big = DATA / f"cohorts-{args.big_rows}.parquet"
        if not big.exists():
            start = time.perf_counter()
            duckdb.connect(config={"memory_limit": "2GB"}).execute(
                f"COPY ({population_sql(args.big_rows)}) TO '{big}' (FORMAT parquet)"
            )
            print(f"\nwrote {args.big_rows:,} rows to Parquet in {time.perf_counter() - start:.0f} s")
        rss, seconds, load, _ = run_child("ours", big)
        bare_rss, bare_seconds, _, _ = run_child("bare", big)
        print(
            f"\n{args.big_rows:,} rows from Parquet ({big.stat().st_size / 1e9:.1f} GB), each in a fresh process:\n"
            f"  identity_analytics: report {seconds:.1f} s (+ {load:.1f} s Dataset.from_parquet layout check), "
            f"peak RSS {rss:.0f} MiB\n"
            f"  bare CUBE:          {bare_seconds:.1f} s, peak RSS {bare_rss:.0f} MiB   "
            f"(ours / bare: {seconds / bare_seconds:.2f}x)"
        )


if __name__ == "__main__":
    main()
