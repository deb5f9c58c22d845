"""Attacks across Datasets, processes and runs over one store: its ledger audits them together."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import identity_analytics as ia
from tests.release.attacker import POLICY, Attacker, identity_rows, publish_size, publish_table

ALL = {"age": ["_25_to_34"]}
ALL_BUT_IS = {"age": ["_25_to_34"], "citizenship": ["FR"]}
CELLS = {("_25_to_34", "FR"): 30, ("_25_to_34", "IS"): 3, ("_35_to_44", "FR"): 25}
DIMS = ("age", "citizenship")


def _store(tmp_path: Path, cells: dict[tuple[str, ...], int] = CELLS, dims: tuple[str, ...] = DIMS) -> Path:
    store = tmp_path / "store"
    ia.Dataset.from_arrow(identity_rows(cells, dims), policy=POLICY).save(store)
    return store


def _attacker(cells: dict[tuple[str, ...], int]) -> Attacker:
    return Attacker([identity_rows(cells, DIMS).to_pylist()], 10)


def test_two_datasets_over_one_store_are_audited_together(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first, second = ia.Dataset.open(store, policy=POLICY), ia.Dataset.open(store, policy=POLICY)
    attacker = _attacker(CELLS)
    assert publish_size(first, attacker, ALL)
    assert not publish_size(second, attacker, ALL_BUT_IS)  # 33 - 30: the three of IS
    assert attacker.narrow() == []


def _cli(*args: str, key: str = "release-attack-tests") -> subprocess.Popen[str]:
    env = {**os.environ, "IDENTITY_ANALYTICS_PSEUDONYM_KEY": key}
    return subprocess.Popen(
        [sys.executable, "-m", "identity_analytics.cli", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_second_dataset_is_refused_while_a_release_is_open_on_the_store(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first, second = ia.Dataset.open(store, policy=POLICY), ia.Dataset.open(store, policy=POLICY)
    attacker = _attacker(CELLS)
    with first.releasing():
        assert publish_size(first, attacker, ALL)
        with pytest.raises(ia.PrivacyError, match="has a release open in this process"):
            second.segment(ia.Segment(name="all but IS", where=ALL_BUT_IS))
        with pytest.raises(ia.PrivacyError, match="finish it before replacing the store"):
            ia.Dataset.from_arrow(identity_rows(CELLS, DIMS), policy=POLICY).save(store, overwrite=True)
    assert not publish_size(second, attacker, ALL_BUT_IS)  # after the block: audited with it
    assert attacker.narrow() == []


def test_an_answer_asked_again_after_the_store_was_replaced_is_the_one_released(tmp_path: Path) -> None:
    store = _store(tmp_path)
    old = ia.Dataset.open(store, policy=POLICY)
    first = old.segment(ia.Segment(name="all", where=ALL)).size
    grown = pa.concat_tables([identity_rows(CELLS, DIMS), identity_rows({("_25_to_34", "DE"): 4}, DIMS, start=5000)])
    ia.Dataset.from_arrow(grown, policy=POLICY).save(store, overwrite=True)
    assert old.segment(ia.Segment(name="all", where=ALL)).size == first  # not recounted from the new files
    with pytest.raises(ia.PrivacyError, match="was replaced"):
        old.segment(ia.Segment(name="FR", where={"citizenship": ["FR"]}))


def test_two_cli_processes_over_one_store_are_audited_together(tmp_path: Path) -> None:
    store = _store(tmp_path)
    files = {}
    for name, where in (("all", ALL), ("all-but-IS", ALL_BUT_IS)):
        files[name] = tmp_path / f"{name}.yaml"
        lines = "".join(f"  {d}: [{', '.join(v)}]\n" for d, v in where.items())
        files[name].write_text(f"name: {name}\nwhere:\n{lines}")
    # both at once: the ledger's lock takes them in turn, the second is audited against the first
    runs = {name: _cli("segment", str(path), "--store", str(store)) for name, path in files.items()}
    results = {name: (run.wait(timeout=120), *run.communicate()) for name, run in runs.items()}
    codes = sorted(code for code, _, _ in results.values())
    assert codes == [0, 3], results
    attacker = _attacker(CELLS)
    for name, (code, out, err) in results.items():
        if code == 0:
            size = re.search(rf"segment {re.escape(name)}: ([\d,]+)", out)
            assert size, out
            attacker.count(ALL if name == "all" else ALL_BUT_IS, int(size.group(1).replace(",", "")))
        else:
            assert "refused" in err and "released before" in err, err
    assert attacker.narrow() == []
    # a third process sees both runs in the ledger
    shown = _cli("ledger", "show", "--store", str(store))
    out, _ = shown.communicate(timeout=60)
    assert shown.returncode == 0 and "1 release recorded" in out, out


def test_a_nightly_run_after_new_identities_does_not_count_the_newcomers(tmp_path: Path) -> None:
    dims = ("age", "gender")
    before = {("_25_to_34", "female"): 30, ("_25_to_34", "male"): 40, ("_35_to_44", "female"): 25}
    newcomers = {("_25_to_34", "female"): 3}
    store = tmp_path / "store"
    ia.Dataset.from_arrow(identity_rows(before, dims), policy=POLICY).save(store)
    night1 = ia.Dataset.open(store, policy=POLICY)
    first_rows = night1.identities.to_pylist()
    attacker = Attacker([first_rows], 10)
    publish_table(night1, attacker, dims)
    publish_size(night1, attacker, {"gender": ["female"]})
    # the next night: the store is loaded again with three more identities
    grown = identity_rows(before, dims).to_pylist() + identity_rows(newcomers, dims, start=10_000).to_pylist()
    ia.Dataset.from_arrow(pa.Table.from_pylist(grown), policy=POLICY).save(store, overwrite=True)
    night2 = ia.Dataset.open(store, policy=POLICY)
    attacker.epochs = [first_rows, night2.identities.to_pylist()]
    publish_table(night2, attacker, dims, epoch=1)
    publish_size(night2, attacker, {"gender": ["female"]}, epoch=1)
    publish_size(night2, attacker, {"age": ["_25_to_34"], "gender": ["female"]}, epoch=1)
    assert attacker.narrow() == []
    assert len(night2.ledger.state().blocks) >= 2  # the first night's releases are still there


def test_a_lower_k_cannot_publish_what_the_ledger_protects(tmp_path: Path) -> None:
    store = _store(tmp_path)
    attacker = _attacker(CELLS)
    publish_table(ia.Dataset.open(store, policy=POLICY), attacker, DIMS)
    lower = ia.Dataset.open(store, policy=POLICY.model_copy(update={"k": 3}))
    try:
        publish_table(lower, attacker, DIMS, where={"age": ["_25_to_34"]})
    except ia.PrivacyError as error:
        assert "k=10" in str(error) and "k >= 10" in str(error)
    assert attacker.narrow() == []


def test_a_ledger_kept_beside_files_audits_the_next_run(tmp_path: Path) -> None:
    table = identity_rows(CELLS, DIMS)
    ledger = tmp_path / "ledger"
    attacker = _attacker(CELLS)
    publish_size(ia.Dataset.from_arrow(table, policy=POLICY, ledger=ledger), attacker, ALL)
    again = ia.Dataset.from_arrow(table, policy=POLICY, ledger=ledger)
    assert not publish_size(again, attacker, ALL_BUT_IS)
    assert attacker.narrow() == []
    other_key = ia.Dataset.from_arrow(table, policy=ia.PrivacyPolicy(pseudonym_key=b"another"), ledger=ledger)
    with pytest.raises(ia.PrivacyError, match="another pseudonym key"):
        other_key.cohorts("age")


def test_saving_a_dataset_carries_what_it_published_into_the_store(tmp_path: Path) -> None:
    ds = ia.Dataset.from_arrow(identity_rows(CELLS, DIMS), policy=POLICY)
    attacker = _attacker(CELLS)
    publish_size(ds, attacker, ALL)
    store = tmp_path / "store"
    ds.save(store)
    reopened = ia.Dataset.open(store, policy=POLICY)
    assert not publish_size(reopened, attacker, ALL_BUT_IS)
    assert not publish_size(ds, attacker, ALL_BUT_IS)  # the saved Dataset publishes through the store too
    assert attacker.narrow() == []


def test_a_reset_is_an_operators_command_and_is_recorded(tmp_path: Path) -> None:
    store = _store(tmp_path)
    attacker = _attacker(CELLS)
    publish_size(ia.Dataset.open(store, policy=POLICY), attacker, ALL)
    run = _cli("ledger", "reset", "--store", str(store))
    _, err = run.communicate(timeout=60)
    assert run.returncode == 2 and "--reason" in err
    run = _cli("ledger", "reset", "--store", str(store), "--reason", "new data-sharing agreement")
    run.communicate(timeout=60)
    assert run.returncode == 0
    from identity_analytics.release.stored import store_ledger

    history = store_ledger(store).history()
    assert [e["kind"] for e in history] == ["release", "reset"]
    assert history[1]["reason"] == "new data-sharing agreement"
    # after the reset, earlier releases are no longer audited against: the operator's decision
    assert publish_size(ia.Dataset.open(store, policy=POLICY), Attacker([], 10), ALL_BUT_IS)
