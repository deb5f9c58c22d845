"""Ingest benchmark: identity NDJSON -> analytics Arrow table.

Measured in one process, on the same file, in rounds whose order alternates (median of --repeat):
  * identity_analytics  Dataset.from_files(...).identities  (parse, dedupe, project, pseudonymise)
  * duckdb read_ndjson  of the same columns, with the same types, into an Arrow table
  * duckdb one query    read_ndjson + the same HMAC pseudonyms and vocabulary mapping in one bare
                        query, without the load's checks (what DuckDB itself can do)
  * pandas              json.loads per line + pandas.json_normalize (--pandas-repeat runs, each
                        set against a run of ours just before and just after it)
Peak RSS of each is measured in a fresh subprocess. Then a >= 1 GB file is streamed into a
Parquet store in a subprocess and its peak RSS is reported.

    .venv/bin/python bench/ingest.py                     # 200k identities + 1.1 GB streaming
    .venv/bin/python bench/ingest.py --skip-big          # without the 1 GB part
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py (named by its issue) would shadow the standard library's `http` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import gc
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / ".data"
KEY = b"bench-pseudonym-key"


def ensure_file(name: str, *args: str) -> Path:
    """Generate (once) a synthetic identities file with data/generate.py."""
    out = DATA / name
    path = out / "identities.ndjson"
    if not path.exists():
        subprocess.run([sys.executable, str(ROOT / "data" / "generate.py"), "--out", str(out), *args], check=True)
    return path


def run_ours(path: Path) -> int:
    import identity_analytics as ia

    with ia.Dataset.from_files(path, policy=ia.PrivacyPolicy(pseudonym_key=KEY)) as ds:
        return ds.identities.num_rows


def run_duckdb(path: Path) -> int:
    import duckdb

    from identity_analytics.loaders.staging import STRUCTURES, _sql_type

    columns = {k: _sql_type(v) for k, v in STRUCTURES["identity"].items()}
    con = duckdb.connect()
    try:
        table = con.sql(
            f"SELECT * FROM read_ndjson('{path}', columns={columns!r}, format='newline_delimited', records=true)"
        ).to_arrow_table()
        return table.num_rows
    finally:
        con.close()


def run_duckdb_projection(path: Path) -> int:
    """The privacy projection as one bare DuckDB query over ``read_ndjson``, into Arrow.

    Same columns, the same HMAC-SHA256 pseudonyms and vocabulary mapping (this library's SQL
    expressions), the JSON texts kept as the profile store keeps them; but none of the checks
    and bookkeeping of a load: no quarantine of bad records, no duplicate ranking, no
    demographics join, no counts. What DuckDB itself can do toward the same table.
    """
    import datetime

    import duckdb

    from identity_analytics.loaders import projection
    from identity_analytics.loaders.staging import DEMOGRAPHIC_FIELDS, STRUCTURES, TRAIT_FIELDS, _sql_type
    from identity_analytics.policy import PrivacyPolicy
    from identity_analytics.vocabulary import DIMENSIONS, Vocabulary

    columns = {k: _sql_type(v) for k, v in STRUCTURES["identity"].items()}
    ipad, opad = PrivacyPolicy(pseudonym_key=KEY).hmac_pads()
    con = duckdb.connect()
    try:
        projection.create_enum_types(con, Vocabulary.default())
        paths = ", ".join(f"'$.{f}'" for f in TRAIT_FIELDS)
        traits = ", ".join(f"_t[{i + 1}] AS trait_{f}" for i, f in enumerate(TRAIT_FIELDS))
        missing = ", ".join(f"NULL::VARCHAR AS d_{f}" for f in DEMOGRAPHIC_FIELDS)
        categories = ", ".join(f"{projection._category(d)} AS {d}" for d in DIMENSIONS)
        table = con.sql(
            f"""SELECT sha256($opad || unhex(sha256($ipad || encode(id)))) AS pseudonym, {categories},
                traits, metadata_public
            FROM (SELECT id ->> '$' AS id, state AS raw_state, {traits}, {missing}, traits, metadata_public,
                    {projection.completed_years("TRY_CAST(_t[1] AS DATE)")} AS _years
                FROM (SELECT *, json_extract_string(traits, [{paths}]) AS _t
                    FROM read_ndjson('{path}', columns={columns!r}, format='newline_delimited', records=true)))""",
            params={"ipad": ipad, "opad": opad, "reference_date": datetime.date.today()},
        ).to_arrow_table()
        return int(table.num_rows)
    finally:
        con.close()


def run_pandas(path: Path) -> int:
    import pandas as pd

    with path.open("rb") as f:
        frame = pd.json_normalize([json.loads(line) for line in f if line.strip()])
    return len(frame)


RUNNERS = {
    "identity_analytics": run_ours,
    "duckdb_read_ndjson": run_duckdb,
    "duckdb_one_query": run_duckdb_projection,
    "pandas_json_normalize": run_pandas,
}


def timed(name: str, path: Path, expected_rows: int) -> float:
    """Seconds one run of a loader takes (its row count checked)."""
    gc.collect()
    start = time.perf_counter()
    rows = RUNNERS[name](path)
    seconds = time.perf_counter() - start
    assert rows == expected_rows, (name, rows)
    return seconds


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM: unlike ru_maxrss, not inherited on exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_rss(mode: str, path: Path, *extra: str) -> tuple[float, str]:
    """Run one measurement in a fresh interpreter; (peak RSS MiB, its stdout)."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(path), *extra], check=True, capture_output=True, text=True
    ).stdout.strip()
    rss, _, rest = out.partition(" ")
    return float(rss), rest


def child(mode: str, path: Path, extra: list[str]) -> None:
    if mode == "stream":
        import identity_analytics as ia

        store = Path(extra[0])
        start = time.perf_counter()
        ds = ia.Dataset.from_files(
            path,
            policy=ia.PrivacyPolicy(pseudonym_key=KEY),
            store=store,
            memory_limit=extra[1],
            temp_directory=store.parent / "spill",
        )
        rows = len(ds)
        ds.close()
        print(f"{peak_rss_mib():.0f} {rows} {time.perf_counter() - start:.1f}")
    else:
        rows = RUNNERS[mode](path)
        print(f"{peak_rss_mib():.0f} {rows}")


def main() -> None:
    parser = argparse.ArgumentParser(description="ingest benchmark")
    parser.add_argument("--identities", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pandas-repeat", type=int, default=2, help="pandas runs (each between two runs of ours)")
    parser.add_argument("--big-bytes", type=float, default=1.1e9)
    parser.add_argument("--memory-limit", default="512MB", help="DuckDB memory limit when streaming the big file")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args.child[2:])
        return

    path = ensure_file(f"ingest-{args.identities}", "--identities", str(args.identities))
    size_mb = path.stat().st_size / 1e6
    print(f"file: {args.identities:,} identities, {size_mb:.0f} MB NDJSON (synthetic, Kratos shape)\n")
    times: dict[str, list[float]] = {"identity_analytics": [], "duckdb_read_ndjson": [], "duckdb_one_query": []}
    for round_ in range(args.repeat):
        for name in list(times)[:: 1 if round_ % 2 == 0 else -1]:
            times[name].append(timed(name, path, args.identities))
    # pandas takes 20-40 s a run, so the machine's pace drifts across it: each run is set
    # against the mean of a run of ours just before and one just after
    pandas_ratios: list[float] = []
    times["pandas_json_normalize"] = []
    for _ in range(args.pandas_repeat):
        before = timed("identity_analytics", path, args.identities)
        times["pandas_json_normalize"].append(timed("pandas_json_normalize", path, args.identities))
        after = timed("identity_analytics", path, args.identities)
        pandas_ratios.append(times["pandas_json_normalize"][-1] / ((before + after) / 2))

    ours = statistics.median(times["identity_analytics"])
    print(f"{'loader':<24}{'seconds':>9}{'rows/s':>12}{'ours / it':>11}{'peak RSS MiB':>14}")
    for name, values in times.items():
        seconds = statistics.median(values)
        ratio = statistics.median(pandas_ratios) if name == "pandas_json_normalize" else seconds / ours
        rss, _ = child_rss(name, path)
        print(f"{name:<24}{seconds:>9.2f}{args.identities / seconds:>12,.0f}{ratio:>10.2f}x{rss:>14.0f}")
    print(
        "\n'ours / it' = identity_analytics rows/s divided by that loader's rows/s "
        "(targets: >= 0.8x duckdb_read_ndjson, >= 20x pandas_json_normalize); for pandas, the median over its "
        f"runs ({', '.join(f'{r:.1f}x' for r in pandas_ratios)}) of its time against the runs of ours beside it"
    )

    if not args.skip_big:
        big = ensure_file("ingest-big", "--target-bytes", str(args.big_bytes))
        work = Path(tempfile.mkdtemp(prefix="ia-bench-"))
        try:
            rss, rest = child_rss("stream", big, str(work / "store"), args.memory_limit)
            rows, seconds = rest.split()
            print(
                f"\nstreaming {big.stat().st_size / 1e9:.2f} GB ({int(rows):,} identities) into a Parquet store "
                f"with memory_limit={args.memory_limit}: {float(seconds):.0f} s, peak RSS {rss:.0f} MiB "
                f"(target <= 1024 MiB)"
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
