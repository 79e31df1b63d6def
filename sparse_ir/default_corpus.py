"""The embedded default corpus: docstrings of the Python standard library, as passages.

Every Python installation carries it, so ``sparse-ir demo`` runs with no data at all. Source
files are parsed with :mod:`ast` (nothing is imported or executed); each module, class and
function docstring of at least ``min_words`` words becomes a passage titled by its qualified name,
long docstrings split at paragraph breaks into passages of about ``max_words`` words.
"""

from __future__ import annotations

import ast
import functools
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from sparse_ir.corpus import Document

__all__ = ["stdlib_docstrings"]

# Packages whose docstrings are mostly tests, tooling or duplicates of others.
_SKIP = {
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "site-packages",
    "dist-packages",
    "ensurepip",
    "turtledemo",
    "__pycache__",
    "pydoc_data",
    "tkinter",
    "venv",
}


def _modules(stdlib: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(stdlib.rglob("*.py")):
        relative = path.relative_to(stdlib)
        if any(
            part in _SKIP or part.startswith(("_", ".")) and part != "__init__.py"
            for part in relative.parts
        ):
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts:
            yield ".".join(parts), path


def _docstrings(module: str, tree: ast.Module) -> Iterator[tuple[str, str]]:
    doc = ast.get_docstring(tree)
    if doc:
        yield module, doc

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if child.name.startswith("_"):
                    continue
                name = f"{prefix}.{child.name}"
                text = ast.get_docstring(child)
                if text:
                    yield name, text
                if isinstance(child, ast.ClassDef):
                    yield from walk(child, name)

    yield from walk(tree, module)


def _passages(text: str, max_words: int) -> Iterator[str]:
    words_so_far: list[str] = []
    for paragraph in text.split("\n\n"):
        words = paragraph.split()
        if words_so_far and len(words_so_far) + len(words) > max_words:
            yield " ".join(words_so_far)
            words_so_far = []
        words_so_far.extend(words)
        while len(words_so_far) > max_words * 2:
            yield " ".join(words_so_far[:max_words])
            words_so_far = words_so_far[max_words:]
    if words_so_far:
        yield " ".join(words_so_far)


@functools.lru_cache(maxsize=2)
def _all_docstrings(stdlib: str) -> tuple[tuple[str, str], ...]:
    """Every ``(qualified name, docstring)`` of the standard library at ``stdlib``, in module
    order. Parsing takes seconds and the files do not change while Python runs, so it is done
    once per process (the demo and its tests ask for the corpus several times)."""
    found: list[tuple[str, str]] = []
    for module, path in _modules(Path(stdlib)):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue
        found.extend(_docstrings(module, tree))
    return tuple(found)


def stdlib_docstrings(
    max_documents: int | None = 3000, *, min_words: int = 12, max_words: int = 160
) -> list[Document]:
    """Passages from the standard library's docstrings, in a stable order.

    Args:
        max_documents: keep at most this many passages (the longest-documented modules first is
            not attempted: the order is alphabetical by module, which is stable across runs).
        min_words: skip docstrings shorter than this.
        max_words: target passage length.
    """
    documents: list[Document] = []
    for name, text in _all_docstrings(sysconfig.get_paths()["stdlib"]):
        if len(text.split()) < min_words:
            continue
        for number, passage in enumerate(_passages(text, max_words)):
            if len(passage.split()) >= min_words:
                documents.append(Document(f"{name}#{number}", name, passage))
    if max_documents is not None and len(documents) > max_documents:
        # An even sample across the whole library rather than its first modules alphabetically.
        step = len(documents) / max_documents
        documents = [documents[int(i * step)] for i in range(max_documents)]
    return documents
