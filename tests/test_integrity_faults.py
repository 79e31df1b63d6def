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

import pytest
from index_kinds import KINDS, SMALL

from sparse_ir.errors import IndexFormatError
from sparse_ir.index.check import check_index

#: Files that carry no index data: the build lock (empty, never read).
NOT_DATA = {".lock"}


def index_files(path: Path) -> list[Path]:
    """Every file of the index that a reader depends on (found on disk, not listed here)."""
    files = [path / "CURRENT"]
    from sparse_ir.index.storage import IndexDirectory

    generation = IndexDirectory(path).current()
    files += sorted(p for p in generation.iterdir() if p.is_file())
    extra = [p for p in path.iterdir() if p.is_file() and p.name not in NOT_DATA
             and p.name != "CURRENT"]
    assert not extra, f"unexpected files beside the generations: {extra}"
    return files


def faults_for(data: bytes, rng: random.Random) -> list[tuple[str, bytes | None]]:
    """``(kind, new_content)`` for one file; None content means the file is deleted."""
    size = len(data)
    faults: list[tuple[str, bytes | None]] = []
    for cut in range(1, min(100, size) + 1):
        faults.append(("truncate 1-100", data[:size - cut]))
    faults.append(("truncate half", data[:size // 2]))
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
        zeroed = data[:start] + b"\0" * block + data[start + block:]
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
        wrong_before_verify = _answers_or_error(kind, index) != pristine
        kind.verify(index)
    except IndexFormatError:
        return "verify (searches were wrong)" if wrong_before_verify else "verify"
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
    print(f"\n{kind.name} index, {regime}: fault | injected | detected by open | "
          f"by verify | undetected")
    total = Counter()
    for fault, counts in by_fault.items():
        injected = sum(counts.values())
        row = (injected, counts["open"], counts["verify"],
               injected - counts["open"] - counts["verify"])
        total.update(dict(zip(("injected", "open", "verify", "undetected"), row)))
        print(f"| {fault} | {row[0]} | {row[1]} | {row[2]} | {row[3]} |")
    wrong = sum(n for (_, o), n in outcomes.items() if "searches were wrong" in o)
    print(f"| total | {total['injected']} | {total['open']} | {total['verify']} | "
          f"{total['undetected']} |  (opened without error and searched wrong before "
          f"verify: {wrong})")


@pytest.mark.parametrize("regime", ["default", "large files"])
def test_every_fault_in_every_file_is_detected(built, regime):
    kind, path = built
    outcomes, failures = run_faults(kind, path, regime)
    _print_table(kind, regime, outcomes)
    assert not failures, "\n".join(failures[:20])
    assert sum(outcomes.values()) > 1000
    if regime == "default":
        # Every file of a small index is checksummed at open: nothing reaches a search.
        assert {outcome for _, outcome in outcomes} == {"open"}


def test_check_index_lists_every_damaged_file(built, tmp_path):
    _, path = built
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    generation = next(p for p in copy.iterdir() if p.name.startswith("gen-"))
    data_files = sorted(p for p in generation.iterdir() if p.suffix == ".bin")
    for file in data_files[:3]:
        data = bytearray(file.read_bytes())
        data[len(data) // 2] ^= 0x10
        file.write_bytes(bytes(data))
    report = check_index(copy)
    assert not report.ok
    for file in data_files[:3]:
        assert any(str(file) in problem for problem in report.problems), report.summary()
    assert check_index(path).ok


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
            read_manifest(generation, format_name=manifest["format"],
                          version=manifest["format_version"])
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
                        "open", "verify", "verify (searches were wrong)")
                counts["array footer"] += 1
            break  # one array file: the header code is shared by all
    print(f"\n{kind.name}: every single-bit flip detected: {dict(counts)}")
