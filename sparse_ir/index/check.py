"""Verify an index completely and list everything wrong with it (what ``sparse-ir verify`` runs).

Like Lucene's ``CheckIndex``: the live generation is resolved through ``CURRENT``, the manifest
is checked (checksum and exact bytes), every file it lists is checked (present, size, CRC32,
array header and footer), and then the index is opened by its own class and its invariants are
verified (``verify()``). Unlike ``open()``/``verify()``, which stop at the first problem, the
file checks go on and report every damaged file, so one run says how much is lost.

Any index kind that follows the storage conventions of :mod:`sparse_ir.index.storage` is
covered; :data:`INDEX_KINDS` maps its manifest ``format`` to the class that opens it (a class
with ``open(path)`` and ``verify()``).
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from sparse_ir.errors import IndexFormatError, InputError
from sparse_ir.index.manifest import DENSE_FORMAT, IMPACT_FORMAT
from sparse_ir.index.storage import IndexDirectory, file_problems, read_manifest_unchecked

__all__ = ["INDEX_KINDS", "VerifyReport", "verify_index", "CheckReport", "check_index"]

#: Manifest ``format`` -> ``"module:Class"`` of the index kind that reads it.
INDEX_KINDS = {
    IMPACT_FORMAT: "sparse_ir.index.impact_index:ImpactIndex",
    DENSE_FORMAT: "sparse_ir.index.dense:DenseIndex",
}


@dataclass
class VerifyReport:
    """What :func:`verify_index` found.

    Attributes:
        path: the index directory checked.
        generation: the live generation directory, when ``CURRENT`` could be resolved.
        format: the manifest's format name and version (e.g. ``sparse-ir-impact-index v1``).
        files_checked, bytes_checked: how much was read.
        problems: each thing that is wrong (the index must not be trusted if any).
        notes: harmless findings, e.g. leftovers of an interrupted build.
    """

    path: Path
    generation: Path | None = None
    format: str | None = None
    files_checked: int = 0
    bytes_checked: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def summary(self) -> str:
        """Several lines for a terminal: what was checked, each problem and note, a verdict."""
        where = self.generation.name if self.generation else "no live generation"
        lines = [
            f"{self.path}: {where}" + (f" ({self.format})" if self.format else ""),
            f"  checked {self.files_checked} files, {self.bytes_checked:,} bytes",
        ]
        lines += [f"  PROBLEM: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        if self.ok:
            lines.append(f"{self.path}: OK")
        else:
            lines.append(
                f"{self.path}: CORRUPT ({len(self.problems)} problem(s)); do not use "
                "it: rebuild the index"
            )
        return "\n".join(lines)


def _index_class(format_name: object):
    target = INDEX_KINDS.get(format_name) if isinstance(format_name, str) else None
    if target is None:
        return None
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def verify_index(path: str | os.PathLike) -> VerifyReport:
    """Check every byte and invariant of the index at ``path``; never raises, whatever the
    damage (a hostile index included): every failure becomes a problem in the report.

    ``path`` is an index directory (with ``CURRENT``) or one generation directory. Where
    ``index.verify()`` raises at the first problem, this lists them all in the report.

    Example:
        >>> import tempfile
        >>> from sparse_ir import verify_index
        >>> report = verify_index(tempfile.mkdtemp() + "/nothing-here")
        >>> report.ok, report.problems[0].startswith("no index at")
        (False, True)
    """
    report = VerifyReport(Path(path))
    try:
        _verify_into(report)
    except Exception as exc:  # noqa: BLE001 - the contract: damage is reported, never raised
        report.problems.append(f"{report.path}: checking failed: {type(exc).__name__}: {exc}")
    return report


def _verify_into(report: VerifyReport) -> None:
    """The checks of :func:`verify_index`, appending to ``report``."""
    path = report.path
    directory = IndexDirectory(path)
    if not directory.path.exists():
        report.problems.append(f"no index at {directory.path}")
        return
    for leftover in directory.leftovers():
        report.notes.append(
            f"{leftover}: left by an interrupted build (not part of the index; "
            "the next build removes it)"
        )
    try:
        generation = directory.current()
    except (IndexFormatError, OSError) as exc:
        report.problems.append(str(exc))
        return
    report.generation = generation
    try:
        body, problem = read_manifest_unchecked(generation)
    except IndexFormatError as exc:
        report.problems.append(str(exc))
        return
    report.files_checked += 1
    report.bytes_checked += (generation / "manifest.json").stat().st_size
    if problem:
        report.problems.append(f"{generation / 'manifest.json'}: {problem}")
    report.format = f"{body.get('format')} v{body.get('format_version')}"
    if str(body.get("format")).startswith("sparse-ir-sharded-"):
        return _verify_sharded(report, generation)
    files = body.get("files")
    report.problems += file_problems(generation, files, full=True)
    if isinstance(files, dict):
        for record in files.values():
            report.files_checked += 1
            if isinstance(record, dict) and isinstance(record.get("size"), int):
                report.bytes_checked += record["size"]
        listed = set(files) | {"manifest.json"}
        for entry in sorted(generation.iterdir()):
            if entry.name not in listed:
                report.notes.append(f"{entry}: not listed in the manifest (ignored)")
    if report.problems:
        return
    from sparse_ir.index.segments import SEGMENTS_FORMAT

    # A live index's commit opens with the class of its segments' kind.
    kind = _index_class(body.get("kind" if body.get("format") == SEGMENTS_FORMAT else "format"))
    if kind is None:
        report.problems.append(
            f"{generation}: unknown index format {body.get('format')!r} "
            f"(known: {', '.join(sorted(INDEX_KINDS))})"
        )
        return
    try:
        kind.open(generation).verify()
    except (IndexFormatError, InputError, OSError) as exc:
        report.problems.append(str(exc))


def _verify_sharded(report: VerifyReport, directory: Path) -> VerifyReport:
    """A sharded index (:mod:`sparse_ir.index.sharded`): its manifest, then every shard."""
    from sparse_ir.index.sharded import open_sharded

    try:
        index = open_sharded(directory)
        index.verify()
    except (IndexFormatError, InputError, OSError) as exc:
        report.problems.append(str(exc))
        return report
    for shard in index.shards:
        report.files_checked += len(shard.manifest.files) + 1
        report.bytes_checked += shard.size_bytes()
    return report


#: Deprecated name of :class:`VerifyReport` (kept for one release).
CheckReport = VerifyReport


def check_index(path: str | os.PathLike) -> VerifyReport:
    """Deprecated: use :func:`verify_index` (same arguments, same report)."""
    warnings.warn(
        "check_index() is deprecated; use verify_index()", DeprecationWarning, stacklevel=2
    )
    return verify_index(path)
