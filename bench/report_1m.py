"""The CLI end to end on a generated 1 M identity file: load, report, exit code, time, peak RSS.

.venv/bin/python bench/report_1m.py            # generates bench/.data/report-1m once (~1.7 GB)
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py (named by its issue) would shadow the standard library's `http` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / ".data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--identities", type=int, default=1_000_000)
    args = parser.parse_args()
    folder = DATA / f"report-{args.identities}"
    if not (folder / "identities.ndjson").exists():
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "data" / "generate.py"),
                "--identities",
                str(args.identities),
                "--out",
                str(folder),
            ],
            check=True,
        )
    out = Path(tempfile.mkdtemp(prefix="ia-report-")) / "report"
    command = [
        str(Path(sys.executable).with_name("identity-analytics")), "report",
        "--identities", str(folder / "identities.ndjson"), "--demographics", str(folder / "demographics.ndjson"),
        "--by", "age,income,parental_status", "--by", "gender,citizenship", "--by", "locale",
        "--reference-date", "2026-11-01", "--out", str(out),
    ]  # fmt: skip
    env = dict(os.environ, IDENTITY_ANALYTICS_PSEUDONYM_KEY=os.environ.get("IDENTITY_ANALYTICS_PSEUDONYM_KEY", "bench"))
    start = time.perf_counter()
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        audit = json.loads((out / "audit.json").read_text()) if result.returncode == 0 else {}
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        sys.exit(f"identity-analytics report failed with exit code {result.returncode} after {seconds:.1f} s")
    size = (folder / "identities.ndjson").stat().st_size / 1e9
    print(f"identity-analytics report on {args.identities:,} identities ({size:.2f} GB NDJSON + demographics)")
    print(f"exit code {result.returncode}, {seconds:.1f} s, peak RSS {peak:.0f} MiB")
    loaded = audit["load_report"]["identities"]["loaded"]
    tables = ", ".join(
        f"{t['name']} ({t['cells']} cells, {t['primary_suppressions']}+{t['secondary_suppressions']} suppressed)"
        for t in audit["tables"]
    )
    print(f"{loaded:,} identities loaded; tables: {tables}")


if __name__ == "__main__":
    main()
