"""Do two runs agree? Top-k scores compared exactly, ties compared as sets.

Two engines that compute the same integer scores may still order tied documents differently
(we break ties by internal document number, Anserini by id string), and may cut a tie group at
rank k differently. So for each query the top-``depth`` scores must be the same sequence, every
tie group inside the top-``depth`` must hold the same documents, and the group cut at rank
``depth`` must be drawn from the same tie group of the other run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from sparse_ir.results import Hit, Run

__all__ = ["FLOAT32_EXACT_LIMIT", "AgreementReport", "QueryDisagreement", "compare_top_k"]

#: Integers up to 2^24 are exact in float32, the type of Lucene's scores.
FLOAT32_EXACT_LIMIT = 2**24


class QueryDisagreement(NamedTuple):
    """One query whose top results differ, with both sides as ``(score, doc ids)`` groups."""

    query_id: str
    reason: str
    ours: list[tuple[float, list[str]]]
    theirs: list[tuple[float, list[str]]]


@dataclass
class AgreementReport:
    """The outcome of :func:`compare_top_k`."""

    depth: int
    queries: int = 0
    agreeing: int = 0
    max_score: float = 0
    disagreements: list[QueryDisagreement] = field(default_factory=list)

    @property
    def all_agree(self) -> bool:
        """True when every query agrees."""
        return self.queries == self.agreeing

    @property
    def scores_exact_in_float32(self) -> bool:
        """True when every compared score is an integer float32 holds exactly."""
        return self.max_score < FLOAT32_EXACT_LIMIT

    def __str__(self) -> str:
        text = (
            f"{self.agreeing}/{self.queries} queries agree on their top-{self.depth} "
            f"(scores and tie groups); largest score {self.max_score:g} "
            f"({'<' if self.scores_exact_in_float32 else '>='} 2^24)"
        )
        for item in self.disagreements[:3]:
            text += (
                f"\n  query {item.query_id}: {item.reason}\n    ours   {item.ours}"
                f"\n    theirs {item.theirs}"
            )
        return text


def _groups(hits: list[Hit], depth: int) -> list[tuple[float, list[str]]]:
    groups: list[tuple[float, list[str]]] = []
    for hit in hits[:depth]:
        if groups and groups[-1][0] == hit.score:
            groups[-1][1].append(hit.doc_id)
        else:
            groups.append((hit.score, [hit.doc_id]))
    return [(score, sorted(ids)) for score, ids in groups]


def _tie_group(hits: list[Hit], score: float) -> tuple[set[str], bool]:
    """Every document of ``hits`` with ``score``; and whether the group may go on past the
    end of the list (so it could be incomplete)."""
    members = {hit.doc_id for hit in hits if hit.score == score}
    return members, bool(hits) and hits[-1].score == score


def _compare_query(
    qid: str, ours: list[Hit], theirs: list[Hit], depth: int
) -> QueryDisagreement | None:
    our_scores = [hit.score for hit in ours[:depth]]
    their_scores = [hit.score for hit in theirs[:depth]]
    our_groups, their_groups = _groups(ours, depth), _groups(theirs, depth)
    if our_scores != their_scores:
        return QueryDisagreement(qid, "different top scores", our_groups, their_groups)
    for index, ((score, our_ids), (_, their_ids)) in enumerate(zip(our_groups, their_groups)):
        last = index == len(our_groups) - 1
        if set(our_ids) == set(their_ids):
            continue
        if not last:
            return QueryDisagreement(
                qid, f"different documents with score {score:g}", our_groups, their_groups
            )
        # The tie group cut at rank `depth`: each side's members must belong to the other
        # side's whole group of that score.
        our_all, our_open = _tie_group(ours, score)
        their_all, their_open = _tie_group(theirs, score)
        if not (set(our_ids) <= their_all and set(their_ids) <= our_all):
            reason = f"tie group of score {score:g} cut at rank {depth} differs"
            if our_open or their_open:
                reason += " (the group reaches the end of a run: retrieve more hits)"
            return QueryDisagreement(qid, reason, our_groups, their_groups)
    return None


def compare_top_k(
    ours: Run, theirs: Run, depth: int = 10, query_ids: Iterable[str] | None = None
) -> AgreementReport:
    """Compare the top-``depth`` of two runs query by query (see the module docs).

    ``query_ids`` (default: every query of either run) lists the queries to compare; a query
    missing from a run counts as one with no hits. Runs deeper than ``depth`` (e.g. 1000
    hits) let a tie group cut at ``depth`` be checked fully.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    ids = list(query_ids) if query_ids is not None else sorted(set(ours) | set(theirs))
    report = AgreementReport(depth=depth)
    for qid in ids:
        our_hits = ours.results.get(qid, [])
        their_hits = theirs.results.get(qid, [])
        for hit in our_hits[:depth] + their_hits[:depth]:
            report.max_score = max(report.max_score, hit.score)
        report.queries += 1
        problem = _compare_query(qid, our_hits, their_hits, depth)
        if problem is None:
            report.agreeing += 1
        else:
            report.disagreements.append(problem)
    return report
