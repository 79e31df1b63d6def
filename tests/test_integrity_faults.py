"""Damage every file of a built index in every way and require a detected error, never a
wrong answer: truncation (1-100 bytes, half, all), bit flips, zero-fill, deletion, extension.

Files are those actually present in the built index (``CURRENT`` and every file of the live
generation), so new files and new index kinds (see ``index_kinds.KINDS``) are covered without
touching this test. Each fault is applied in place, judged, and undone.

Two regimes are tested: the default (``open()`` checksums every file of up to 16 MB, so every
test file), and "large files" (``open()`` checks only headers, sizes and footers, as for
files over 16 MB; ``verify()`` then has to find the rest). Set SPARSE_IR_FAULT_TABLE=1 and run
with ``-s`` to print the table of outcomes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from index_kinds import KINDS, SMALL
from integrity_figures import record

from sparse_ir.errors import IndexFormatError
from sparse_ir.index.check import verify_index

#: Files that carry no index data: the build lock (empty, never read).
NOT_DATA = {".lock"}


def index_files(path: Path) -> list[Path]:
    """Every file of the index that a reader depends on (found on disk, not listed here)."""
    files = [path / "CURRENT"]
    from sparse_ir.index.storage import IndexDirectory

    generation = IndexDirectory(path).current()
    files += sorted(p for p in generation.iterdir() if p.is_file())
    extra = [
        p for p in path.iterdir() if p.is_file() and p.name not in NOT_DATA and p.name != "CURRENT"
    ]
    assert not extra, f"unexpected files beside the generations: {extra}"
    return files


@dataclass(frozen=True)
class Fault:
    """One damage to one file: ``kind`` names it in the table; ``op`` is what is done in place.

    ``op`` is ``"truncate"`` (to ``length`` bytes), ``"flip"`` (xor the byte at ``position``
    with ``mask``), ``"zero"`` (``length`` zero bytes from ``position``), ``"extend"``
    (``length`` zero bytes appended) or ``"delete"``. Faults are applied by editing the file in
    place, never by rewriting it: on ext4 a rewrite that truncates an existing file flushes it
    to disk at close (``auto_da_alloc``), which made the ~37,000 cases of this module spend
    most of their time waiting on the disk.
    """

    kind: str
    op: str
    position: int = 0
    length: int = 0
    mask: int = 0

    def content(self, data: bytes) -> bytes | None:
        """What the file holds once damaged (None: deleted): the plain statement of the fault,
        which :func:`damaged` checks its in-place edit against."""
        if self.op == "truncate":
            return data[: self.length]
        if self.op == "flip":
            flipped = bytearray(data)
            flipped[self.position] ^= self.mask
            return bytes(flipped)
        if self.op == "zero":
            end = self.position + self.length
            return data[: self.position] + b"\0" * self.length + data[end:]
        if self.op == "extend":
            return data + b"\0" * self.length
        if self.op == "delete":
            return None
        raise ValueError(f"unknown fault operation {self.op!r}")


def faults_for(data: bytes, rng: random.Random) -> list[Fault]:
    """The faults for one file of content ``data``."""
    size = len(data)
    faults: list[Fault] = []
    for cut in range(1, min(100, size) + 1):
        faults.append(Fault("truncate 1-100", "truncate", length=size - cut))
    faults.append(Fault("truncate half", "truncate", length=size // 2))
    faults.append(Fault("truncate to 0", "truncate", length=0))
    # Every byte of the header region and the footer, and a sample of the rest.
    positions = set(range(min(size, 128))) | set(range(max(0, size - 24), size))
    positions |= {rng.randrange(size) for _ in range(40)} if size else set()
    for position in sorted(positions):
        faults.append(Fault("bit flip", "flip", position=position, mask=1 << rng.randrange(8)))
    faults.append(Fault("zero-fill all", "zero", position=0, length=size))
    if size > 8:
        block = min(4096, size // 2)
        start = (size - block) // 2
        if any(data[start : start + block]):  # zeroing changes something
            faults.append(Fault("zero-fill block", "zero", position=start, length=block))
    faults.append(Fault("extend", "extend", length=7))
    faults.append(Fault("delete", "delete"))
    return faults


@contextlib.contextmanager
def damaged(path: Path, fault: Fault, original: bytes | None = None):
    """Apply ``fault`` to ``path`` in place (its content is ``original``, read if not given),
    check the file then holds exactly ``fault.content(original)``, and undo it on exit."""
    if original is None:
        original = path.read_bytes()
    size = len(original)
    if fault.op == "delete":
        path.unlink()
    elif fault.op == "truncate":
        os.truncate(path, fault.length)
    elif fault.op == "extend":
        with open(path, "ab") as handle:
            handle.write(b"\0" * fault.length)
    else:
        with open(path, "r+b") as handle:
            handle.seek(fault.position)
            if fault.op == "flip":
                handle.write(bytes([original[fault.position] ^ fault.mask]))
            else:
                handle.write(b"\0" * fault.length)
    try:
        expected = fault.content(original)
        actual = path.read_bytes() if path.exists() else None
        assert actual == expected, f"{path.name}: {fault} was not applied as stated"
        yield
    finally:
        if fault.op == "delete":
            path.write_bytes(original)  # a new file: no existing content is truncated
        elif fault.op == "extend":
            os.truncate(path, size)
        else:  # write back what was cut off or changed
            start = fault.length if fault.op == "truncate" else fault.position
            if fault.op == "truncate":
                end = size
            else:
                end = fault.position + (1 if fault.op == "flip" else fault.length)
            with open(path, "r+b") as handle:
                handle.seek(start)
                handle.write(original[start:end])


def judge(kind, path: Path, pristine: tuple) -> str:
    """open -> 'open' if it refused; else verify -> 'verify'; else compare answers."""
    try:
        index = kind.open(path)
    except IndexFormatError:
        return "open"
    except Exception as exc:  # noqa: BLE001 - any other exception breaks the promise
        return f"UNEXPECTED {type(exc).__name__}: {exc}"
    try:
        answers = _answers_or_error(kind, index)
        wrong_before_verify = answers != pristine
        kind.verify(index)
    except IndexFormatError:
        if not wrong_before_verify:
            return "verify"
        if answers[0] == "error":
            return "verify (a search refused first)"
        return "verify (searches were wrong)"
    except Exception as exc:  # noqa: BLE001
        return f"UNEXPECTED {type(exc).__name__}: {exc}"
    return "UNDETECTED, same answers" if not wrong_before_verify else "UNDETECTED, WRONG ANSWERS"


def _answers_or_error(kind, index):
    try:
        return kind.answers(index)
    except IndexFormatError as exc:  # a search that refuses a corrupt posting is fine
        return ("error", str(exc))


@pytest.fixture(scope="module", params=sorted(KINDS))
def built(request, tmp_path_factory):
    kind = KINDS[request.param]
    path = tmp_path_factory.mktemp(f"faults-{kind.name}") / "index"
    kind.build(path, seed=11, size=SMALL)
    return kind, path


def run_faults(kind, path: Path, regime: str) -> tuple[Counter, list[str]]:
    pristine = kind.answers(kind.open(path))
    assert pristine == kind.expected(11, SMALL)
    outcomes: Counter = Counter()
    failures = []
    rng = random.Random(f"{kind.name}-{regime}")
    regime_context = kind.large_files() if regime == "large files" else contextlib.nullcontext()
    with regime_context:
        for file in index_files(path):
            data = file.read_bytes()
            for fault in faults_for(data, rng):
                with damaged(file, fault, data):
                    outcome = judge(kind, path, pristine)
                outcomes[(fault.kind, outcome)] += 1
                if outcome.startswith(("UNEXPECTED", "UNDETECTED")):
                    failures.append(f"{file.name}: {fault.kind}: {outcome}")
            assert file.read_bytes() == data, f"{file.name}: a fault was not undone"
        # The generation directory itself.
        generation = max(p for p in path.iterdir() if p.name.startswith("gen-"))
        saved = path.parent / "saved-generation"
        shutil.copytree(generation, saved)
        shutil.rmtree(generation)
        try:
            outcomes[("delete generation dir", judge(kind, path, pristine))] += 1
        finally:
            shutil.copytree(saved, generation)
            shutil.rmtree(saved)
    assert kind.answers(kind.open(path)) == pristine  # every fault was undone
    return outcomes, failures


def _print_table(kind, regime: str, outcomes: Counter) -> None:
    if not os.environ.get("SPARSE_IR_FAULT_TABLE"):
        return
    by_fault: dict[str, Counter] = {}
    for (fault, outcome), n in outcomes.items():
        by_fault.setdefault(fault, Counter())[outcome.split(" (")[0]] += n
    print(
        f"\n{kind.name} index, {regime}: fault | injected | detected by open | "
        f"by verify | undetected"
    )
    total = Counter()
    for fault, counts in by_fault.items():
        injected = sum(counts.values())
        row = (
            injected,
            counts["open"],
            counts["verify"],
            injected - counts["open"] - counts["verify"],
        )
        total.update(dict(zip(("injected", "open", "verify", "undetected"), row)))
        print(f"| {fault} | {row[0]} | {row[1]} | {row[2]} | {row[3]} |")
    wrong = sum(n for (_, o), n in outcomes.items() if "searches were wrong" in o)
    print(
        f"| total | {total['injected']} | {total['open']} | {total['verify']} | "
        f"{total['undetected']} |  (opened without error and searched wrong before "
        f"verify: {wrong})"
    )


@pytest.mark.parametrize("regime", ["default", "large files"])
def test_every_fault_in_every_file_is_detected(built, regime):
    kind, path = built
    outcomes, failures = run_faults(kind, path, regime)
    _print_table(kind, regime, outcomes)
    record(
        "faults",
        kind=kind.name,
        regime=regime,
        outcomes=[[fault, outcome, n] for (fault, outcome), n in sorted(outcomes.items())],
    )
    assert not failures, "\n".join(failures[:20])
    assert sum(outcomes.values()) > 1000
    if regime == "default":
        # Every file of a small index is checksummed at open: nothing reaches a search.
        assert {outcome for _, outcome in outcomes} == {"open"}


def test_verify_index_lists_every_damaged_file(built, tmp_path):
    _, path = built
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    generation = next(p for p in copy.iterdir() if p.name.startswith("gen-"))
    data_files = sorted(p for p in generation.iterdir() if p.suffix == ".bin")
    for file in data_files[:3]:
        data = bytearray(file.read_bytes())
        data[len(data) // 2] ^= 0x10
        file.write_bytes(bytes(data))
    report = verify_index(copy)
    assert not report.ok
    for file in data_files[:3]:
        assert any(str(file) in problem for problem in report.problems), report.summary()
    assert verify_index(path).ok


def test_every_bit_of_pointer_manifest_and_array_header(built):
    """Exhaustive single-bit flips where the format is parsed: the pointer, the manifest, and
    the header and footer of an array file (a header format every array file shares)."""
    kind, path = built
    from sparse_ir.index.storage import IndexDirectory, read_array_header, read_manifest

    generation = IndexDirectory(path).current()
    manifest = json.loads((generation / "manifest.json").read_text())
    pristine = kind.answers(kind.open(path))
    counts: Counter = Counter()

    def flips(file: Path, positions):
        data = file.read_bytes()
        for position in positions:
            for bit in range(8):
                yield Fault("bit flip", "flip", position=position, mask=1 << bit), data

    for fault, data in flips(path / "CURRENT", range((path / "CURRENT").stat().st_size)):
        with damaged(path / "CURRENT", fault, data), pytest.raises(IndexFormatError):
            kind.open(path)
        counts["CURRENT"] += 1
    file = generation / "manifest.json"
    for fault, data in flips(file, range(file.stat().st_size)):
        with damaged(file, fault, data), pytest.raises(IndexFormatError):
            read_manifest(
                generation, format_name=manifest["format"], version=manifest["format_version"]
            )
        counts["manifest.json"] += 1
    with kind.large_files():
        for file in sorted(generation.glob("*.bin")):
            header = read_array_header(file)
            size = file.stat().st_size
            for fault, data in flips(file, range(header.data_offset)):
                with damaged(file, fault, data), pytest.raises(IndexFormatError):
                    kind.open(path)
                counts["array header"] += 1
            for fault, data in flips(file, range(size - 16, size)):
                with damaged(file, fault, data):
                    assert judge(kind, path, pristine) in (
                        "open",
                        "verify",
                        "verify (searches were wrong)",
                    )
                counts["array footer"] += 1
            break  # one array file: the header code is shared by all
    print(f"\n{kind.name}: every single-bit flip detected: {dict(counts)}")
    record("exhaustive bit flips", kind=kind.name, counts=dict(counts))


def _rewrite_array(file: Path, change) -> None:
    """Replace an array file's data with ``change(values)`` in place (header, footer and
    manifest untouched, so only a checksum can tell)."""
    from sparse_ir.index.storage import read_array_header

    header = read_array_header(file)
    data = bytearray(file.read_bytes())
    end = header.data_offset + header.count * header.dtype.itemsize
    values = np.frombuffer(bytes(data[header.data_offset : end]), header.dtype).copy()
    data[header.data_offset : end] = np.ascontiguousarray(change(values), header.dtype).tobytes()
    file.write_bytes(bytes(data))


def _set(values, positions, value):
    values[positions] = value
    return values


#: Damage aimed at the values the kernels index with, in the files open() does not checksum
#: when they are large: (file, change, what must happen). "refused" = IndexCorruptError from
#: open() or from the search; "any" = a refusal or an answer (wrong is allowed: verify() then
#: finds it), but never another exception, a crash or a read outside the arrays.
LAYOUT_DAMAGE = [
    ("forward_offsets.bin", lambda v: _set(v, slice(1, None), 1 << 62), "refused"),
    ("forward_offsets.bin", lambda v: _set(v, slice(1, None), -5), "refused"),
    ("forward_offsets.bin", lambda v: v[::-1], "refused"),
    ("forward_terms.bin", lambda v: _set(v, slice(None), np.iinfo(v.dtype).max), "refused"),
    ("impact_order_docs.bin", lambda v: _set(v, slice(None), 0xFFFF), "refused"),
    ("postings_docs.bin", lambda v: _set(v, slice(None), 1 << 30), "refused"),
    ("postings_docs.bin", lambda v: _set(v, slice(None), -1), "refused"),
    ("window_offsets.bin", lambda v: _set(v, slice(1, -1), 1 << 62), "refused"),
    ("window_offsets.bin", lambda v: v[::-1], "refused"),
    ("segment_offsets.bin", lambda v: _set(v, slice(1, -1), 1 << 40), "refused"),
    ("term_offsets.bin", lambda v: _set(v, slice(1, -1), -7), "refused"),
    ("segment_ends.bin", lambda v: _set(v, slice(None), 0), "any"),
    ("segment_ends.bin", lambda v: _set(v, slice(None), 1 << 62), "any"),
    ("segment_impacts.bin", lambda v: _set(v, slice(None), np.iinfo(v.dtype).max), "any"),
    ("impact_order_impacts.bin", lambda v: _set(v, slice(None), np.iinfo(v.dtype).max), "any"),
    ("forward_impacts.bin", lambda v: _set(v, slice(None), np.iinfo(v.dtype).max), "any"),
    ("term_max_impact.bin", lambda v: _set(v, slice(None), 1), "any"),
]


def test_search_never_reads_outside_a_damaged_large_file(tmp_path):
    """Every exact search path (index_kinds.IMPACT_SEARCHES) over an index whose large files
    are damaged where the kernels take positions from: refused with IndexCorruptError, or an
    answer that verify() then refuses; never a crash, a hang or another exception."""
    from index_kinds import impact_build

    from sparse_ir.index.storage import IndexDirectory

    outcomes: Counter = Counter()
    tried = set()
    # As built now (the impact order the only postings) and with the document-ordered kept.
    for layout, options in (("new", {}), ("kept", {"doc_ordered_postings": True})):
        path = tmp_path / layout
        impact_build(path, 11, SMALL, **options)
        generation = IndexDirectory(path).current()
        _damage_each(path, generation, outcomes, tried)
    assert tried == {name for name, _, _ in LAYOUT_DAMAGE}
    print(f"\ntargeted layout damage: {dict(outcomes)}")
    record("targeted layout damage", cases=len(LAYOUT_DAMAGE), outcomes=dict(outcomes))


def _damage_each(path, generation, outcomes: Counter, tried: set) -> None:
    from index_kinds import impact_answers, impact_expected

    from sparse_ir.errors import IndexCorruptError
    from sparse_ir.index.impact_index import ImpactIndex

    with KINDS["impact"].large_files():
        for name, change, must in LAYOUT_DAMAGE:
            file = generation / name
            if not file.exists():  # postings_docs.bin: only where kept
                continue
            tried.add(name)
            original = file.read_bytes()
            _rewrite_array(file, change)
            try:
                try:
                    answers = impact_answers(ImpactIndex.open(path))
                except IndexCorruptError:
                    outcome = "refused"
                else:
                    assert must == "any", f"{name}: damage read without an error"
                    outcome = (
                        "answered" if answers == impact_expected(11, SMALL) else "answered wrong"
                    )
                with pytest.raises(IndexCorruptError):
                    ImpactIndex.open(path).verify()
            finally:
                file.write_bytes(original)
            outcomes[outcome] += 1
    assert impact_answers(ImpactIndex.open(path, verify=True)) == impact_expected(11, SMALL)
