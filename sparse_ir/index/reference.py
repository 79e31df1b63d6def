"""Plain numpy scoring: the definition every fast search kernel is tested against.

score(d) = Σ_t q_t · impact(t, d) over the query terms t, in exact integers; the top-k is
ordered by score descending, then document number ascending; documents scoring 0 (matching no
query term) are not returned.
"""

from __future__ import annotations

import numpy as np

__all__ = ["reference_scores", "reference_top_k"]


def reference_scores(
    term_offsets: np.ndarray,
    postings_docs: np.ndarray,
    postings_impacts: np.ndarray,
    num_documents: int,
    query_terms: np.ndarray,
    query_weights: np.ndarray,
) -> np.ndarray:
    """Exact int64 score of every document for one query."""
    scores = np.zeros(num_documents, np.int64)
    for term, weight in zip(query_terms.tolist(), query_weights.tolist()):
        start, end = int(term_offsets[term]), int(term_offsets[term + 1])
        # A term's documents are distinct, so fancy-index += adds each posting once.
        scores[postings_docs[start:end]] += int(weight) * np.asarray(
            postings_impacts[start:end], np.int64
        )
    return scores


def reference_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(docnos, scores)`` of the k best documents with a positive score, tie-broken."""
    candidates = np.flatnonzero(scores > 0)
    order = np.lexsort((candidates, -scores[candidates]))[:k]
    chosen = candidates[order]
    return chosen.astype(np.int64), scores[chosen]
