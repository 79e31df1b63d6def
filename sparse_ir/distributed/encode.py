"""Distributed encoding and sharded indexing on Ray.

:func:`encode_corpus_on_ray`: Ray Data reads the corpus (BEIR JSONL, or Parquet with
``_id``/``id``, ``title``, ``text`` columns) in order into Ray's object store; then a fixed
pool of encoder actors (the model loaded once per actor; ``num_gpus`` each where there are
GPUs, else ``threads`` CPU threads) encodes it in parts of exactly ``part_size`` documents,
handed out by the driver one at a time per actor, and each part is written as a
:class:`~sparse_ir.sparse_batch.SparseBatch` file to a directory every node shares::

    OUTPUT/part-<digest>.npz   one part: its vectors and document ids (digest: of the ids)
    OUTPUT/plan.json           the corpus, its documents and the part size (so that a re-run
                               cuts the same parts)
    OUTPUT/encode.json         the parts in corpus order, their sizes and largest weights,
                               the encoder's settings (written last, atomically)

*Exactly once.* A part's file name is a digest of its document ids and is written atomically,
so a part that Ray retries after a killed actor (Ray restarts the actor and sends it the
part again) writes the same file again, never a second copy. At the end every part's ids are read
back: each document of the corpus must be in exactly one listed part, or the job fails naming
the id. *Resumable*: a re-run finds the parts that are already there (same ids, readable) and
does not encode them again.

:func:`index_shards_on_ray`: Ray tasks build one impact index per group of parts with the one
global quantizer (:func:`~sparse_ir.index.sharded.global_quantizer`), then the sharded-index
manifest (:mod:`sparse_ir.index.sharded`) names them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sparse_ir.errors import InputError

__all__ = [
    "EncodeJob",
    "EncodeResult",
    "encode_corpus_on_ray",
    "index_shards_on_ray",
    "part_name",
    "read_encode_result",
]

logger = logging.getLogger(__name__)

ENCODE_MANIFEST = "encode.json"
ENCODE_FORMAT = "sparse-ir-encoded-parts"
_SAMPLE_BYTES = 1 << 20
ENCODE_PLAN = "plan.json"
_AUTO_PART_SIZE = (100, 1000)  # the bounds of part_size="auto"
_PLAN_MAX_BYTES = 64 * 1024  # plan.json: a corpus path and two numbers
_ACTOR_RESTARTS = 3  # times Ray restarts a killed encoder actor and retries its part
_ACTORS_START_TIMEOUT = 600  # seconds for the encoder actors to start and load the model


def part_name(ids: Sequence[str]) -> str:
    """The file name of the part holding exactly ``ids`` (in this order).

    Example:
        >>> part_name(["d1", "d2"])
        'part-a000e27b005e0fad4e865122.npz'
    """
    digest = hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:24]
    return f"part-{digest}.npz"


@dataclass
class EncodeJob:
    """What :func:`encode_corpus_on_ray` encodes, with what, and how spread out.

    Attributes:
        input: a BEIR ``corpus.jsonl`` (``.gz`` allowed), or a Parquet file or directory
            with ``_id`` (or ``id``), ``title`` and ``text`` columns.
        output: directory of the parts, on storage every node reads and writes at this path.
        model: bundled name, directory or hub id of the SPLADE model (default splade-tiny).
        part_size: documents per part, the unit of retry and resume, or ``"auto"`` (the
            default): four parts per actor, 100..1000 documents (:func:`resolve_part_size`),
            recorded in ``output/plan.json`` so that a re-run cuts the same parts.
        actors: encoder actors (default 1).
        threads: CPU threads per actor, and the CPUs Ray reserves for it (default 1).
        num_gpus: GPUs per actor (default 0: CPU); > 0 encodes on ``cuda``.
        batch_size, max_length, precision: as :meth:`SpladeEncoder.from_pretrained`'s
            (defaults 32, the model's, "auto").
        allow_empty: encode documents without title and text as empty vectors.
    """

    input: str | os.PathLike
    output: str | os.PathLike
    model: str = "splade-tiny"
    part_size: int | str = "auto"
    actors: int = 1
    threads: int = 1
    num_gpus: float = 0.0
    batch_size: int = 32
    max_length: int | None = None
    precision: str = "auto"
    allow_empty: bool = False

    def __post_init__(self) -> None:
        for name in ("part_size", "actors", "threads", "batch_size"):
            value = getattr(self, name)
            if name == "part_size" and value == "auto":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                rule = "an integer >= 1" + (' or "auto"' if name == "part_size" else "")
                raise ValueError(f"{name} must be {rule}, got {value!r}")
        if self.num_gpus < 0:
            raise ValueError(f"num_gpus must be >= 0, got {self.num_gpus!r}")


@dataclass
class EncodeResult:
    """What an encoding job left in its output directory (``encode.json``).

    Attributes:
        output: the directory.
        parts: the part files, in corpus order.
        sizes: documents per part; max_weights: each part's largest weight.
        settings: the encoder's settings (what an index records).
        encoded, kept: parts encoded by the last run, and found from an earlier one.
        part_size: documents per part (the last part the rest).
        seconds: wall time of the last run; encode_seconds, encoded_documents: its encoding
            phase (first part started to last part finished) and the documents it encoded.
        workers: per encoder actor process of the last run (by pid): the parts and
            documents it encoded and the seconds it spent encoding them (``busy``), to see
            how evenly the work was spread, when it started its first part (seconds after
            the first part of the run started), and the page faults and system CPU seconds
            of its parts (``page_faults``, ``system_seconds``).
    """

    output: Path
    parts: list[str]
    sizes: list[int]
    max_weights: list[float]
    settings: dict = field(default_factory=dict)
    encoded: int = 0
    kept: int = 0
    seconds: float = 0.0
    encode_seconds: float = 0.0
    encoded_documents: int = 0
    workers: dict = field(default_factory=dict)
    part_size: int = 0

    @property
    def documents_per_second(self) -> float:
        """Encoding throughput of the last run: its newly encoded documents over the time
        from its first part started to its last part finished (model loading excluded)."""
        return self.encoded_documents / self.encode_seconds if self.encode_seconds else 0.0

    @property
    def documents(self) -> int:
        """Documents of all parts."""
        return sum(self.sizes)

    def batches(self) -> Iterator:
        """The parts as SparseBatches, in corpus order."""
        from sparse_ir.sparse_batch import SparseBatch

        for name in self.parts:
            yield SparseBatch.load(self.output / name)


def read_encode_result(output: str | os.PathLike) -> EncodeResult:
    """The :class:`EncodeResult` recorded in ``output/encode.json``."""
    from sparse_ir.jsonl import read_json_file

    path = Path(output) / ENCODE_MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path}: no finished encoding job here")
    try:  # size-capped and depth-limited: a link to an endless file is refused, not read
        body = read_json_file(path)
    except InputError as error:
        raise InputError(f"corrupt encoding manifest ({error.reason})", path=path) from None
    if not isinstance(body, dict) or body.get("format") != ENCODE_FORMAT:
        found = body.get("format") if isinstance(body, dict) else type(body).__name__
        raise InputError(f"not an encoding manifest (format {found!r})", path=path)
    for key in ("parts", "sizes", "max_weights"):
        if not isinstance(body.get(key), list):
            raise InputError(f"corrupt encoding manifest ({key!r} is not a list)", path=path)
    return EncodeResult(
        Path(output),
        body["parts"],
        body["sizes"],
        body["max_weights"],
        body.get("settings", {}),
        body.get("encoded", 0),
        body.get("kept", 0),
        body.get("seconds", 0.0),
        part_size=body.get("part_size", 0),
    )


# -- reading the corpus -------------------------------------------------------------------------


def _parse_lines(batch: dict) -> dict:
    """Ray Data UDF: JSONL lines -> ``_id``, ``title``, ``text`` columns (checked as
    :func:`sparse_ir.corpus.read_corpus` checks them)."""
    from sparse_ir.corpus import _record_id, _string_field

    ids, titles, texts = [], [], []
    for line in batch["text"]:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise InputError(f"invalid JSON: {error} in {line[:80]!r}") from None
        if not isinstance(record, dict):
            raise InputError(f"a corpus line must be a JSON object, got {line[:80]!r}")
        ids.append(_record_id(record, None, None))
        text = _string_field(record, "text", None, None)
        if text is None:
            text = _string_field(record, "contents", None, None)
        if text is None:
            raise InputError(f"missing text: document {ids[-1]!r} has no 'text' field")
        texts.append(text)
        titles.append(_string_field(record, "title", None, None) or "")
    return {"_id": np.array(ids, object), "title": np.array(titles, object), "text": texts}


def _normalize_columns(batch: dict) -> dict:
    """Ray Data UDF for Parquet: ``id`` or ``_id``, optional ``title``, ``text``."""
    key = "_id" if "_id" in batch else "id" if "id" in batch else None
    if key is None or "text" not in batch:
        raise InputError(
            f"a Parquet corpus needs '_id' (or 'id') and 'text' columns, has {sorted(batch)}"
        )
    count = len(batch[key])
    titles = batch["title"] if "title" in batch else [""] * count
    return {
        "_id": np.array([str(v) for v in batch[key]], object),
        "title": np.array(["" if t is None else str(t) for t in titles], object),
        "text": np.array(["" if t is None else str(t) for t in batch["text"]], object),
    }


def _estimated_documents(path: Path) -> int:
    """About how many documents a corpus holds: exact for Parquet (its metadata), else its
    size over the mean line length of its first MiB (decompressed, for ``.gz``).

    Example:
        >>> import tempfile
        >>> corpus = Path(tempfile.mkdtemp()) / "corpus.jsonl"
        >>> _ = corpus.write_text('{"_id": "1", "text": "a"}\\n' * 40)
        >>> _estimated_documents(corpus)
        40
    """
    if path.is_dir() or path.suffix == ".parquet":
        import pyarrow.parquet as pq

        files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(_SAMPLE_BYTES)
    if path.suffix == ".gz":
        import zlib

        text = zlib.decompressobj(wbits=31).decompress(head)
    else:
        text = head
    lines = text.count(b"\n") + (1 if text and not text.endswith(b"\n") else 0)
    if not lines:
        return 1
    return max(1, round(size * lines / len(head)))


def _read_corpus(ray, path: Path, part_size: int, readers: int):
    """The corpus (``_id``, ``title``, ``text``) read by Ray Data into the object store, in
    file order, by at most ``readers`` tasks at a time: a list of ``(block ref, rows)``.

    The read finishes here, before any part is encoded: Ray Data's streaming executor (its
    scheduling loop and the actors it keeps) is done by then, and leaves the cores to the
    encoder actors (on 2 cores it cost the second actor a fifth of its speed). Blocks hold
    about ``part_size`` documents; the parts are cut from them exactly (:func:`_cut_parts`),
    so the block boundaries do not decide the parts.
    """
    if not path.exists():
        raise FileNotFoundError(f"no corpus at {path}")
    # Reading and parsing reserve no CPU (the encoder actors may hold every CPU of the
    # cluster, and a read task waiting for one would wait forever): their concurrency is
    # bounded instead.
    blocks = max(1, -(-_estimated_documents(path) // part_size))
    # Blocks in corpus order (set before the dataset is made: it copies the context).
    context = ray.data.DataContext.get_current()
    saved = context.execution_options.preserve_order
    context.execution_options.preserve_order = True
    try:
        return _read_blocks(ray, path, blocks, readers)
    finally:
        context.execution_options.preserve_order = saved


def _read_blocks(ray, path: Path, blocks: int, readers: int) -> list:
    if path.is_dir() or path.suffix == ".parquet":
        dataset = ray.data.read_parquet(
            str(path), num_cpus=0, concurrency=readers, override_num_blocks=blocks
        )
        dataset = dataset.map_batches(
            _normalize_columns, batch_format="numpy", num_cpus=0, concurrency=readers
        )
    else:
        dataset = ray.data.read_text(
            str(path), num_cpus=0, concurrency=readers, override_num_blocks=blocks
        )
        dataset = dataset.map_batches(
            _parse_lines, batch_format="numpy", num_cpus=0, concurrency=readers
        )
    refs = dataset.materialize().to_arrow_refs()
    # Zero-copy reads of the tables in the object store, for their row counts only.
    return [(ref, ray.get(ref).num_rows) for ref in refs]


def resolve_part_size(part_size: int | str, documents: int, actors: int) -> int:
    """Documents per part: ``part_size``, or for ``"auto"`` four parts per actor
    (``documents / (4 × actors)``, rounded up), kept within 100..1000.

    Four parts per actor: few enough that an actor's fixed cost per part (fetching its
    documents, writing its file) stays small, and enough that the last parts even out the
    actors' ends (an actor idle while another finishes its last part is time lost).

    Example:
        >>> resolve_part_size("auto", 2000, 2), resolve_part_size("auto", 300, 2)
        (250, 100)
        >>> resolve_part_size("auto", 10**7, 8), resolve_part_size(64, 10**7, 8)
        (1000, 64)
    """
    if part_size != "auto":
        return int(part_size)
    wanted = -(-documents // (4 * actors))
    return max(_AUTO_PART_SIZE[0], min(_AUTO_PART_SIZE[1], wanted))


def _planned_part_size(output: Path, job: EncodeJob, corpus: str, documents: int) -> int:
    """The part size of this run, recorded in ``output/plan.json`` with the corpus and its
    documents: a re-run with ``part_size="auto"`` on the same corpus takes the recorded size
    (even with another number of actors), so it cuts the same parts and keeps them."""
    path = output / ENCODE_PLAN
    planned = None
    if job.part_size == "auto" and path.exists():
        from sparse_ir.jsonl import read_json_file

        try:  # size-capped: a plan is three numbers and a path
            body = read_json_file(path, max_bytes=_PLAN_MAX_BYTES)
        except InputError as error:
            raise InputError(
                f"corrupt encoding plan ({error.reason}); delete it", path=path
            ) from None
        if not isinstance(body, dict):
            raise InputError(
                f"corrupt encoding plan (a JSON {type(body).__name__}, not an object); delete it",
                path=path,
            )
        if body.get("corpus") == corpus and body.get("documents") == documents:
            planned = body.get("part_size")
            if isinstance(planned, bool) or not isinstance(planned, int) or planned < 1:
                raise InputError(f"part_size {planned!r} is not an integer >= 1", path=path)
    part_size = planned or resolve_part_size(job.part_size, documents, job.actors)
    body = {"corpus": corpus, "documents": documents, "part_size": part_size}
    temporary = output / f".{ENCODE_PLAN}.tmp-{os.getpid()}"
    temporary.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return part_size


def _cut_parts(rows: Sequence[int], part_size: int) -> list[list[tuple[int, int, int]]]:
    """Parts of exactly ``part_size`` documents (the last one the rest), each as the
    ``(block, start, stop)`` slices of the blocks (of ``rows`` documents each) it spans.

    Example:
        >>> _cut_parts([3, 4], 5)
        [[(0, 0, 3), (1, 0, 2)], [(1, 2, 4)]]
    """
    parts: list[list[tuple[int, int, int]]] = []
    current: list[tuple[int, int, int]] = []
    missing = part_size
    for block, count in enumerate(rows):
        start = 0
        while start < count:
            stop = min(count, start + missing)
            current.append((block, start, stop))
            missing -= stop - start
            start = stop
            if missing == 0:
                parts.append(current)
                current, missing = [], part_size
    if current:
        parts.append(current)
    return parts


# -- encoding ---------------------------------------------------------------------------------

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def _process_usage() -> tuple[int, float]:
    """This process's page faults (minor) and system CPU seconds so far; zeros where the
    platform has no ``resource`` module."""
    try:
        import resource
    except ImportError:
        return 0, 0.0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_stime


def _keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks in this process instead of returning them to the
    kernel: blocks up to 32 MB (its largest threshold) come from the heap, which is trimmed
    only above 1 GB free.

    An encoder frees and allocates the same tensors of a few MB every batch. With glibc's
    defaults it hands many of them back and faults their pages in again: a splade-tiny actor
    encoding 2,000 SciFact documents took 700-750k page faults and 1.4-1.6 s of system CPU,
    against 61-64k and 0.2 s with these settings (``EncodeResult.workers``). Called in an encoder
    actor's own process only (a library must not change its caller's allocator). Returns
    False where the C library has no ``mallopt`` (not glibc), leaving the defaults.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return all(
        mallopt(parameter, value) == 1
        for parameter, value in (
            (_M_MMAP_THRESHOLD, 32 << 20),
            (_M_TRIM_THRESHOLD, 1 << 30),
            (_M_TOP_PAD, 64 << 20),
        )
    )


class PartEncoder:
    """Ray actor: loads the model once, encodes the documents of one part into its file (or
    keeps the file an earlier run wrote), and returns the part's summary."""

    def __init__(self, job: dict):
        _keep_freed_memory()  # before PyTorch allocates anything
        # Before the tokenizer and PyTorch first run: an actor keeps to its threads (the
        # tokenizer's own thread pool would otherwise take every core for each part).
        threads = job["threads"]
        os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
        import torch

        from sparse_ir.encoders.splade import SpladeEncoder
        from sparse_ir.pipeline import encoder_settings

        self.output = Path(job["output"])
        torch.set_num_threads(threads)
        device = "cuda" if job["num_gpus"] > 0 else "cpu"
        options = {"batch_size": job["batch_size"], "precision": job["precision"]}
        if job["max_length"] is not None:
            options["document_max_length"] = job["max_length"]
        self.encoder = SpladeEncoder.from_pretrained(job["model"], device=device, **options)
        self.allow_empty = job["allow_empty"]
        self.settings = encoder_settings(self.encoder)
        workers = self.output / ".workers"
        workers.mkdir(parents=True, exist_ok=True)
        (workers / str(os.getpid())).touch()  # who is encoding (operators, fault tests)

    def ready(self) -> int:
        """The actor's process id, once its model is loaded."""
        return os.getpid()

    def encode(self, slices: list[tuple[int, int]], *blocks) -> dict:
        """Encode the documents ``blocks[i][start:stop]`` for each ``(start, stop)`` of
        ``slices``, in order (Ray passes the blocks' tables, read from the object store)."""
        from sparse_ir.corpus import Document

        started = time.time()
        faults, system = _process_usage()
        documents = []
        for (start, stop), block in zip(slices, blocks):
            table = block.slice(start, stop - start)
            columns = [table.column(name).to_pylist() for name in ("_id", "title", "text")]
            documents.extend(Document(str(i), t or "", x or "") for i, t, x in zip(*columns))
        ids = [d.id for d in documents]
        if not self.allow_empty:
            for document in documents:
                if not document.full_text.strip():
                    raise InputError(
                        f"empty document: {document.id!r} has no title and no text "
                        "(allow_empty encodes it as an empty vector)"
                    )
        name = part_name(ids)
        path = self.output / name
        kept = _existing_part(path, ids)
        if kept is None:
            vectors = self.encoder.encode_documents(
                [d.full_text for d in documents], ids=ids, show_progress=False
            )
            vectors.save(path)
            top = float(vectors.values.max()) if len(vectors.values) else 0.0
        else:
            top = kept
        faults_after, system_after = _process_usage()
        return {
            "part": name,
            "documents": len(ids),
            "max_weight": top,
            "kept": kept is not None,
            "started": started,
            "finished": time.time(),
            "worker": os.getpid(),
            "page_faults": faults_after - faults,
            "system_seconds": system_after - system,
        }

    def settings_of_model(self) -> dict:
        """The encoder's settings (what an index records)."""
        return self.settings


def _existing_part(path: Path, ids: list[str]) -> float | None:
    """The largest weight of the part at ``path`` when it holds exactly ``ids`` and reads
    back; else None (absent, or a damaged leftover: encoded again)."""
    if not path.exists():
        return None
    from sparse_ir.sparse_batch import SparseBatch

    try:
        part = SparseBatch.load(path)
    except (InputError, OSError, ValueError) as error:
        logger.warning("re-encoding %s: unreadable leftover (%s)", path, error)
        return None
    if list(part.ids or ()) != ids:
        return None
    return float(part.values.max()) if len(part.values) else 0.0


def _start_encoders(ray, job: EncodeJob, settings: dict) -> list:
    """The encoder actors, each with its model loaded (the call returns when all are ready:
    an actor that started encoding while the others still loaded would share the CPUs with
    those loads, and take parts the later ones could have shared)."""
    remote = ray.remote(PartEncoder).options(
        num_cpus=job.threads,
        num_gpus=job.num_gpus or None,
        # A killed actor is restarted (its model loaded again) and the part it was
        # encoding is sent to it again by Ray: the same ids give the same file.
        max_restarts=_ACTOR_RESTARTS,
        max_task_retries=_ACTOR_RESTARTS,
        # No task events: a report per part to the GCS is CPU the actors need, for a
        # timeline nobody reads here.
        enable_task_events=False,
    )
    actors = [remote.remote(settings) for _ in range(job.actors)]
    try:
        ray.get([actor.ready.remote() for actor in actors], timeout=_ACTORS_START_TIMEOUT)
    except ray.exceptions.GetTimeoutError:
        for actor in actors:
            ray.kill(actor)
        raise RuntimeError(
            f"the {job.actors} encoder actor(s) ({job.threads} CPU(s), {job.num_gpus} GPU(s) "
            f"each) did not all start within {_ACTORS_START_TIMEOUT} s: does the cluster "
            f"have the resources? ({ray.available_resources()})"
        ) from None
    return actors


def _encode_parts(ray, actors: list, blocks: list, parts: list) -> list[dict]:
    """Hand the parts to the actors, one at a time each, the next to whichever finishes
    first; the driver blocks in ``ray.wait`` meanwhile (no polling). Returns the parts'
    summaries in part order."""
    summaries: list[dict | None] = [None] * len(parts)
    waiting = iter(range(len(parts)))
    pending: dict = {}  # object ref -> (actor, part)

    def hand_out(actor) -> None:
        number = next(waiting, None)
        if number is None:
            return
        slices = [(start, stop) for _, start, stop in parts[number]]
        refs = [blocks[block][0] for block, _, _ in parts[number]]
        pending[actor.encode.remote(slices, *refs)] = (actor, number)

    # One part per actor at a time: the next one waits in the driver, not in an actor's
    # queue, so at the end no actor holds a part while another idles (a round trip per part
    # costs milliseconds; a part queued behind a busy actor costs a part's time).
    for actor in actors:
        hand_out(actor)
    while pending:
        (done,), _ = ray.wait(list(pending), num_returns=1)
        actor, number = pending.pop(done)
        try:
            summaries[number] = ray.get(done)
        except ray.exceptions.RayTaskError as error:
            raise error.as_instanceof_cause() from None
        except ray.exceptions.RayActorError as error:
            raise RuntimeError(
                f"encoder actor died {_ACTOR_RESTARTS + 1} times on part {number} "
                f"({error}); run the job again (finished parts are kept)"
            ) from None
        hand_out(actor)
    return summaries


def encode_corpus_on_ray(job: EncodeJob, *, address: str | None = None) -> EncodeResult:
    """Encode ``job.input`` on the Ray cluster into parts under ``job.output``.

    Ray Data reads the corpus into the object store first; then the encoder actors, their
    models loaded, take the parts one at a time each. Returns the :class:`EncodeResult`
    (also written to ``output/encode.json``). Raises :class:`InputError` for a bad corpus
    (naming the document), or when a document is missing from the parts or in two of them
    (the exactly-once check).
    """
    from sparse_ir.distributed.cluster import init_ray

    ray = init_ray(address)
    started = time.perf_counter()
    output = Path(job.output)
    output.mkdir(parents=True, exist_ok=True)
    corpus = str(Path(job.input).resolve())
    # Blocks of about one part (an estimate: the parts themselves are cut exactly).
    estimate = _estimated_documents(Path(job.input)) if Path(job.input).exists() else 1
    read_size = resolve_part_size(job.part_size, estimate, job.actors)
    blocks = _read_corpus(ray, Path(job.input), read_size, readers=max(2, job.actors))
    corpus_rows = sum(rows for _, rows in blocks)
    part_size = _planned_part_size(output, job, corpus, corpus_rows)
    parts = _cut_parts([rows for _, rows in blocks], part_size)
    settings = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in asdict(job).items()}
    settings["part_size"] = part_size
    actors = _start_encoders(ray, job, settings)
    try:
        summaries = _encode_parts(ray, actors, blocks, parts)
        model_settings = ray.get(actors[0].settings_of_model.remote())
    finally:
        for actor in actors:
            ray.kill(actor)
    del blocks  # the corpus leaves the object store
    result = EncodeResult(
        output,
        [row["part"] for row in summaries],
        [int(row["documents"]) for row in summaries],
        [float(row["max_weight"]) for row in summaries],
        model_settings,
        encoded=sum(1 for row in summaries if not row["kept"]),
        kept=sum(1 for row in summaries if row["kept"]),
        part_size=part_size,
    )
    fresh = [row for row in summaries if not row["kept"]]
    if fresh:  # from the first part started to the last finished: model loading excluded
        result.encode_seconds = max(r["finished"] for r in fresh) - min(r["started"] for r in fresh)
        result.encoded_documents = sum(int(r["documents"]) for r in fresh)
        for row in fresh:
            worker = result.workers.setdefault(
                int(row["worker"]),
                {
                    "parts": 0,
                    "documents": 0,
                    "busy": 0.0,
                    "first_started": float(row["started"]),
                    "page_faults": 0,
                    "system_seconds": 0.0,
                },
            )
            worker["parts"] += 1
            worker["page_faults"] += int(row.get("page_faults", 0))
            worker["system_seconds"] += float(row.get("system_seconds", 0.0))
            worker["documents"] += int(row["documents"])
            worker["busy"] += float(row["finished"] - row["started"])
            worker["first_started"] = min(worker["first_started"], float(row["started"]))
        first = min(float(r["started"]) for r in fresh)
        for worker in result.workers.values():
            worker["first_started"] = round(worker["first_started"] - first, 3)
            worker["busy"] = round(worker["busy"], 3)
            worker["system_seconds"] = round(worker["system_seconds"], 3)
    _check_exactly_once(result, corpus_rows)
    result.seconds = round(time.perf_counter() - started, 3)
    _write_encode_manifest(result, corpus=corpus)
    _remove_orphans(output, set(result.parts))
    logger.info(
        "encoded %d documents in %d parts of %d (%d kept) in %.1fs",
        result.documents,
        len(result.parts),
        part_size,
        result.kept,
        result.seconds,
    )
    return result


def _check_exactly_once(result: EncodeResult, corpus_rows: int) -> None:
    """Every corpus document in exactly one part: ids read back from the part files."""
    seen: dict[str, str] = {}
    for name, size in zip(result.parts, result.sizes):
        ids = _part_ids(result.output / name)
        if len(ids) != size:
            raise InputError(f"{name} holds {len(ids)} documents, its batch had {size}")
        for doc_id in ids:
            if doc_id in seen:
                raise InputError(
                    f"document {doc_id!r} is in {seen[doc_id]} and in {name}: a corpus id "
                    "must appear once (a duplicate id in the corpus, or a part written twice)"
                )
            seen[doc_id] = name
    if len(seen) != corpus_rows:
        raise InputError(
            f"the parts hold {len(seen)} documents, the corpus {corpus_rows}: some batch was "
            "lost; run the job again (finished parts are kept)"
        )


def _part_ids(path: Path) -> list[str]:
    with np.load(path, allow_pickle=False) as data:
        return json.loads(bytes(data["ids"]).decode("utf-8"))


def _write_encode_manifest(result: EncodeResult, *, corpus: str) -> None:
    body = {
        "format": ENCODE_FORMAT,
        "corpus": corpus,
        "parts": result.parts,
        "sizes": result.sizes,
        "max_weights": result.max_weights,
        "documents": result.documents,
        "settings": result.settings,
        "encoded": result.encoded,
        "kept": result.kept,
        "seconds": result.seconds,
        "part_size": result.part_size,
    }
    temporary = result.output / f".{ENCODE_MANIFEST}.tmp-{os.getpid()}"
    temporary.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, result.output / ENCODE_MANIFEST)


def _remove_orphans(output: Path, listed: set[str]) -> None:
    """Parts of earlier runs that this run's batches do not name (other part sizes)."""
    for entry in output.glob("part-*.npz"):
        if entry.name not in listed:
            logger.info("removing %s: not a part of this run", entry)
            entry.unlink()
    workers = output / ".workers"
    if workers.is_dir():
        for entry in workers.iterdir():
            entry.unlink()
        workers.rmdir()


# -- indexing ---------------------------------------------------------------------------------


def _build_shard(parts: list[str], output: str, name: str, quantizer: dict, options: dict):
    """Ray task: one impact index from a group of parts, with the global quantizer."""
    from sparse_ir.index.impact_index import ImpactIndex
    from sparse_ir.quantize import Quantizer
    from sparse_ir.sparse_batch import SparseBatch

    index = ImpactIndex.build(
        (SparseBatch.load(p) for p in parts),
        Path(output) / name,
        quantizer=Quantizer.from_dict(quantizer),
        show_progress=False,
        **options,
    )
    return index.num_documents


def index_shards_on_ray(
    encoded: EncodeResult | str | os.PathLike,
    output: str | os.PathLike,
    *,
    shards: int,
    bits: int | None = None,
    scale: float | None = None,
    memory_budget: str = "1GB",
    num_cpus: float = 1.0,
    settings: dict | None = None,
    address: str | None = None,
):
    """Build a sharded impact index at ``output`` from encoded parts, ``shards`` Ray tasks
    at once (contiguous groups of parts, balanced by documents).

    The global quantizer is ``Quantizer(scale)`` (default 100, as a single-machine build),
    or with ``bits`` the one fitted to the largest weight of all parts. Returns the opened
    :class:`~sparse_ir.index.sharded.ShardedIndex`.
    """
    from sparse_ir.distributed.cluster import init_ray
    from sparse_ir.index.sharded import (
        ShardedIndex,
        global_quantizer,
        shard_name,
        write_sharded_manifest,
    )

    if not isinstance(encoded, EncodeResult):
        encoded = read_encode_result(encoded)
    if not 1 <= shards <= max(len(encoded.parts), 1):
        raise ValueError(f"shards must be in 1..{len(encoded.parts)} (the parts), got {shards}")
    ray = init_ray(address)
    quantizer = global_quantizer(encoded.max_weights, bits=bits, scale=scale)
    groups = _balanced_groups(encoded.sizes, shards)
    directory = Path(output)
    directory.mkdir(parents=True, exist_ok=True)
    build = ray.remote(_build_shard).options(num_cpus=num_cpus, max_retries=2)
    recorded = {**encoded.settings, **(settings or {})}
    refs = [
        build.remote(
            [str(encoded.output / encoded.parts[p]) for p in group],
            str(directory),
            shard_name(number),
            quantizer.to_dict(),
            {"memory_budget": memory_budget, "settings": recorded},
        )
        for number, group in enumerate(groups)
    ]
    ray.get(refs)
    names = [shard_name(n) for n in range(len(groups))]
    write_sharded_manifest(directory, names, settings=recorded)
    return ShardedIndex.open(directory)


def _balanced_groups(sizes: Sequence[int], groups: int) -> list[list[int]]:
    """Contiguous groups of part numbers with about equal documents each.

    Example:
        >>> _balanced_groups([10, 10, 10, 10, 5], 2)
        [[0, 1], [2, 3, 4]]
    """
    total = sum(sizes)
    bounds = [total * (g + 1) / groups for g in range(groups)]
    out: list[list[int]] = [[] for _ in range(groups)]
    running = 0
    group = 0
    for number, size in enumerate(sizes):
        remaining_parts = len(sizes) - number
        if out[group] and running >= bounds[group] - size / 2 and group < groups - 1:
            group += 1
        # Leave at least one part for every group still to fill.
        group = max(group, groups - remaining_parts)
        out[group].append(number)
        running += size
    return out
