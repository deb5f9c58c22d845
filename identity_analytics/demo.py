"""``make demo``: load the bundled fixtures with embedded DuckDB and print a protected table."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from identity_analytics.dataset import Dataset
from identity_analytics.policy import PrivacyPolicy

FIXTURES = Path(os.path.relpath(Path(__file__).resolve().parent.parent / "data" / "fixtures"))


def main() -> None:
    policy = PrivacyPolicy(k=10, pseudonym_key=b"demo-key: set IDENTITY_ANALYTICS_PSEUDONYM_KEY in real use")
    ds = Dataset.from_files(
        FIXTURES / "identities.ndjson",
        FIXTURES / "demographics.ndjson",
        policy=policy,
        reference_date=datetime.date(2026, 11, 1),
    )
    print(ds)
    print(ds.load_report)
    print(f"\nquarantine ({ds.quarantine.num_rows} records):")
    for row in ds.quarantine.to_pylist():
        print(f"  {row['source']}:{row['line']}: {row['reason']}")
    table = ds.cohorts(["age", "income", "parental_status"])
    print(f"\nage x income x parental_status, k={policy.k} (active identities; '·' = suppressed):")
    print(table)


if __name__ == "__main__":
    main()
