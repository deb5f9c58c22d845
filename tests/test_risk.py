from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest

import identity_analytics as ia
from identity_analytics.vocabulary import DIMENSIONS

POLICY = ia.PrivacyPolicy(pseudonym_key=b"risk-tests")


def _dataset(rows: list[dict[str, str]]) -> ia.Dataset:
    base = {d: "undetermined" for d in DIMENSIONS} | {"state": "active"}
    table = pa.Table.from_pylist([{"pseudonym": POLICY.pseudonym(str(i)), **base, **r} for i, r in enumerate(rows)])
    return ia.Dataset.from_arrow(table.select(["pseudonym", *DIMENSIONS]), policy=POLICY)


def test_k_anonymity_of_quasi_identifiers() -> None:
    rows = [{"age": "_25_to_34", "gender": "female", "income": i} for i in ["low"] * 6 + ["high"] * 6]
    rows += [{"age": "_65_plus", "gender": "male", "income": "low"}] * 3
    report = _dataset(rows).risk(["age", "gender"], sensitive="income", k=5)
    assert report.records == 15 and report.classes == 2
    assert report.smallest_class == 3 and report.class_sizes == {3: 1, 12: 1}
    assert report.classes_below_k == 1 and report.records_below_k == 3 and not report.k_anonymous
    assert report.l_diversity == 1 and report.l_histogram == {1: 1, 2: 1}
    assert "NOT k-anonymous" in str(report)


def test_risk_matches_a_brute_force_count(fixture_dataset: ia.Dataset) -> None:
    rows = [r for r in fixture_dataset.identities.to_pylist() if r["state"] in ("active", "undetermined")]
    qis = ["age", "gender", "citizenship"]
    classes = Counter(tuple(r[q] for q in qis) for r in rows)
    report = fixture_dataset.risk(qis, sensitive="income")
    assert report.classes == len(classes) and report.records == len(rows)
    assert report.smallest_class == min(classes.values())
    assert report.records_below_k == sum(n for n in classes.values() if n < 10)
    assert dict(report.class_sizes) == dict(Counter(classes.values()))


@pytest.mark.parametrize(
    ("args", "message"),
    [((["age", "eyes"],), "among"), ((["age"], "age"), "cannot also be"), (([],), "among")],
)
def test_bad_risk_requests(fixture_dataset: ia.Dataset, args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fixture_dataset.risk(*args)  # type: ignore[arg-type]
