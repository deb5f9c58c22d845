from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest

import identity_analytics as ia
from identity_analytics.risk import size_bands
from identity_analytics.vocabulary import DIMENSIONS

POLICY = ia.PrivacyPolicy(pseudonym_key=b"risk-tests")


def _dataset(rows: list[dict[str, str]], policy: ia.PrivacyPolicy = POLICY) -> ia.Dataset:
    base = {d: "undetermined" for d in DIMENSIONS} | {"state": "active"}
    table = pa.Table.from_pylist([{"pseudonym": policy.pseudonym(str(i)), **base, **r} for i, r in enumerate(rows)])
    return ia.Dataset.from_arrow(table.select(["pseudonym", *DIMENSIONS]), policy=policy)


def test_k_anonymity_of_quasi_identifiers() -> None:
    rows = [{"age": "_25_to_34", "gender": "female", "income": i} for i in ["low"] * 6 + ["high"] * 6]
    rows += [{"age": "_65_plus", "gender": "male", "income": "low"}] * 3
    report = _dataset(rows, POLICY.model_copy(update={"k": 5})).risk(["age", "gender"], sensitive="income")
    assert report.records == 15 and report.classes == 2
    # the class of 3 is counted, never sized: no smallest size, bands of at least k, records rounded up to k
    assert report.smallest_class is None and report.class_sizes == {"1-4": 1, "10-24": 1}
    assert report.classes_below_k == 1 and report.records_below_k == 5 and not report.k_anonymous
    assert report.l_diversity == 1 and report.l_histogram == {1: 1, 2: 1}
    assert "NOT k-anonymous" in str(report)


def test_risk_matches_a_brute_force_count(fixture_dataset: ia.Dataset) -> None:
    rows = [r for r in fixture_dataset.identities.to_pylist() if r["state"] in ("active", "undetermined")]
    qis = ["age", "gender", "citizenship"]
    classes = Counter(tuple(r[q] for q in qis) for r in rows)
    report = fixture_dataset.risk(qis, sensitive="income")
    assert report.classes == len(classes) and report.records == len(rows)
    smallest = min(classes.values())
    assert report.smallest_class == (smallest if smallest >= 10 else None)
    assert report.records_below_k == -(-sum(n for n in classes.values() if n < 10) // 10) * 10
    assert report.class_sizes == size_bands(dict(Counter(classes.values())), 10)
    assert sum(report.class_sizes.values()) == report.classes


def test_a_call_may_raise_k_but_never_lower_it(fixture_dataset: ia.Dataset) -> None:
    assert fixture_dataset.risk(["age", "gender"], k=20).k == 20
    with pytest.raises(ValueError, match="below the policy's k=10"):
        fixture_dataset.risk(["age", "gender"], k=5)


@pytest.mark.parametrize(
    ("args", "message"),
    [((["age", "eyes"],), "among"), ((["age"], "age"), "cannot also be"), (([],), "among")],
)
def test_bad_risk_requests(fixture_dataset: ia.Dataset, args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fixture_dataset.risk(*args)  # type: ignore[arg-type]
