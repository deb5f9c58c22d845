"""Release benchmark: the joint audit's cost against the cost of computing what it audits.

In one process, on the same synthetic population (``bench/cohorts.py``'s, 10 M rows by
default), each report published as one release through a fresh in-memory ledger:

  * reports of 3, 10 and 30 cohort tables (1 to 3 dimensions, some filtered), computed
    without the gate (``compute_cohorts`` per table: its CUBE query over the data and its
    own suppression) and then released (``Dataset.cohort_tables`` end to end: one scan of the
    data into the atom table, the tables summed from it, the joint audit); the audit's time
    is also given alone, the gate's own measure (atoms, LPs solved, cells suppressed after all);
  * a sequence of 50 segments, each sized and its member list asked for (refusals counted):
    the time to count and list them against the time of their audits.

Reports of up to 10 tables take a fraction of a second: each side is the best of ``--repeat``
(5) runs, alternated. Prints one table (the README's): computing, released, their ratio;
the audit alone.

    .venv/bin/python bench/release.py                 # 10 M rows
    .venv/bin/python bench/release.py --rows 1000000  # quicker
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py (named by its issue) would shadow the standard library's `http` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import itertools
import random
import tempfile
import time

import duckdb
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import importlib.util

import identity_analytics as ia
from identity_analytics.cohorts import compute_cohorts
from identity_analytics.report import CohortSpec, InputSpec, ReportConfig, write_report
from identity_analytics.segments import segment_size


def _population() -> tuple[ia.PrivacyPolicy, object]:
    """The synthetic population of ``bench/cohorts.py`` (loaded by path: ``bench/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_cohorts", ROOT / "bench" / "cohorts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.POLICY, module.population_sql


POLICY, population_sql = _population()
MAIN = ("age", "income", "parental_status")
MORE = ("gender", "household", "relationship_status")


def report_specs(n: int) -> list[ia.Cohort]:
    """``n`` tables as a report would ask for them: the cohorts of the main dimensions first
    (every 1-, 2- and 3-D table of age, income, parental status), then filtered ones and
    tables with the other dimensions."""
    specs: list[ia.Cohort] = []
    for size in (3, 2, 1):
        specs += [ia.Cohort(by=c) for c in itertools.combinations(MAIN, size)]
    filters = [{"citizenship": ["US"]}, {"gender": ["female"]}, {"citizenship": ["DE", "FR"]}, {"household": ["true"]}]
    for where in filters:
        specs += [ia.Cohort(by=MAIN, where=where), ia.Cohort(by=("age", "income"), where=where)]
    for other in MORE:
        specs += [ia.Cohort(by=("age", other)), ia.Cohort(by=(other, "income")), ia.Cohort(by=other)]
    specs += [ia.Cohort(by=("age", "income", "gender")), ia.Cohort(by=("gender", "parental_status")),
              ia.Cohort(by=("age", "gender"), where={"citizenship": ["US"]}),
              ia.Cohort(by=("income", "parental_status"), where={"gender": ["male"]}),
              ia.Cohort(by=("age", "household", "parental_status")),
              ia.Cohort(by=("relationship_status", "parental_status"))]  # fmt: skip
    if n > len(specs):
        raise SystemExit(f"at most {len(specs)} tables")
    return specs[:n]


def segment_sequence(n: int, seed: int = 7) -> list[ia.Segment]:
    """``n`` segments over age, income, gender and parental status (random category sets)."""
    rnd = random.Random(seed)
    vocabulary = ia.Vocabulary.default()
    segments = []
    for i in range(n):
        dims = rnd.sample(["age", "income", "gender", "parental_status"], rnd.choice([1, 2]))
        where = {}
        for dim in dims:
            cats = [c for c in vocabulary.categories(dim) if c != "other"]
            where[dim] = sorted(rnd.sample(cats, rnd.randint(1, max(1, len(cats) // 2))))
        segments.append(ia.Segment(name=f"segment {i}", where=where))
    return segments


def bench_report(table: pa.Table, n: int, repeat: int) -> tuple[float, float, dict[str, float], int, int]:
    """Best of ``repeat`` runs of each (the timings are a fraction of a second: one run is noisy),
    the two alternated; each release through a fresh Dataset and ledger."""
    specs = report_specs(n)
    computing = releasing = float("inf")
    measures: dict[str, float] = {}
    for _ in range(repeat):
        ds = ia.Dataset.from_arrow(table, policy=POLICY)
        # warm up (numba's import, DuckDB's first scan of the table), outside both timings
        compute_cohorts(ds.connection, ds.vocabulary, MAIN, POLICY.k + 1)
        start = time.perf_counter()
        alone = [
            compute_cohorts(
                ds.connection, ds.vocabulary, spec.by, POLICY.k, margins=spec.margins, where=spec.filters or None,
                protect=spec.protect, base=spec.base, include_inactive=False,
            )
            for spec in specs
        ]
        computing = min(computing, time.perf_counter() - start)
        start = time.perf_counter()
        with ds.releasing():
            released = ds.cohort_tables(specs)
        seconds = time.perf_counter() - start
        if seconds < releasing:
            releasing, measures = seconds, ds.audit_measures()
        ds.close()
    # what the joint audit costs in cells: suppressed when each table is protected alone, and as released
    before, after = (sum(int(t.suppressed.sum()) for t in tables) for tables in (alone, released))
    return computing, releasing, measures, before, after


def bench_written_report(table: pa.Table, n: int, out: Path) -> tuple[float, float]:
    """The whole ``write_report`` of ``n`` tables (CSV, Parquet, JSON, charts, report.html,
    audit.json), and the audit's part of it."""
    ds = ia.Dataset.from_arrow(table, policy=POLICY)
    compute_cohorts(ds.connection, ds.vocabulary, MAIN, POLICY.k + 1)
    specs = report_specs(n)
    config = ReportConfig(
        input=InputSpec(identities=["synthetic"]),
        cohorts=[
            CohortSpec(name=f"t{i}", by=list(s.by), where={d: list(v) for d, v in s.where}) for i, s in enumerate(specs)
        ],
    )
    start = time.perf_counter()
    write_report(ds, config, out, [])
    whole = time.perf_counter() - start
    audit = ds.audit_measures()["seconds"]
    ds.close()
    return whole, audit


def bench_segments(table: pa.Table, n: int) -> tuple[float, float, dict[str, float], int, int]:
    ds = ia.Dataset.from_arrow(table, policy=POLICY)
    segment_size(ds.connection, ia.Segment(name="warm-up", where={}), False)
    segments = segment_sequence(n)
    start = time.perf_counter()
    for segment in segments:  # what answering costs without the gate: the size and the list
        segment_size(ds.connection, segment, False)
        ds.connection.sql(
            f"SELECT pseudonym FROM identities WHERE {' AND '.join(_in(d, v) for d, v in segment.where.items())} "
            "AND age <> '_0_to_14' ORDER BY pseudonym"
        ).to_arrow_table()
    computing = time.perf_counter() - start
    refused = lists = 0
    start = time.perf_counter()
    for segment in segments:
        try:
            result = ds.segment(segment)
            if not result.suppressed:
                result.members()
                lists += 1
        except ia.PrivacyError:
            refused += 1
    published = time.perf_counter() - start
    measures = ds.audit_measures()
    ds.close()
    return computing, published, measures, lists, refused


def _in(dim: str, values: list[str]) -> str:
    return f"{dim} IN ({', '.join(repr(v) for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description="release audit benchmark")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--reports", type=int, nargs="*", default=[3, 10, 30])
    parser.add_argument("--segments", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5, help="runs of the reports of up to 10 tables (best taken)")
    args = parser.parse_args()

    start = time.perf_counter()
    table = duckdb.connect().sql(population_sql(args.rows)).to_arrow_table()
    print(f"generated {args.rows:,} rows in {time.perf_counter() - start:.1f} s")
    lines = []
    with tempfile.TemporaryDirectory() as scratch:
        for n in args.reports:
            computing, releasing, m, alone, released = bench_report(table, n, args.repeat if n <= 10 else 1)
            whole, audit = bench_written_report(table, n, Path(scratch) / f"report-{n}")
            lines.append(
                f"| report of {n} tables | {computing:.2f} s | {releasing:.2f} s | "
                f"**{releasing / computing - 1:+.0%}** "
                f"| {m['seconds']:.2f} s ({m['seconds'] / computing:.0%}) | {whole:.2f} s, audit {audit:.2f} s: "
                f"**{audit / (whole - audit):+.0%}** | {int(m['classes']):,} classes of {int(m['atoms']):,} "
                f"atoms, {int(m['rows']):,} counts; {int(m['solves'])} LP solves; suppressed cells {alone:,} "
                f"alone, {released:,} released |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    if args.segments:
        computing, published, m, lists, refused = bench_segments(table, args.segments)
        lines.append(
            f"| {args.segments} segments with member lists | {computing:.2f} s | {published:.2f} s | "
            f"**{published / computing - 1:+.0%}** | {m['seconds']:.2f} s ({m['seconds'] / computing:.0%}) | "
            f"| {lists} lists released, {refused} refused; "
            f"{int(m['audits'])} audits, {int(m['solves'])} LP solves |"
        )
    print()
    print(f"{args.rows:,} identities; computing = without the gate; released = through it, end to end; "
          "audit = the gate's own time (atoms, joint LP audit, member classes), its share of computing")  # fmt: skip
    print("| release | computing the answers | released | what the release adds | of which the audit "
          "| whole report written (audit / the rest) | audited |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---|")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
