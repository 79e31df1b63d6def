"""The service's writes: documents added, replaced and deleted through the writers it holds,
then committed and swapped in.

The service opens the writer of each index it serves (an :class:`~sparse_ir.index.writer.
IndexWriter`, and a :class:`~sparse_ir.index.writer.DenseIndexWriter` for the dense index of
a hybrid pair) at its first write and holds them, and their locks, until it stops: another
writer (``sparse-ir add`` in another process) gets ``IndexBusyError`` meanwhile, and a
service that finds the lock taken refuses writes with a 409 naming the holder. The app runs
one write at a time (an asyncio lock), on a worker thread.

Nothing written is visible to searches until :meth:`Writes.commit`, which commits every
writer and swaps the new generation of each index in through :meth:`Engine.reload` (requests
in flight finish on the generation they started with).

A hybrid pair gets the same documents in both indexes: each request encodes for both first,
then stages in both; a commit publishes the sparse index, then the dense one, and serves the
new pair only when both committed (the swap checks that they hold the same documents).
Anything that cannot be done to both is refused, never done to one.

Example (through the app; ``admin`` holds the admin token)::

    POST /documents {"documents": [{"id": "d1", "title": "Vitamin D", "text": "..."}]}
    POST /commit
    DELETE /documents/d1
    POST /commit
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from sparse_ir.corpus import full_text
from sparse_ir.errors import IndexBusyError, IndexFormatError, InputError
from sparse_ir.service.engine import set_torch_threads
from sparse_ir.sparse_batch import SparseBatch

__all__ = ["NewDocument", "WriteError", "Writes"]

logger = logging.getLogger(__name__)


class WriteError(Exception):
    """A write the service refuses: an HTTP status, a short code and a message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class NewDocument:
    """A document to add: its text is encoded by the index's model unless ``vector`` (a
    pre-encoded ``{token: weight}``) is given."""

    id: str
    title: str
    text: str
    vector: dict | None = None
    metadata: dict | None = None

    @property
    def full_text(self) -> str:
        """``title + " " + text``, as the corpus reader encodes documents."""
        return full_text(self.title, self.text)


class Writes:
    """The writers of a service's indexes, opened at the first write.

    Args:
        engine: the service's :class:`~sparse_ir.service.engine.Engine` (its index roots,
            and the reload that swaps a commit in).
        device: where the document encoders run.
        encoder_threads: PyTorch threads of a document encoder call (None: PyTorch's own).
    """

    def __init__(self, engine, *, device: str = "cpu", encoder_threads: int | None = 1):
        self.engine = engine
        self.device = device
        self.encoder_threads = encoder_threads
        self._writers: list | None = None  # [sparse writer, dense writer (hybrid pair)]
        self._encoders: dict[int, object] = {}  # writer position -> document encoder
        #: Changes staged since the last commit, and commits made (for /stats).
        self.pending = {"added": 0, "upserted": 0, "deleted": 0}
        self.commits = 0

    # -- opening ----------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        """True once the writers are open (the service holds the indexes' write locks)."""
        return self._writers is not None

    def writers(self) -> list:
        """The writers, opened (and their locks taken) at the first call."""
        if self._writers is not None:
            return self._writers
        from sparse_ir.cli.live import open_writer

        loaded = self.engine.current
        roots = [self.engine.sparse_root]
        if loaded.dense is not None:
            roots.append(self.engine.dense_root)
        settings = loaded.sparse.index.settings
        if settings.get("query_encoder") == "bm25":
            raise WriteError(
                409,
                "not_writable",
                f"the index {roots[0]} is a BM25 index, which cannot take documents (its "
                "weights depend on the whole corpus): rebuild it with sparse-ir index --bm25",
            )
        writers = []
        try:
            for root in roots:
                writers.append(open_writer(str(root)))
        except IndexBusyError as error:
            _close(writers)
            raise WriteError(409, "index_busy", f"cannot write: {error}") from None
        except (InputError, IndexFormatError) as error:  # e.g. an index of another kind
            _close(writers)
            raise WriteError(409, "not_writable", f"cannot write: {error}") from None
        self._writers = writers
        logger.info("holding the write lock of %s", ", ".join(str(r) for r in roots))
        return writers

    def close(self) -> None:
        """Release the writers and their locks; changes not committed are discarded (and
        logged)."""
        if self._writers is not None:
            if any(self.pending.values()):
                logger.warning(
                    "stopping with uncommitted writes (discarded): %s",
                    ", ".join(f"{count} {what}" for what, count in self.pending.items()),
                )
            _close(self._writers)
            self._writers = None

    # -- writing ----------------------------------------------------------------------------

    def add(self, documents: list[NewDocument], *, upsert: bool, impacts: bool) -> dict:
        """Stage documents in every index (not visible until :meth:`commit`)."""
        writers = self.writers()
        pre_encoded = documents[0].vector is not None
        if len(writers) > 1 and pre_encoded:
            raise WriteError(
                422,
                "invalid_request",
                "pre-encoded documents cannot be added to a hybrid pair: the dense index "
                "needs their embedding too. Send the documents' title and text instead, "
                "and the service encodes them for both indexes",
            )
        # Everything is encoded and checked before anything is staged, so a refusal leaves
        # every index as it was.
        staged = [self._documents_for(i, w, documents, impacts) for i, w in enumerate(writers)]
        ids = [document.id for document in documents]
        if not upsert:
            for writer in writers:
                present = [doc_id for doc_id in ids if doc_id in writer]
                if present:
                    raise WriteError(
                        409,
                        "already_exists",
                        f"document id {present[0]!r} is already in the index {writer.root} "
                        f'({len(present)} of the {len(ids)} ids are); use "mode": '
                        '"upsert" to replace documents, or delete them first',
                    )
        done = 0
        try:
            metadata = [document.metadata for document in documents]
            if not any(metadata):
                metadata = None
            for writer, (batch, contents) in zip(writers, staged):
                (writer.upsert if upsert else writer.add)(batch, contents, metadata=metadata)
                done += 1
        except InputError as error:
            if done:
                self._rollback(f"the dense index refused what the sparse one took: {error}")
            raise WriteError(422, "invalid_request", str(error)) from None
        self.pending["upserted" if upsert else "added"] += len(documents)
        return {
            "upserted" if upsert else "added": len(documents),
            "ids": ids,
            "committed": False,
            "pending": dict(self.pending),
        }

    def delete(self, doc_id: str) -> dict:
        """Stage the deletion of a document (live, or added since the last commit)."""
        writers = self.writers()
        results = [writer.delete([doc_id]) for writer in writers]
        if len({result.deleted for result in results}) > 1:
            self._rollback(f"document {doc_id!r} was in one index of the pair only")
        if not results[0].deleted:
            raise WriteError(404, "not_found", f"no document with id {doc_id!r}")
        self.pending["deleted"] += 1
        return {"deleted": doc_id, "committed": False, "pending": dict(self.pending)}

    def commit(self, *, verify: bool) -> dict:
        """Commit every writer, then swap the new generations in for searches."""
        if self._writers is None:  # nothing written since the service started
            generation = self.engine.current.generation
            return {"committed": False, "generation": generation, "reloaded": False}
        results = []
        # Both indexes of a hybrid pair record one stamp, as `sparse-ir add --dense-index`
        # does: without it each commit would be stamped alone once the pair had been changed
        # together, and the pair would be refused at the reload (hybrid.check_pair).
        from sparse_ir.index.writer import new_pair_stamp

        pair = new_pair_stamp(self._writers)
        for position, writer in enumerate(self._writers):
            try:
                results.append(writer.commit(pair=pair))
            except Exception as error:
                if position == 0:
                    raise
                raise WriteError(
                    500,
                    "commit_incomplete",
                    f"the sparse index committed {results[0].generation}, but the dense "
                    f"index's commit failed: {error}. The service keeps serving the previous "
                    "pair; retry POST /commit (the dense index's changes are still staged)",
                ) from error
        changed = any(self.pending.values())
        self.pending = dict.fromkeys(self.pending, 0)
        self.commits += changed
        try:
            reload = self.engine.reload(verify=verify)
        except Exception as error:
            raise WriteError(
                503,
                "reload_failed",
                f"committed {results[0].generation}, but opening it for searches failed: "
                f"{error}; the previous generation stays in service",
            ) from error
        sparse = results[0]
        return {
            "committed": changed,
            "generation": reload["generation"],
            "reloaded": reload["reloaded"],
            "documents": sparse.documents,
            "segments": sparse.segments,
            "deleted_documents": sparse.deleted,
            "merged": sparse.merged,
        }

    # -- encoding -----------------------------------------------------------------------------

    def _documents_for(self, position: int, writer, documents: list[NewDocument], impacts: bool):
        """``(batch, contents)`` for ``writer.add``: the documents' vectors for this index."""
        from sparse_ir.index.manifest import DENSE_FORMAT

        ids = [document.id for document in documents]
        if writer.kind == DENSE_FORMAT:
            vectors = self._encoder(position, writer).encode_documents(
                [d.full_text for d in documents], show_progress=False
            )
            return (ids, np.asarray(vectors)), None
        contents = [(d.title, d.text) for d in documents] if writer.has_contents else None
        if documents[0].vector is not None:
            if contents is not None and not all(d.title or d.text for d in documents):
                raise WriteError(
                    422,
                    "invalid_request",
                    f"the index {writer.root} stores each document's title and text: give "
                    "'title' and/or 'text' with each vector",
                )
            vectors = [
                {t: int(w) if impacts else float(w) for t, w in d.vector.items()} for d in documents
            ]
            try:
                batch = SparseBatch.from_dicts(vectors, writer.vocab, ids=ids)
            except InputError as error:
                raise WriteError(
                    422, "invalid_request", f"documents: {error} of the index {writer.root}"
                ) from None
            return batch, contents
        encoder = self._encoder(position, writer)
        batch = encoder.encode_documents(
            [d.full_text for d in documents], ids=ids, show_progress=False
        )
        return batch, contents

    def _encoder(self, position: int, writer):
        """The document encoder the index records, loaded at the first text write."""
        from sparse_ir.cli.live import document_encoder

        encoder = self._encoders.get(position)
        if encoder is None:
            try:
                encoder = document_encoder(writer, device=self.device)
            except (ValueError, OSError, ImportError) as error:  # ImportError: a missing extra
                raise WriteError(
                    409, "not_writable", f"cannot encode documents for {writer.root}: {error}"
                ) from None
            self._encoders[position] = encoder
        set_torch_threads(self.encoder_threads)
        return encoder

    def _rollback(self, why: str) -> None:
        """Discard every staged change of every writer (the pair disagreed: a bug), loudly."""
        for writer in self._writers or ():
            writer.rollback()
        self.pending = dict.fromkeys(self.pending, 0)
        logger.error("writes rolled back: %s", why)
        raise WriteError(
            500,
            "writes_rolled_back",
            f"the indexes of the pair disagreed ({why}); every uncommitted change was "
            "discarded so that they stay the same",
        )


def _close(writers) -> None:
    for writer in writers:
        writer.close()
