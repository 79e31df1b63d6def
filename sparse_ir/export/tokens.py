"""Which tokens Lucene (through Anserini) indexes exactly as written, and how it splits text.

Anserini turns a JsonVectorCollection line into a pseudo-document (each token repeated by its
weight, joined by spaces) and a pretokenized query into a whitespace-separated string, both
read by Lucene's ``WhitespaceAnalyzer``. A token survives that round trip unchanged only if:

* it is not empty and contains no whitespace (it would be split in two, or vanish);
* it is at most 255 UTF-16 code units long: the analyzer's tokenizer cuts longer tokens into
  255-unit pieces (checked against the real engine in ``tests/test_lucene.py``);
* it is at most 32,766 bytes in UTF-8, Lucene's hard limit on the length of a term
  (``IndexWriter.MAX_TERM_LENGTH``); implied by the previous rule, kept for other Lucene
  front ends such as Elasticsearch's ``rank_features``, which do not tokenize;
* it is valid Unicode (no lone surrogates), so it can be written as UTF-8 at all.

Whitespace here is Python's ``str.isspace``, a superset of Java's ``Character.isWhitespace``
(it also refuses no-break spaces, which Lucene would keep inside a token but which break
tab/space separated files downstream).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sparse_ir.errors import InputError
from sparse_ir.validation import LUCENE_MAX_TERM_BYTES, LUCENE_MAX_TOKEN_CHARS, term_problem
from sparse_ir.validation import column_id_problem as shared_id_problem

__all__ = [
    "MAX_TERM_BYTES",
    "MAX_TOKEN_UTF16",
    "check_tokens",
    "id_problem",
    "split_like_lucene",
    "token_problem",
]

#: Lucene's IndexWriter.MAX_TERM_LENGTH: the longest term, in UTF-8 bytes.
MAX_TERM_BYTES = LUCENE_MAX_TERM_BYTES
#: Lucene CharTokenizer's default maximum token length (WhitespaceAnalyzer), in UTF-16 units.
MAX_TOKEN_UTF16 = LUCENE_MAX_TOKEN_CHARS

# Java's Character.isWhitespace: what Lucene's WhitespaceTokenizer splits on. Space separators
# (Zs) except the no-break ones (U+00A0, U+2007, U+202F), line/paragraph separators, and the
# ASCII controls TAB, LF, VT, FF, CR, FS, GS, RS, US.
_JAVA_WHITESPACE = re.compile(
    "[\t\n\x0b\x0c\r\x1c-\x1f \u1680\u2000-\u2006\u2008-\u200a\u2028\u2029\u205f\u3000]+"
)


def token_problem(token: str) -> str | None:
    """Why Lucene would not index ``token`` exactly as written, or None when it would.

    The rule itself lives in :func:`sparse_ir.validation.term_problem`, shared with the index
    builder, so an index never holds a term its Lucene export would have to refuse.
    """
    return term_problem(token)


def check_tokens(
    tokens: Iterable[str], *, path: object = None, line: int | None = None, context: str = ""
) -> None:
    """Raise :class:`InputError` for the first token Lucene could not index as written."""
    for token in tokens:
        problem = token_problem(token)
        if problem is not None:
            prefix = f"{context}: " if context else ""
            raise InputError(
                f"{prefix}{problem}; such a token cannot be exported to Lucene "
                "(rename it in the vocabulary or drop it)",
                path=path,
                line=line,
            )


def split_like_lucene(text: str) -> list[str]:
    """Split pretokenized text into tokens exactly as Lucene's WhitespaceTokenizer does
    (ignoring its 255-unit cut, which :func:`token_problem` reports instead)."""
    return [token for token in _JAVA_WHITESPACE.split(text) if token]


def id_problem(identifier: str) -> str | None:
    """Why an id cannot appear in a TREC run or an Anserini topics file, or None
    (:func:`sparse_ir.validation.id_problem`, shared with every reader)."""
    return shared_id_problem(identifier)
