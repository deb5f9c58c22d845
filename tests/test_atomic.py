"""Atomic directories: one-step exchange on Linux, the two-rename fallback and its recovery, leftovers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import identity_analytics.atomic as atomic
from identity_analytics.atomic import atomic_directory, atomic_file, previous_copy

MARKER = "done.txt"


def write(target: Path, content: str, *, overwrite: bool = True) -> None:
    with atomic_directory(target, marker=MARKER, what="test directory", overwrite=overwrite) as work:
        (work / "data.txt").write_text(content)
        (work / MARKER).write_text("")


def contents(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in directory.iterdir()}


def test_exchange_swaps_two_directories(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "from-a").write_text("")
    if not atomic.exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["from-a"] and not any((tmp_path / "a").iterdir())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux only")
def test_replacing_takes_one_exchange_on_linux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out"
    write(target, "first")

    rename = os.rename

    def no_rename(source: Path, destination: Path) -> None:
        if not str(source).endswith(".new"):  # naming a fresh work directory is fine
            raise AssertionError("a rename was used instead of the exchange")
        rename(source, destination)

    monkeypatch.setattr(os, "rename", no_rename)
    write(target, "second")
    assert contents(target) == {"data.txt": "second", MARKER: ""}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the previous tree is gone


def test_replacing_a_directory_keeps_no_leftover(tmp_path: Path) -> None:
    target = tmp_path / "out"
    write(target, "first")
    write(target, "second")
    assert contents(target)["data.txt"] == "second" and [p.name for p in tmp_path.iterdir()] == ["out"]


KILLED_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
import identity_analytics.atomic as atomic
atomic.exchange = lambda first, second: False  # as on a system without renameat2
rename, calls = os.rename, []
def rename_then_die(source, destination):
    if not str(source).endswith(".new"):  # not the naming of the work directory
        calls.append(source)
    if len(calls) == 2:  # the target is parked as .old; die before the new one takes its place
        os.kill(os.getpid(), signal.SIGKILL)
    rename(source, destination)
os.rename = rename_then_die
with atomic.atomic_directory(Path(sys.argv[1]), marker="done.txt", what="test directory", overwrite=True) as work:
    (work / "data.txt").write_text("second")
    (work / "done.txt").write_text("")
"""


def test_the_fallback_puts_back_a_previous_directory_stranded_by_a_kill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out"
    write(target, "first")
    child = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_RENAMES, str(target)])
    assert child.returncode == -9
    assert not target.exists() and contents(previous_copy(target))["data.txt"] == "first"

    monkeypatch.setattr(atomic, "exchange", lambda first, second: False)
    with pytest.raises(RuntimeError), atomic_directory(target, marker=MARKER, what="test directory", overwrite=True):
        raise RuntimeError("the next run fails too")
    assert contents(target) == {"data.txt": "first", MARKER: ""}  # put back before the next run began

    write(target, "third")
    assert contents(target)["data.txt"] == "third"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no .old, no work directory


def test_the_fallback_puts_back_the_previous_directory_when_the_second_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out"
    write(target, "first")
    monkeypatch.setattr(atomic, "exchange", lambda first, second: False)
    rename = os.rename

    def fail_on_the_work_directory(source: Path, destination: Path) -> None:
        if Path(source).name.startswith(".out.") and Path(source) != previous_copy(target):
            raise OSError("disk full")
        rename(source, destination)

    monkeypatch.setattr(os, "rename", fail_on_the_work_directory)
    with pytest.raises(OSError, match="disk full"):
        write(target, "second")
    assert contents(target)["data.txt"] == "first" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_stale_previous_copy_beside_a_complete_target_is_removed(tmp_path: Path) -> None:
    target = tmp_path / "out"
    write(target, "first")
    previous_copy(target).mkdir()
    (previous_copy(target) / MARKER).write_text("")
    write(target, "second")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_leftover_work_directories_are_removed_but_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "out"
    abandoned = tmp_path / ".out.0123456789ab"
    abandoned.mkdir()
    (abandoned / "half.txt").write_text("")
    unrelated = [tmp_path / ".out.v2.0123456789ab", tmp_path / ".other.0123456789ab", tmp_path / ".out.notes"]
    for path in unrelated:
        path.mkdir()
    live = tmp_path / ".out.ba9876543210"
    live.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()", str(live)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        write(target, "first")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
    assert not abandoned.exists()
    assert live.exists() and all(path.exists() for path in unrelated)


def test_an_existing_directory_is_kept_without_overwrite_or_marker(tmp_path: Path) -> None:
    target = tmp_path / "out"
    write(target, "first")
    with pytest.raises(FileExistsError, match="already exists"):
        write(target, "second", overwrite=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("")
    with pytest.raises(FileExistsError, match="is not a test directory"):
        write(other, "second")
    assert contents(target)["data.txt"] == "first" and contents(other) == {"mine.txt": ""}


def test_a_directory_appearing_during_the_run_is_not_replaced_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with (
        pytest.raises(FileExistsError, match="already exists"),
        atomic_directory(target, marker=MARKER, what="test directory", overwrite=False) as work,
    ):
        (work / MARKER).write_text("")
        target.mkdir()
        (target / "thesis.tex").write_text("mine")
    assert contents(target) == {"thesis.tex": "mine"} and [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_a_work_directory_is_locked_before_it_can_be_taken_for_a_leftover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    rename, checked = os.rename, []

    def rename_checking_the_lock(source: Path, destination: Path) -> None:
        if str(source).endswith(".new"):
            fd = os.open(source, os.O_RDONLY)
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.close(fd)
            checked.append(source)
        rename(source, destination)

    monkeypatch.setattr(os, "rename", rename_checking_the_lock)
    write(tmp_path / "out", "first")
    assert checked


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_file_systems_without_flock_still_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import fcntl

    def no_flock(fd: int, operation: int) -> None:
        raise OSError(errno.EBADF, "flock is not supported here")  # as NFS answers on a read-only descriptor

    monkeypatch.setattr(fcntl, "flock", no_flock)
    write(tmp_path / "out", "first")
    write(tmp_path / "out", "second")
    assert contents(tmp_path / "out")["data.txt"] == "second" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_atomic_file_replaces_the_target_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "out" / "members.csv"
    with atomic_file(target) as work:
        work.write_text("first\n")
        assert not target.exists()  # nothing at the target until the block completes
    assert target.read_text() == "first\n"
    with pytest.raises(RuntimeError), atomic_file(target) as work:
        work.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "first\n" and sorted(p.name for p in target.parent.iterdir()) == ["members.csv"]
