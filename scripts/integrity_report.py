#!/usr/bin/env python3
"""The acceptance figures of the integrity tests, as markdown tables.

    python scripts/integrity_report.py                      # run the tests, print the tables
    python scripts/integrity_report.py --output figures.md  # ... and write them to a file
    python scripts/integrity_report.py --figures FILE       # tables from an earlier run

Runs the integrity tests (faults, kill -9, disk full, fsync, properties, concurrent readers,
bad input) with ``SPARSE_IR_FIGURES`` set, so each test appends what it counted
(``tests/integrity_figures.py``), then prints: faults injected per kind and how each was
detected, every kill -9 and disk-full outcome, property-test examples and disagreements with
brute force, and each bad-input case with the exact error it produced. The tests assert on
every case; this script only counts and formats, so a figure here is a figure the suite
checked. Extra arguments after ``--`` go to pytest (e.g. ``-- -k impact``);
``SPARSE_IR_KILLS`` / ``SPARSE_IR_PROPERTY_EXAMPLES`` raise the counts as in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = [
    "tests/test_integrity_faults.py",
    "tests/test_integrity_crash.py",
    "tests/test_integrity_disk_full.py",
    "tests/test_integrity_properties.py",
    "tests/test_integrity_concurrency.py",
    "tests/test_bad_input.py",
]
# How the fault tests' fault names group into the kinds of the acceptance criteria.
FAULT_KIND = {
    "truncate 1-100": "truncation (1-100 bytes, half, to 0)",
    "truncate half": "truncation (1-100 bytes, half, to 0)",
    "truncate to 0": "truncation (1-100 bytes, half, to 0)",
    "bit flip": "bit flip",
    "zero-fill all": "zero-fill (whole file, 4 KB block)",
    "zero-fill block": "zero-fill (whole file, 4 KB block)",
    "extend": "bytes appended",
    "delete": "deletion (a file, the generation)",
    "delete generation dir": "deletion (a file, the generation)",
}


def run_tests(figures: Path, pytest_args: list[str]) -> tuple[int, float]:
    env = dict(os.environ, SPARSE_IR_FIGURES=str(figures))
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS, *pytest_args]
    print("$ SPARSE_IR_FIGURES=... " + " ".join(command[1:]), file=sys.stderr)
    started = time.perf_counter()
    code = subprocess.call(command, cwd=ROOT, env=env)
    return code, time.perf_counter() - started


def load(figures: Path) -> dict[str, list[dict]]:
    by_test: dict[str, list[dict]] = defaultdict(list)
    for line in figures.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            by_test[entry.pop("test")].append(entry)
    return by_test


def fault_tables(entries: list[dict]) -> list[str]:
    out = [
        "### Faults injected into every file of a built index",
        "",
        "Each fault is applied to one file of the live generation (or `CURRENT`), judged, "
        "and undone. *default*: `open()` as shipped (small files are checksummed at open). "
        "*large files*: `open()` as for files over 16 MB (headers, sizes, footers only), "
        "so data damage is left to `verify()`; a search before `verify()` may then refuse "
        "(`IndexCorruptError`) or answer wrong, which the table counts.",
        "",
        "| index | open() regime | fault | injected | detected by open() | detected by "
        "verify() | (a search refused first) | (searches wrong before verify) | "
        "undetected |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    grand = Counter()
    for entry in entries:
        rows: dict[str, Counter] = defaultdict(Counter)
        for fault, outcome, n in entry["outcomes"]:
            row = rows[FAULT_KIND.get(fault, fault)]
            row["injected"] += n
            if outcome == "open":
                row["open"] += n
            elif outcome.startswith("verify"):
                row["verify"] += n
                row["refused"] += n if "refused" in outcome else 0
                row["wrong"] += n if "wrong" in outcome else 0
            else:
                row["undetected"] += n
        total = Counter()
        for name, row in rows.items():
            total.update(row)
            out.append(
                f"| {entry['kind']} | {entry['regime']} | {name} | {row['injected']:,} | "
                f"{row['open']:,} | {row['verify']:,} | {row['refused']:,} | "
                f"{row['wrong']:,} | {row['undetected']} |"
            )
        out.append(
            f"| {entry['kind']} | {entry['regime']} | **all** | "
            f"**{total['injected']:,}** | {total['open']:,} | {total['verify']:,} | "
            f"{total['refused']:,} | {total['wrong']:,} | **{total['undetected']}** |"
        )
        grand[(entry["regime"], "injected")] += total["injected"]
        grand[(entry["regime"], "detected")] += total["open"] + total["verify"]
        grand[(entry["regime"], "opened")] += total["injected"] - total["open"]
    out.append("")
    for regime in ("default", "large files"):
        if grand[(regime, "injected")]:
            out.append(
                f"- {regime}: {grand[(regime, 'injected')]:,} faults injected, "
                f"{grand[(regime, 'detected')]:,} detected; corrupt indexes that "
                f"`open()` accepted: {grand[(regime, 'opened')]:,}"
                + (
                    ""
                    if regime == "default"
                    else " (by design: data of large files is checked by `verify()`, which "
                    "found every one)"
                )
            )
    return out


def targeted_table(entries: list[dict]) -> list[str]:
    out = []
    for entry in entries:
        o = entry["outcomes"]
        out += [
            "",
            "### Damage aimed at the positions the search kernels read",
            "",
            f"{entry['cases']} cases (`LAYOUT_DAMAGE` in `tests/test_integrity_faults.py`: "
            "offsets out of range or decreasing, term ids outside the vocabulary, "
            "in-window offsets past the window, zeroed segment ends, saturated impacts), "
            "each searched through every exact path with `open()` in the large-file "
            f"regime: {o.get('refused', 0)} refused with `IndexCorruptError`, "
            f"{o.get('answered', 0)} answered right, {o.get('answered wrong', 0)} "
            "answered wrong (values within bounds); `verify()` refused all "
            f"{entry['cases']}; no crash, hang or other exception.",
        ]
    return out


def exhaustive_flip_table(entries: list[dict]) -> list[str]:
    out = [
        "",
        "### Every single-bit flip of the parsed parts",
        "",
        "| index | CURRENT | manifest.json | an array header | an array footer | detected |",
        "|---|---|---|---|---|---|",
    ]
    for entry in entries:
        counts = entry["counts"]
        out.append(
            f"| {entry['kind']} | {counts.get('CURRENT', 0):,} | "
            f"{counts.get('manifest.json', 0):,} | {counts.get('array header', 0):,} | "
            f"{counts.get('array footer', 0):,} | all |"
        )
    return out


def crash_tables(rebuilds: list[dict], first_builds: list[dict]) -> list[str]:
    out = [
        "",
        "### kill -9 during a build",
        "",
        "Rebuilds over an existing index, each sent SIGKILL after a random delay; a build "
        'that finished before its delay counts as "finished first". After each: '
        "`open()`, `verify()`, `verify_index()`, and the answers compared with brute force.",
        "",
        "| index | builds killed | finished first | old index after | new index after | "
        "broken index | left temporaries (removed by the next build) | killed between "
        "rename and CURRENT | complete builds in between | median build time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in rebuilds:
        o = entry["outcomes"]
        out.append(
            f"| {entry['kind']} | {o.get('killed', 0)} | {o.get('exited', 0)} | "
            f"{o.get('old index after', 0)} | {o.get('new index after', 0)} | 0 | "
            f"{o.get('left temporaries', 0)} | "
            f"{o.get('killed between rename and CURRENT', 0)} | "
            f"{o.get('complete builds', 0)} | {entry['build_seconds']} s |"
        )
    if first_builds:
        out += [
            "",
            "| index | first builds killed | no index after (open refuses: "
            '"no CURRENT") | complete index after | finished before the kill |',
            "|---|---|---|---|---|",
        ]
        for entry in first_builds:
            o = entry["outcomes"]
            out.append(
                f"| {entry['kind']} | {o.get('killed', 0)} | "
                f"{o.get('no index after (refused to open)', 0)} | "
                f"{o.get('complete new index after', 0)} | "
                f"{o.get('completed before the kill', 0)} |"
            )
    return out


def disk_tables(disk: list[dict], fsync: list[dict]) -> list[str]:
    out = [
        "",
        "### Disk full (ENOSPC after N bytes) and failing fsync during a rebuild",
        "",
        "| index | rebuild size | files written | values of N | refused, file named, old "
        "index intact | fitted (a build a few bytes shorter), published complete |",
        "|---|---|---|---|---|---|",
    ]
    for entry in disk:
        out.append(
            f"| {entry['kind']} | {entry['rebuild_bytes']:,} bytes | {entry['files']} | "
            f"{entry['refused'] + entry['fitted']} | {entry['refused']} | "
            f"{entry['fitted']} |"
        )
    if fsync:
        out += [
            "",
            "| index | fsync calls failed (one per build) | builds refused (file "
            "named, old index intact) | directory fsyncs (failure ignored by design) |",
            "|---|---|---|---|",
        ]
        for entry in fsync:
            out.append(
                f"| {entry['kind']} | {entry['calls']} | {entry['refused']} | "
                f"{entry['calls'] - entry['refused']} |"
            )
    return out


def property_table(by_test: dict[str, list[dict]]) -> list[str]:
    out = [
        "",
        "### Property tests (Hypothesis) against brute force",
        "",
        "| property | examples | details | disagreements |",
        "|---|---|---|---|",
    ]
    for name, entries in by_test.items():
        if not name.startswith("property"):
            continue
        for entry in entries:
            details = ", ".join(
                f"{k}: {v:,}" for k, v in entry.items() if k not in ("examples", "disagreements")
            )
            out.append(
                f"| {name.removeprefix('property: ')} | {entry['examples']:,} | "
                f"{details} | {entry['disagreements']} |"
            )
    return out


def reader_table(entries: list[dict]) -> list[str]:
    out = [
        "",
        "### Readers while generations are published",
        "",
        "| index | publishes | readers (opens, generations seen, failures) |",
        "|---|---|---|",
    ]
    for entry in entries:
        readers = "; ".join(
            f"{r['opens']} opens, {r['generations']} generations, {r['failures']} failures"
            for r in entry["readers"]
        )
        out.append(f"| {entry['kind']} | {entry['publishes']} | {readers} |")
    return out


def bad_input_table(entries: list[dict]) -> list[str]:
    out = [
        "",
        f"### Bad input: {len(entries)} cases, each refused with this exact message",
        "",
        "File names are shown relative to the test's directory; `index` cases are valid "
        "SparseBatch files refused by the builder (the CLI adds the shard's path).",
        "",
        "| input | case | error |",
        "|---|---|---|",
    ]
    for entry in entries:
        message = entry["message"].replace("|", "\\|").replace("\n", " ")
        out.append(f"| {entry['reader']} | {entry['case']} | `{message}` |")
    return out


def render(by_test: dict[str, list[dict]]) -> str:
    lines = fault_tables(by_test.get("faults", []))
    lines += targeted_table(by_test.get("targeted layout damage", []))
    lines += exhaustive_flip_table(by_test.get("exhaustive bit flips", []))
    lines += crash_tables(
        by_test.get("kill -9 rebuild", []), by_test.get("kill -9 first build", [])
    )
    lines += disk_tables(by_test.get("disk full", []), by_test.get("fsync failure", []))
    lines += property_table(by_test)
    lines += reader_table(by_test.get("readers during publishes", []))
    lines += bad_input_table(by_test.get("bad input", []))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--figures", type=Path, help="render this figures file instead of running the tests"
    )
    parser.add_argument("--output", type=Path, help="also write the tables here")
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments")
    args = parser.parse_args(argv)
    code = 0
    if args.figures:
        figures = args.figures
    else:
        figures = Path(tempfile.mkdtemp(prefix="integrity-figures-")) / "figures.jsonl"
        figures.touch()
        code, seconds = run_tests(figures, args.pytest_args)
        print(
            f"pytest exit status {code}; {seconds:.0f} s wall time; figures in {figures}",
            file=sys.stderr,
        )
    text = render(load(figures))
    print(text)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main())
