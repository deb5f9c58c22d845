"""The release ledger: everything published from one store (or one ledger directory), kept.

A ledger holds, per release, the blocks of counts it published (see
:mod:`identity_analytics.release.blocks`), the members of every member list (as 128-bit
hashes of their pseudonyms) and a snapshot of the data of every epoch releases were counted
at (so that a later release over changed data can be audited against them). It lives in
memory (:class:`MemoryLedger`, for a Dataset without a store) or in a directory
(:class:`FileLedger`: ``<store>/ledger/`` of a store, or any directory given as ``ledger=``)::

    lock                 an flock: one transaction at a time, across processes
    log.jsonl            one line per committed transaction (a release or a reset), appended
    lists/<n>.parquet    the members of each released member list
    epochs/<id>/         identities.parquet and minors.parquet of each epoch released from

A transaction is written in that order (list files, snapshot, then the log line, each
fsynced), so a crash leaves either the whole release recorded or none of it: an unfinished
last line (no newline) is ignored and cut off by the next transaction. Only what comes after
the last ``reset`` line counts; a reset is an operator's command, recorded with its reason.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from identity_analytics.errors import PrivacyError
from identity_analytics.release.blocks import CURRENT_EPOCH, Block
from identity_analytics.release.ledger_files import carry, fsync_directory, fsync_file, hold, write_parquet

LEDGER_FORMAT = "identity-analytics-ledger"
LEDGER_VERSION = 1
LOG = "log.jsonl"


@dataclass(frozen=True)
class MemberList:
    """A released member list: its release, label, size and members (a ``member`` column of
    128-bit hashes of the pseudonyms, in a file or in memory)."""

    release: int
    label: str
    size: int
    path: Path | None = None
    members: pa.Table | None = None

    def table(self) -> pa.Table:
        if self.members is not None:
            return self.members
        assert self.path is not None
        return pq.read_table(self.path)


@dataclass
class LedgerState:
    """What a ledger holds now (since its last reset)."""

    blocks: list[Block] = field(default_factory=list)
    lists: list[MemberList] = field(default_factory=list)
    #: the highest k releases were audited at: a lower k would publish what they protect
    floor: int = 0
    key_id: str | None = None
    #: snapshot directory of every epoch releases were counted at (none in memory)
    epochs: dict[str, Path] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    releases: int = 0

    def apply(self, entry: dict[str, Any], root: Path | None) -> None:
        """Fold one log entry in."""
        if entry.get("kind") == "reset":  # the numbering goes on; nothing before counts
            self.blocks, self.lists, self.floor, self.key_id = [], [], 0, None
            self.epochs, self.labels = {}, {}
            return
        release = self.releases
        self.releases += 1
        self.labels[release] = str(entry.get("label", f"release {release}"))
        self.floor = max(self.floor, int(entry.get("k", 0)))
        self.key_id = entry.get("key_id") or self.key_id
        self.blocks.extend(Block.from_json(b, release) for b in entry.get("blocks", []))
        for item in entry.get("lists", []):
            path = (root / item["file"]) if root is not None else None
            self.lists.append(MemberList(release, item["label"], int(item["size"]), path=path))
        snapshot = entry.get("snapshot")
        if snapshot and root is not None:
            self.epochs[str(entry["epoch"])] = root / snapshot
        for epoch, folder in entry.get("snapshots", {}).items():
            if root is not None:
                self.epochs[str(epoch)] = root / folder


@dataclass
class Transaction:
    """Changes gathered while a transaction is open; written by the ledger on success."""

    state: LedgerState
    label: str = ""
    k: int = 0
    key_id: str | None = None
    epoch: str | None = None
    blocks: list[Block] = field(default_factory=list)
    lists: list[tuple[str, pa.Table]] = field(default_factory=list)
    #: writes the data of the transaction's epoch into a directory (for a new epoch)
    snapshot: Callable[[Path], None] | None = None
    #: snapshots of other epochs to keep (releases carried over from another ledger)
    snapshots: dict[str, Path] = field(default_factory=dict)

    @property
    def release(self) -> int:
        """The number this transaction's release gets in the ledger."""
        return self.state.releases

    @property
    def empty(self) -> bool:
        return not self.blocks and not self.lists


class Ledger:
    """Base of the two ledgers: one transaction at a time, all or nothing."""

    #: how messages name the ledger
    description = "ledger"
    persistent = False

    def _begin(self) -> LedgerState:
        raise NotImplementedError

    def _write(self, transaction: Transaction) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Hold the ledger; what the block adds is recorded when it ends, also if it raises
        (an answer is added only once it is accepted, and the caller may already hold it)."""
        with self._locked(), _opening(self):
            transaction = Transaction(self._begin())
            try:
                yield transaction
            finally:
                if not transaction.empty:
                    self._write(transaction)

    def state(self) -> LedgerState:
        with self._locked():
            return self._begin()

    def reset(self, reason: str) -> None:
        """Forget every release so far (an operator's decision, recorded with its reason)."""
        raise NotImplementedError


class MemoryLedger(Ledger):
    """A ledger that lives as long as its Dataset (data that never changes: one epoch)."""

    description = "this Dataset's ledger (in memory)"

    def __init__(self) -> None:
        self._state = LedgerState()
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            yield

    def _begin(self) -> LedgerState:
        return self._state

    def _write(self, transaction: Transaction) -> None:
        entry = _entry(transaction, lists=[])
        self._state.apply(entry, None)
        release = self._state.releases - 1
        for label, members in transaction.lists:
            self._state.lists.append(MemberList(release, label, members.num_rows, members=members))

    def reset(self, reason: str) -> None:
        with self._lock:
            self._state.apply({"kind": "reset", "reason": reason}, None)


class FileLedger(Ledger):
    """A ledger in a directory (see the module docstring), shared by every process using it."""

    persistent = True

    def __init__(self, root: str | Path, *, what: str | None = None) -> None:
        self.root = Path(root)
        self.description = what or f"the ledger at {self.root}"
        self._cache: tuple[tuple[int, int], int, LedgerState] | None = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "lists").mkdir(exist_ok=True)
            (self.root / "epochs").mkdir(exist_ok=True)
        except OSError as error:
            raise PrivacyError(
                f"cannot keep {self.description} ({error.strerror or type(error).__name__}); nothing is "
                "published without recording it: make the directory writable"
            ) from None
        with hold(self.root):
            yield

    def _begin(self) -> LedgerState:
        log = self.root / LOG
        try:
            stat = log.stat()
        except FileNotFoundError:
            self._cache = None
            return LedgerState()
        identity = (stat.st_dev, stat.st_ino)
        if self._cache is not None and self._cache[0] == identity and self._cache[1] <= stat.st_size:
            _, offset, state = self._cache
        else:
            offset, state = 0, LedgerState()
        with log.open("rb") as stream:
            stream.seek(offset)
            data = stream.read()
        end = data.rfind(b"\n") + 1  # an unfinished last line is a transaction that never completed
        for number, line in enumerate(data[:end].splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                raise PrivacyError(
                    f"{log}: entry {number} past byte {offset} is damaged; releases are refused until the "
                    "ledger is repaired (restore it from a backup)"
                ) from None
            if entry.get("kind") == "ledger":
                continue
            state.apply(entry, self.root)
        self._cache = (identity, offset + end, state)
        return state

    def _append(self, entry: dict[str, Any]) -> None:
        log = self.root / LOG
        fresh = not log.exists()
        with log.open("ab") as stream:
            if fresh:
                header = {"kind": "ledger", "format": LEDGER_FORMAT, "version": LEDGER_VERSION, "created_at": _now()}
                stream.write(json.dumps(header).encode() + b"\n")
            good = self._cache[1] if self._cache is not None else None
            if good is not None and stream.tell() > good:
                stream.truncate(good)  # an unfinished line of a crashed transaction
                stream.seek(good)
            stream.write(json.dumps(entry, separators=(",", ":")).encode("utf-8") + b"\n")
            stream.flush()
            os.fsync(stream.fileno())
        if fresh:
            fsync_directory(self.root)

    def _write(self, transaction: Transaction) -> None:
        files = []
        for i, (label, members) in enumerate(transaction.lists):
            name = f"lists/{transaction.release:06d}-{i}.parquet"
            write_parquet(members, self.root / name)
            files.append({"label": label, "size": members.num_rows, "file": name})
        if files:
            fsync_directory(self.root / "lists")
        snapshot = None
        epoch = transaction.epoch
        if epoch is not None and epoch not in transaction.state.epochs and transaction.snapshot is not None:
            snapshot = f"epochs/{epoch}"
            target = self.root / snapshot
            if not target.exists():
                work = self.root / "epochs" / f".{epoch}.{secrets.token_hex(6)}"
                work.mkdir()
                try:
                    transaction.snapshot(work)
                    for path in work.iterdir():
                        fsync_file(path)
                    os.rename(work, target)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
                fsync_directory(self.root / "epochs")
        entry = _entry(transaction, lists=files, snapshot=snapshot)
        carried = {}
        for other, folder in transaction.snapshots.items():
            if other == epoch or other in transaction.state.epochs:
                continue
            name = f"epochs/{other}"
            if not (self.root / name).exists():
                work = self.root / "epochs" / f".{other}.{secrets.token_hex(6)}"
                try:
                    carry(folder, work)
                    os.rename(work, self.root / name)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
            carried[other] = name
        if carried:
            entry["snapshots"] = carried
        self._append(entry)
        self._begin()

    def adopt(
        self,
        state: LedgerState,
        *,
        epoch: str,
        snapshot: Callable[[Path], None] | None,
        k: int,
        key_id: str | None,
        source: str,
    ) -> None:
        """Record the releases another ledger holds (a Dataset saved into this store keeps
        publishing here, so what it published before must be here too). Releases of the
        in-memory epoch are of the data being saved: they take its ``epoch``."""
        if not state.blocks and not state.lists:
            return
        with self._locked(), _opening(self):
            transaction = Transaction(self._begin(), label=f"releases carried over from {source}")
            transaction.k, transaction.key_id, transaction.epoch = max(k, state.floor), key_id, epoch
            transaction.snapshot = snapshot
            transaction.blocks = [b.stamped(epoch if b.epoch == CURRENT_EPOCH else b.epoch, -1) for b in state.blocks]
            transaction.lists = [(m.label, m.table()) for m in state.lists]
            transaction.snapshots = dict(state.epochs)
            self._write(transaction)

    def history(self) -> list[dict[str, Any]]:
        """Every committed entry of the log, in order (resets included), summarised: kind, time,
        label or reason, k, and how many counts and member lists a release published."""
        log = self.root / LOG
        if not log.exists():
            return []
        data = log.read_bytes()
        entries: list[dict[str, Any]] = []
        release = 0
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                entries.append({"kind": "damaged"})
                continue
            kind = entry.get("kind")
            if kind == "reset":
                entries.append({"kind": "reset", "at": entry.get("at"), "reason": entry.get("reason")})
            elif kind == "release":
                blocks = entry.get("blocks", [])
                entries.append({
                    "kind": "release", "release": release, "at": entry.get("at"), "label": entry.get("label"),
                    "k": entry.get("k"), "counts": sum(len(b.get("cells", [])) for b in blocks),
                    "member_lists": len(entry.get("lists", [])),
                })  # fmt: skip
                release += 1
        return entries

    def reset(self, reason: str) -> None:
        if not reason.strip():
            raise ValueError("give a reason for resetting the ledger; it is recorded")
        with self._locked(), _opening(self):
            self._begin()
            self._append({"kind": "reset", "at": _now(), "reason": reason.strip()})
            self._begin()


def _entry(transaction: Transaction, *, lists: list[dict[str, Any]], snapshot: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": "release",
        "at": _now(),
        "label": transaction.label,
        "k": transaction.k,
        "key_id": transaction.key_id,
        "epoch": transaction.epoch,
        "blocks": [b.to_json() for b in transaction.blocks],
        "lists": lists,
    }
    if snapshot is not None:
        entry["snapshot"] = snapshot
    return entry


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# --- open transactions: one per ledger in this process --------------------------------------

_open: set[object] = set()
_open_guard = threading.Lock()


def _key(ledger: Ledger) -> object:
    return ledger.root.resolve() if isinstance(ledger, FileLedger) else id(ledger)


def in_use(root: Path) -> bool:
    """Whether a transaction is open on the ledger directory ``root`` in this process."""
    with _open_guard:
        return root.resolve() in _open


@contextlib.contextmanager
def _opening(ledger: Ledger) -> Iterator[None]:
    """Mark a transaction open on ``ledger``; refuse a second one (the lock is re-entrant
    within a thread, so a second Dataset over the same store would not see the first's
    pending answers)."""
    key = _key(ledger)
    with _open_guard:
        if key in _open:
            raise PrivacyError(
                f"refused: {ledger.description} has a release open in this process (another Dataset's "
                "`releasing()` block, or a report being written); finish it first, so that this answer is "
                "audited with it"
            )
        _open.add(key)
    try:
        yield
    finally:
        with _open_guard:
            _open.discard(key)


