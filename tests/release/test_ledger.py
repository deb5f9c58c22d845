"""The ledger: all or nothing per release, serialised across threads and processes, fail closed."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import identity_analytics as ia
from identity_analytics.release import joint
from identity_analytics.release.ledger import FileLedger
from identity_analytics.release.stored import store_ledger
from tests.release.attacker import POLICY, Attacker, identity_rows, publish_size, segment

CELLS = {("_25_to_34", "FR"): 30, ("_25_to_34", "IS"): 3, ("_35_to_44", "FR"): 25}
DIMS = ("age", "citizenship")


def _store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    ia.Dataset.from_arrow(identity_rows(CELLS, DIMS), policy=POLICY).save(store)
    return store


def test_a_crash_mid_release_leaves_the_ledger_as_it_was(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ds = ia.Dataset.open(store, policy=POLICY)
    ds.segment(segment({"age": ["_25_to_34"]}))
    log = store / "ledger" / "log.jsonl"
    whole = log.read_bytes()
    with log.open("ab") as stream:  # a release killed while its line was being written
        stream.write(b'{"kind":"release","blocks":[{"label":"half')
    state = store_ledger(store).state()
    assert state.releases == 1 and len(state.blocks) == 1
    again = ia.Dataset.open(store, policy=POLICY)
    assert again.segment(segment({"citizenship": ["FR"]})).size == 55  # the next release cuts the half line off
    lines = log.read_bytes().splitlines()
    assert log.read_bytes().startswith(whole) and all(json.loads(line) for line in lines)
    assert store_ledger(store).state().releases == 2


def test_a_damaged_ledger_refuses_every_release(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ia.Dataset.open(store, policy=POLICY).segment(segment({"age": ["_25_to_34"]}))
    log = store / "ledger" / "log.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"kind":"release"', b'"kind":"release"\x00{', 1))
    with pytest.raises(ia.PrivacyError, match=r"log\.jsonl: entry 2 .* damaged"):
        ia.Dataset.open(store, policy=POLICY).cohorts("age")


def test_a_refusal_records_nothing_of_itself_and_keeps_what_was_handed_out(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ds = ia.Dataset.open(store, policy=POLICY)
    attacker = Attacker([identity_rows(CELLS, DIMS).to_pylist()], 10)
    with pytest.raises(ia.PrivacyError), ds.releasing():
        attacker.cohort_table(ds.cohorts("age"))
        publish_size(ds, attacker, {"age": ["_25_to_34"]})
        ds.segment(segment({"age": ["_25_to_34"], "citizenship": ["FR"]}))  # refused: 33 - 30
        raise AssertionError("not reached")
    state = store_ledger(store).state()
    assert state.releases == 1 and len(state.blocks) == 2  # the table and the size the caller holds
    # so a later run cannot combine them with the size of FR (33 + 25 - 55: the three of IS)
    assert not publish_size(ia.Dataset.open(store, policy=POLICY), attacker, {"citizenship": ["FR"]})
    assert attacker.narrow() == []


def test_past_its_work_budget_the_audit_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path)
    ds = ia.Dataset.open(store, policy=POLICY)
    ds.cohorts(["age", "citizenship"])
    monkeypatch.setattr(joint, "WORK_BUDGET", 1)
    with pytest.raises(ia.PrivacyError, match="could not be audited .* Nothing was published"):
        ds.segment(segment({"citizenship": ["FR"]}))
    assert store_ledger(store).state().releases == 1


def test_threads_and_datasets_over_one_store_take_turns(tmp_path: Path) -> None:
    store = _store(tmp_path)
    datasets = [ia.Dataset.open(store, policy=POLICY) for _ in range(4)]
    attacker = Attacker([identity_rows(CELLS, DIMS).to_pylist()], 10)
    wheres = [{"age": ["_25_to_34"]}, {"citizenship": ["FR"]}, {"age": ["_25_to_34"], "citizenship": ["FR"]},
              {"age": ["_35_to_44"]}]  # fmt: skip
    lock = threading.Lock()

    def ask(i: int) -> None:
        try:
            result = datasets[i].segment(segment(wheres[i]))
        except ia.PrivacyError:
            return
        with lock:
            attacker.count(wheres[i], result.size)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert attacker.narrow() == []
    assert store_ledger(store).state().releases == len(attacker.constraints)


def test_a_store_replaced_under_an_open_dataset_refuses_it(tmp_path: Path) -> None:
    store = _store(tmp_path)
    stale = ia.Dataset.open(store, policy=POLICY)
    more = {**CELLS, ("_45_to_54", "FR"): 12}
    ia.Dataset.from_arrow(identity_rows(more, DIMS), policy=POLICY).save(store, overwrite=True)
    with pytest.raises(ia.PrivacyError, match="was replaced since this Dataset read it"):
        stale.cohorts("age")
    assert publish_size(ia.Dataset.open(store, policy=POLICY), Attacker([], 10), {"age": ["_45_to_54"]})


def test_a_ledger_directory_that_cannot_be_written_refuses(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    ds = ia.Dataset.from_arrow(identity_rows(CELLS, DIMS), policy=POLICY, ledger=blocked / "ledger")
    with pytest.raises(ia.PrivacyError, match="cannot keep the ledger at .* make the directory writable"):
        ds.cohorts("age")
    assert FileLedger(tmp_path / "elsewhere").history() == []
