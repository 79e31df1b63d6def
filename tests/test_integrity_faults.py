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


def faults_for(data: bytes, rng: random.Random) -> list[tuple[str, bytes | None]]:
    """``(kind, new_content)`` for one file; None content means the file is deleted."""
    size = len(data)
    faults: list[tuple[str, bytes | None]] = []
    for cut in range(1, min(100, size) + 1):
        faults.append(("truncate 1-100", data[: size - cut]))
    faults.append(("truncate half", data[: size // 2]))
    faults.append(("truncate to 0", b""))
    # Every byte of the header region and the footer, and a sample of the rest.
    positions = set(range(min(size, 128))) | set(range(max(0, size - 24), size))
    positions |= {rng.randrange(size) for _ in range(40)} if size else set()
    for position in sorted(positions):
        flipped = bytearray(data)
        flipped[position] ^= 1 << rng.randrange(8)
        faults.append(("bit flip", bytes(flipped)))
    faults.append(("zero-fill all", b"\0" * size))
    if size > 8:
        block = min(4096, size // 2)
        start = (size - block) // 2
        zeroed = data[:start] + b"\0" * block + data[start + block :]
        if zeroed != data:
            faults.append(("zero-fill block", zeroed))
    faults.append(("extend", data + b"\0" * 7))
    faults.append(("delete", None))
    return faults


@contextlib.contextmanager
def damaged(path: Path, content: bytes | None):
    original = path.read_bytes()
    try:
        if content is None:
            path.unlink()
        else:
            path.write_bytes(content)
        yield
    finally:
        path.write_bytes(original)


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
            for fault, content in faults_for(data, rng):
                with damaged(file, content):
                    outcome = judge(kind, path, pristine)
                outcomes[(fault, outcome)] += 1
                if outcome.startswith(("UNEXPECTED", "UNDETECTED")):
                    failures.append(f"{file.name}: {fault}: {outcome}")
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
                flipped = bytearray(data)
                flipped[position] ^= 1 << bit
                yield bytes(flipped)

    for content in flips(path / "CURRENT", range((path / "CURRENT").stat().st_size)):
        with damaged(path / "CURRENT", content), pytest.raises(IndexFormatError):
            kind.open(path)
        counts["CURRENT"] += 1
    file = generation / "manifest.json"
    for content in flips(file, range(file.stat().st_size)):
        with damaged(file, content), pytest.raises(IndexFormatError):
            read_manifest(
                generation, format_name=manifest["format"], version=manifest["format_version"]
            )
        counts["manifest.json"] += 1
    with kind.large_files():
        for file in sorted(generation.glob("*.bin")):
            header = read_array_header(file)
            size = file.stat().st_size
            for content in flips(file, range(header.data_offset)):
                with damaged(file, content), pytest.raises(IndexFormatError):
                    kind.open(path)
                counts["array header"] += 1
            for content in flips(file, range(size - 16, size)):
                with damaged(file, content):
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
