from __future__ import annotations

import datetime

import pyarrow as pa
import pytest

import identity_analytics as ia
from identity_analytics.schema import ANALYTICS_COLUMNS


def _table(rows: int = 3, **overrides: list[object]) -> pa.Table:
    policy = ia.PrivacyPolicy(pseudonym_key=b"k")
    data: dict[str, list[object]] = {
        "pseudonym": [policy.pseudonym(f"id-{i}") for i in range(rows)],
        "state": ["active"] * rows,
        "age": ["_25_to_34"] * rows,
        "income": ["low"] * rows,
        "gender": ["female"] * rows,
        "household": ["true"] * rows,
        "relationship_status": ["single"] * rows,
        "parental_status": ["parent"] * rows,
        "citizenship": ["FR"] * rows,
        "locale": ["fr-FR"] * rows,
    }
    data.update(overrides)
    return pa.table(data)


def test_from_arrow_round_trips_the_analytics_layout(policy: ia.PrivacyPolicy) -> None:
    table = _table()
    ds = ia.Dataset.from_arrow(table, policy=policy)
    assert ds.identities.equals(table)
    assert ds.load_report.identities == ia.SourceCounts(read=3, loaded=3)
    assert ds.quarantine.num_rows == 0 and len(ds) == 3


def test_from_arrow_refuses_extra_columns_that_could_hold_identifiers(policy: ia.PrivacyPolicy) -> None:
    with pytest.raises(ia.LoadError, match=r"unexpected columns \['email'\]"):
        ia.Dataset.from_arrow(_table().append_column("email", pa.array(["a@b"] * 3)), policy=policy)


def test_from_arrow_refuses_missing_columns(policy: ia.PrivacyPolicy) -> None:
    with pytest.raises(ia.LoadError, match=r"missing columns \['locale'\]"):
        ia.Dataset.from_arrow(_table().drop_columns(["locale"]), policy=policy)


@pytest.mark.parametrize(("column", "value"), [("age", "37"), ("income", None), ("citizenship", "USA")])
def test_from_arrow_refuses_values_outside_the_categories(policy: ia.PrivacyPolicy, column: str, value: object) -> None:
    with pytest.raises(ia.LoadError, match=f"column '{column}' has 1 values outside its categories"):
        ia.Dataset.from_arrow(
            _table(
                **{
                    column: ["low" if column == "income" else "FR" if column == "citizenship" else "_25_to_34"] * 2
                    + [value]
                }
            ),
            policy=policy,
        )


def test_from_arrow_refuses_raw_ids_as_pseudonyms(policy: ia.PrivacyPolicy) -> None:
    with pytest.raises(ia.LoadError, match="64 lowercase hex"):
        ia.Dataset.from_arrow(_table(pseudonym=["user-1", "user-2", "user-3"]), policy=policy)


def test_dataset_repr_and_context_manager(policy: ia.PrivacyPolicy) -> None:
    with ia.Dataset.from_arrow(_table(), policy=policy, reference_date=datetime.date(2026, 1, 2)) as ds:
        assert repr(ds) == "Dataset(identities=3, quarantined=0, k=10, reference_date=2026-01-02)"
        assert tuple(ds.identities.column_names) == ANALYTICS_COLUMNS


def test_reference_date_defaults_to_today(fixture_dataset: ia.Dataset, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "ids.ndjson"
    path.write_text('{"id": "a"}\n')
    assert (
        ia.Dataset.from_files(path, policy=ia.PrivacyPolicy(pseudonym_key=b"k")).reference_date == datetime.date.today()
    )
    assert fixture_dataset.reference_date == datetime.date(2026, 11, 1)


def test_from_parquet_reads_the_analytics_layout_in_place(policy: ia.PrivacyPolicy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    pq.write_table(_table(rows=25), tmp_path / "part-1.parquet")
    pq.write_table(_table(rows=5), tmp_path / "part-2.parquet")
    ds = ia.Dataset.from_parquet(tmp_path / "part-*.parquet", policy=policy)
    assert len(ds) == 30 and ds.load_report.identities.loaded == 30
    assert ds.cohorts("gender").total == 30


def test_from_parquet_refuses_other_layouts(policy: ia.PrivacyPolicy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    pq.write_table(_table().append_column("email", pa.array(["a@b"] * 3)), tmp_path / "x.parquet")
    with pytest.raises(ia.LoadError, match="unexpected columns"):
        ia.Dataset.from_parquet(tmp_path / "x.parquet", policy=policy)
