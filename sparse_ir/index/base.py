"""What every index kind shares: opening a generation, its manifest record, ids and size.

An index kind (:class:`~sparse_ir.index.ImpactIndex`, :class:`~sparse_ir.index.DenseIndex`)
subclasses :class:`IndexBase`, names its manifest record class (:mod:`.manifest`), and writes
``__init__(directory, manifest)`` (map its arrays) and ``_verify_contents()`` (its invariants).
Opening through ``CURRENT`` with retries, the manifest's format check, the cheap file checks at
open, the document ids and the size on disk are here once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from sparse_ir.errors import IndexCorruptError
from sparse_ir.index.manifest import DenseManifest, ImpactManifest
from sparse_ir.index.storage import IndexDirectory, check_files, check_files_at_open, read_manifest
from sparse_ir.index.strings import StringColumn

__all__ = ["IndexBase"]

ManifestT = TypeVar("ManifestT", ImpactManifest, DenseManifest)
IndexT = TypeVar("IndexT", bound="IndexBase")


class IndexBase(Generic[ManifestT]):
    """An index generation on disk: its directory, its typed manifest and its document ids.

    Attributes:
        directory: the generation directory that was opened.
        manifest: the generation's manifest record (:mod:`.manifest`).
        build_report: what the build did, on an index returned by ``build()`` (else None).
    """

    #: The manifest record class of this kind (its FORMAT and FORMAT_VERSION are checked).
    manifest_type: ClassVar[type]
    #: Files up to this size are checksummed at every open (metadata, like Lucene's segment
    #: infos); larger ones only by :meth:`verify`.
    check_at_open_bytes: ClassVar[int] = 16 << 20
    build_report = None

    def __init__(self, directory: Path, manifest: ManifestT):
        self.directory = directory
        self.manifest: ManifestT = manifest
        self._doc_ids = StringColumn(directory, "doc_ids", manifest.num_documents)
        self._doc_id_list: list[str] | None = None
        self._docnos: dict[str, int] | None = None

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls: type[IndexT], path: str | os.PathLike, *, verify: bool = False) -> IndexT:
        """Open an index (memory-mapped) after checking its manifest, headers and sizes.

        ``path`` is an index directory (with ``CURRENT``) or one generation directory. When
        ``CURRENT`` names a commit of a live index (:mod:`.segments`), the result is a
        :class:`~sparse_ir.index.live_index.LiveImpactIndex` /
        :class:`~sparse_ir.index.live_index.LiveDenseIndex` with the same search API. Small
        files are checksummed too; ``verify=True`` checks every byte (see :meth:`verify`).

        Raises:
            FileNotFoundError: nothing at ``path``.
            IndexFormatError: another format or format version (both versions named).
            IndexCorruptError: a missing, cut, or altered file.
        """
        index = IndexDirectory(path).open_current(cls._open_generation)
        if verify:
            index.verify()
        return index

    @classmethod
    def _open_generation(cls: type[IndexT], generation: Path) -> IndexT:
        from sparse_ir.index.segments import is_commit

        if is_commit(generation):  # a live index: its segments searched as one
            from sparse_ir.index.live_index import open_live

            return open_live(cls, generation)
        record = cls.manifest_type
        versions = getattr(record, "READ_VERSIONS", (record.FORMAT_VERSION,))
        body = read_manifest(generation, format_name=record.FORMAT, version=versions)
        manifest = record.from_dict(body, source=generation / "manifest.json")
        check_files_at_open(generation, manifest.files, checksum_up_to=cls.check_at_open_bytes)
        from sparse_ir.index.validate import open_validated

        try:
            return open_validated(cls, generation, manifest)  # ranges, dtypes, offsets
        except (KeyError, TypeError, ValueError) as exc:
            # The manifest passed its checksum, so it was written like this: say what is off.
            raise IndexCorruptError(f"{generation}: manifest lacks or mangles {exc}") from None

    def verify(self) -> None:
        """Check every byte: each file's CRC32 and the index's invariants.

        Raises :class:`IndexCorruptError` describing the first problem found.
        """
        check_files(self.directory, self.manifest.files, full=True)
        self._verify_contents()

    def _verify_contents(self) -> None:
        """The kind's own invariants, after every file's checksum passed."""
        raise NotImplementedError

    # -- facts --------------------------------------------------------------------------------

    @property
    def num_documents(self) -> int:
        """Number of documents (including empty ones)."""
        return self.manifest.num_documents

    @property
    def settings(self) -> dict:
        """What the build recorded (the model or encoder's settings, the corpus...)."""
        return dict(self.manifest.build)

    def size_bytes(self) -> int:
        """Bytes on disk of this generation."""
        return sum(record.size for record in self.manifest.files.values())

    @property
    def doc_ids(self) -> list[str]:
        """External id of every document, by document number."""
        if self._doc_id_list is None:
            self._doc_id_list = self._doc_ids.all()
        return self._doc_id_list

    def docno(self, doc_id: str) -> int:
        """Internal number of an external id (KeyError if absent)."""
        if self._docnos is None:
            self._docnos = {d: i for i, d in enumerate(self.doc_ids)}
        return self._docnos[doc_id]

    def _check_doc_ids(self) -> None:
        """Verify the id column and that ids are unique (part of every kind's verify)."""
        if problem := self._doc_ids.check():
            raise IndexCorruptError(f"{self.directory}: {problem}")
        if len(set(self.doc_ids)) != self.num_documents:
            raise IndexCorruptError(f"{self.directory}: document ids are not unique")
        from sparse_ir.index.validate import check_doc_ids

        check_doc_ids(self.directory, self._doc_ids)  # UTF-8, no control characters

    def _repr_fields(self) -> dict[str, object]:
        """``name=value`` pairs shown by ``repr`` after the directory."""
        return {"documents": self.num_documents}

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value}" for name, value in self._repr_fields().items())
        return f"{type(self).__name__}({str(self.directory)!r}, {fields})"
