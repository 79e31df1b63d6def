"""Disk full (ENOSPC after N bytes, for a sweep of N) and failing fsync during a rebuild.

Every index byte is written through ``storage._open_for_write``; the shim here hands out
files that fail with ENOSPC once N bytes in total have been written (after writing what
fits, as a real full disk does). For every N the rebuild must fail with an OSError naming the
file, the previous index must still open, verify and answer as before, and nothing of the
failed build may remain.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from index_kinds import KINDS, SPILLING
from integrity_figures import record

from sparse_ir.index import storage
from sparse_ir.index.storage import IndexDirectory


class _Disk:
    """A pretend disk with ``limit`` free bytes shared by every file written through it."""

    def __init__(self, limit: float):
        self.limit = limit
        self.used = 0
        self.starts: list[tuple[int, str]] = []  # (bytes written before it, file name)


class _FileOnDisk:
    def __init__(self, real, disk: _Disk):
        self.real = real
        self.disk = disk

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        room = self.disk.limit - self.disk.used
        if len(data) > room:
            fits = int(max(room, 0))
            self.real.write(data[:fits])
            self.disk.used += fits
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.disk.used += len(data)
        return self.real.write(data)

    def flush(self) -> None:
        self.real.flush()

    def fileno(self) -> int:
        return self.real.fileno()

    def close(self) -> None:
        self.real.close()


def _install(monkeypatch, disk: _Disk) -> None:
    real_open = storage._open_for_write

    def open_on_disk(path):
        disk.starts.append((disk.used, Path(path).name))
        return _FileOnDisk(real_open(path), disk)

    monkeypatch.setattr(storage, "_open_for_write", open_on_disk)


def _assert_old_index_intact(kind, path: Path, old_seed: int) -> None:
    index = kind.open(path)
    kind.verify(index)
    assert kind.answers(index) == kind.expected(old_seed, SPILLING)
    directory = IndexDirectory(path)
    assert directory.leftovers() == []
    assert [p.name for p in path.iterdir() if p.name.startswith(".tmp-")] == []


@pytest.mark.parametrize("kind_name", sorted(KINDS))
def test_disk_full_at_every_point_keeps_the_previous_index(kind_name, tmp_path, monkeypatch):
    kind = KINDS[kind_name]
    path = tmp_path / "index"
    kind.build(path, 1, SPILLING)
    generations = [n for n, _ in IndexDirectory(path).generations()]
    with monkeypatch.context() as patch:  # measure a whole rebuild
        disk = _Disk(float("inf"))
        _install(patch, disk)
        kind.build(path, 2, SPILLING)
    total, starts = disk.used, disk.starts
    # Scratch files (spilled runs, string columns) are swept too, not only published files.
    assert any(name.startswith(".") for _, name in starts), "no scratch file was written"
    kind.build(path, 1, SPILLING)  # back to the first collection
    budgets = {0, 1, 63, 64, 65, total - 1}
    for start, _ in starts:  # at, and just after, the first byte of every file
        budgets |= {start, start + 1, start + 17}
    budgets |= {total * i // 40 for i in range(40)}
    failures = fits = 0
    for limit in sorted(b for b in budgets if 0 <= b < total):
        error = None
        with monkeypatch.context() as patch:
            _install(patch, _Disk(limit))
            try:
                kind.build(path, 2, SPILLING)
            except OSError as caught:
                error = caught
        if error is None:
            # The manifest records the build's duration, so a build can be a few bytes
            # shorter than the measured one and fit: then it must be complete and correct.
            assert limit >= total - 16, f"no error with {limit} of {total} bytes"
            assert kind.answers(kind.open(path)) == kind.expected(2, SPILLING)
            kind.build(path, 1, SPILLING)
            fits += 1
            continue
        assert error.errno == errno.ENOSPC, error
        assert error.filename and str(path) in str(error.filename), error
        assert Path(error.filename).name in str(error)
        _assert_old_index_intact(kind, path, 1)
        failures += 1
    print(
        f"\n{kind.name}: {failures} disk-full points over a {total:,}-byte rebuild "
        f"({len(starts)} files) refused with the file named, old index intact; {fits} "
        "within the last bytes fitted a shorter build, which published completely"
    )
    record(
        "disk full",
        kind=kind.name,
        refused=failures,
        fitted=fits,
        rebuild_bytes=total,
        files=len(starts),
    )
    assert failures >= 60
    kind.build(path, 2, SPILLING)  # with room again, the rebuild succeeds
    assert kind.answers(kind.open(path)) == kind.expected(2, SPILLING)
    assert [n for n, _ in IndexDirectory(path).generations()][-1] > generations[-1]


@pytest.mark.parametrize("kind_name", sorted(KINDS))
def test_failing_fsync_keeps_the_previous_index(kind_name, tmp_path, monkeypatch):
    kind = KINDS[kind_name]
    path = tmp_path / "index"
    kind.build(path, 1, SPILLING)
    real_fsync = os.fsync
    calls = []
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
        kind.build(path, 3, SPILLING)
    kind.build(path, 1, SPILLING)
    refused = 0
    for failing in range(1, len(calls) + 1):
        count = [0]

        def fsync(fd, failing=failing, count=count):
            count[0] += 1
            if count[0] == failing and not os.path.isdir(f"/proc/self/fd/{fd}"):
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real_fsync(fd)

        with monkeypatch.context() as patch:
            patch.setattr(os, "fsync", fsync)
            try:
                kind.build(path, 3, SPILLING)
            except OSError as error:
                assert error.errno == errno.EIO and error.filename, error
                _assert_old_index_intact(kind, path, 1)
                refused += 1
                continue
        # A directory fsync failing is ignored on purpose (unsupported on some file systems).
        assert kind.answers(kind.open(path)) == kind.expected(3, SPILLING)
        kind.build(path, 1, SPILLING)
    print(
        f"\n{kind.name}: fsync failed at each of {len(calls)} calls: {refused} builds refused "
        "with the file named and the old index intact; the rest were directory fsyncs"
    )
    record("fsync failure", kind=kind.name, calls=len(calls), refused=refused)
    assert refused >= len(calls) // 2
