"""Fusing ranked runs: score normalization + convex combination, and Reciprocal Rank Fusion.

All functions are pure: runs in (:class:`~sparse_ir.results.Run` or ``{qid: {doc_id: score}}``),
a new run out. Each run is cut to its top ``depth`` hits per query before anything else.

**Convex combination.** Each run's scores s (of one query) are normalized, then combined::

    fused(d) = Σ_i w_i · norm_i(s_i(d)),     w_i ≥ 0,  Σ_i w_i = 1

Normalizations, over the run's top-``depth`` hits of the query:

* ``"min-max"``:  (s − min) / (max − min), in [0, 1]
* ``"z-score"``:  (s − mean) / std          (population std)
* ``"midpoint"``: (s − (min + max)/2) / (max − min), in [−0.5, 0.5]: the rule of Pyserini's
  ``HybridSearcher`` (``normalization=True``), min-max shifted by one half
* ``"none"``:     s

A run whose scores are all equal (zero range: one hit, or a constant-score run) would divide by
zero; instead every one of its documents gets the normalized value of a top document: 1 for
min-max (as Pyserini's ``TrecRun`` normalization does), 0.5 for midpoint, 0 for z-score (all at
the mean), the score itself for none.

A document that run i did not return (within its top ``depth``) gets, by ``missing``:

* ``"min"``: the run's minimum score, normalized like the others (Pyserini's HybridSearcher
  fills in the minimum before normalizing; min-max then gives 0, midpoint −0.5);
* ``"zero"``: 0 after normalization (Pyserini's ``fusion.interpolation`` sums what is there).

A run with no hits at all for a query contributes 0 to every document of that query.

**Reciprocal Rank Fusion** (Cormack, Clarke and Büttcher, SIGIR 2009)::

    RRF(d) = Σ_i w_i / (k + rank_i(d)),     k = 60,  rank 1-based,  w_i = 1 by default

summed over the runs that returned d within their top ``depth`` (a missing document adds
nothing). Ranks are positions in the run as given: tied scores get consecutive ranks in the
run's own order (as Pyserini, which reads ranks from the run file).

Fused hits are ordered by fused score descending, then document number ascending (documents
without a known number come after those with one, then by id), and carry each component's raw
score and rank (:class:`FusedHit`). With ``tie_keys`` (an array over document numbers), equal
fused scores are ordered by ``tie_keys[docno]`` instead: :class:`~sparse_ir.hybrid.
HybridSearcher` passes a live first index's ordinals, so a live pair ties exactly like the
one-shot pair of its documents in ordinal order.

**Adding a method.** Write its score function (``(aligned runs, weights, rrf_k) -> fused
scores``, beside :func:`_rrf_scores`), add one :class:`FusionRule` to :data:`FUSION_METHODS`
and its name to :data:`FusionMethod`; :class:`Fusion`, the validation messages and the CLI's
``--fusion`` choices follow. A normalization is one function in :data:`NORMALIZATIONS` and
one name in :data:`Normalization`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

import numpy as np

from sparse_ir.results import Hit, Run

__all__ = [
    "FUSION_METHODS",
    "NORMALIZATIONS",
    "FusedHit",
    "Fusion",
    "FusionMethod",
    "FusionRule",
    "MissingPolicy",
    "Normalization",
    "RunLike",
    "TuneResult",
    "convex_combination",
    "fuse_hits",
    "normalize_scores",
    "reciprocal_rank_fusion",
    "tune_weights",
]

Normalization = Literal["min-max", "z-score", "midpoint", "none"]
MissingPolicy = Literal["min", "zero"]
FusionMethod = Literal["convex", "rrf"]
RunLike = Run | Mapping[str, Mapping[str, float]]

_WEIGHT_TOLERANCE = 1e-6
_NO_DOCNO = np.iinfo(np.int64).max


class FusedHit(NamedTuple):
    """One document of a fused ranking.

    Attributes:
        doc_id: the document's external id.
        score: the fused score.
        docno: its document number in the first run that knew it (-1 when none did).
        components: its raw score in each input run, None where that run did not return it.
        ranks: its 1-based rank in each input run, None where that run did not return it.
    """

    doc_id: str
    score: float
    docno: int = -1
    components: tuple[float | None, ...] = ()
    ranks: tuple[int | None, ...] = ()


# -- validation -----------------------------------------------------------------------------------


def _check_choice(label: str, value, allowed: Mapping[str, object] | tuple[str, ...]) -> None:
    """``value`` must be a key of a registry (or one of a Literal's ``get_args``)."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{label} must be one of {tuple(allowed)}, got {value!r}")


def _check_positive_int(label: str, value, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{label} must be a positive integer, got {value!r}")


def _check_weights(weights: Sequence[float] | None, count: int, *, convex: bool) -> np.ndarray:
    if weights is None:
        return np.full(count, 1.0 / count if convex else 1.0)
    values = np.asarray([float(w) for w in weights], np.float64)
    if len(values) != count:
        raise ValueError(f"{len(values)} weights for {count} runs; give one weight per run")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"weights must be finite and >= 0, got {list(weights)}")
    if convex and abs(values.sum() - 1.0) > _WEIGHT_TOLERANCE:
        raise ValueError(
            f"convex weights must sum to 1, got {list(weights)} (sum "
            f"{values.sum():.6g}); e.g. alpha and 1 - alpha"
        )
    return values


def _as_run(run: RunLike, position: int) -> Run:
    if isinstance(run, Run):
        return run
    if isinstance(run, Mapping):
        return Run.from_dict(run, name=f"run{position}")
    raise TypeError(
        f"run {position} is a {type(run).__name__}; pass a Run or {{query_id: {{doc_id: score}}}}"
    )


# -- normalization --------------------------------------------------------------------------------
# Each function takes one query's scores (float64, non-empty, finite) and returns a new array.


def _min_max(values: np.ndarray) -> np.ndarray:
    spread = values.max() - values.min()
    return np.ones_like(values) if spread == 0 else (values - values.min()) / spread


def _z_score(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return np.zeros_like(values) if std == 0 else (values - values.mean()) / std


def _midpoint(values: np.ndarray) -> np.ndarray:
    low, high = values.min(), values.max()
    spread = high - low
    return np.full_like(values, 0.5) if spread == 0 else (values - (low + high) / 2) / spread


def _identity(values: np.ndarray) -> np.ndarray:
    return values.copy()


#: Every normalization by name (the names of :data:`Normalization`); see the module docstring.
NORMALIZATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "min-max": _min_max,
    "z-score": _z_score,
    "midpoint": _midpoint,
    "none": _identity,
}


def normalize_scores(
    scores: Sequence[float] | np.ndarray, method: Normalization = "min-max"
) -> np.ndarray:
    """Normalize one query's scores of one run (float64 array, same order).

    See the module docstring for the formulas and the zero-range rule.

    Example:
        >>> normalize_scores([3.0, 2.0, 1.0]).tolist()
        [1.0, 0.5, 0.0]
        >>> normalize_scores([3.0, 2.0, 1.0], "midpoint").tolist()
        [0.5, 0.0, -0.5]
    """
    _check_choice("normalization", method, NORMALIZATIONS)
    values = np.asarray(scores, np.float64)
    if values.ndim != 1:
        raise ValueError(f"scores must be 1-d, got shape {values.shape}")
    if len(values) and not np.all(np.isfinite(values)):
        raise ValueError("scores must be finite (found NaN or infinity)")
    if not len(values):
        return values.copy()
    return NORMALIZATIONS[method](values)


# -- aligning the runs of one query ---------------------------------------------------------------


@dataclass
class _Aligned:
    """One query's documents across runs: raw and normalized scores, ranks, the tie-break."""

    doc_ids: list[str]
    docnos: np.ndarray  # int64, -1 unknown
    raw: np.ndarray  # [docs, runs] float64, NaN where missing
    values: np.ndarray  # [docs, runs] normalized, the missing policy applied
    ranks: np.ndarray  # [docs, runs] int64, 0 where missing
    tiebreak: np.ndarray  # int64: smaller wins a tie (the docno, or a position by id)

    def order(self, fused: np.ndarray, k: int | None) -> np.ndarray:
        return np.lexsort((self.tiebreak, -fused))[:k]

    def hits(self, fused: np.ndarray, k: int | None) -> list[FusedHit]:
        out = []
        for i in self.order(fused, k).tolist():
            raw = tuple(None if math.isnan(v) else v for v in self.raw[i].tolist())
            ranks = tuple(None if r == 0 else r for r in self.ranks[i].tolist())
            out.append(FusedHit(self.doc_ids[i], float(fused[i]), int(self.docnos[i]), raw, ranks))
        return out


def _run_arrays(hits: Sequence[Hit], depth: int | None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(doc_ids, scores, docnos)`` of a run's top ``depth`` hits, best first."""
    if not hits:
        return [], np.zeros(0), np.zeros(0, np.int64)
    if isinstance(hits[0], Hit | FusedHit):
        # Hit and FusedHit are tuples that start (doc_id, score, docno): unzip at C speed.
        columns = list(zip(*hits))
        ids, scores, numbers = list(columns[0]), columns[1], columns[2]
    else:
        ids = [h.doc_id for h in hits]
        scores = [h.score for h in hits]
        numbers = [getattr(h, "docno", -1) for h in hits]
    score_array = np.array(scores, np.float64)
    docnos = np.array([-1 if n is None else n for n in numbers], np.int64)
    if len(score_array) > 1 and np.any(score_array[1:] > score_array[:-1]):
        # Not best first (a hand-made list): order it, keeping the given order among ties.
        order = np.argsort(-score_array, kind="stable")
        ids = [ids[i] for i in order.tolist()]
        score_array, docnos = score_array[order], docnos[order]
    return ids[:depth], score_array[:depth], docnos[:depth]


def _align(
    hit_lists: Sequence[Sequence[Hit]],
    normalization: Normalization,
    missing: MissingPolicy,
    depth: int | None,
    tie_keys: np.ndarray | None = None,
) -> _Aligned:
    runs = [_run_arrays(hits, depth) for hits in hit_lists]
    # Every distinct document once, in order of first appearance (dict keeps insertion order).
    doc_ids = list(dict.fromkeys(itertools.chain.from_iterable(ids for ids, _, _ in runs)))
    position = dict(zip(doc_ids, range(len(doc_ids))))
    count = len(doc_ids)
    raw = np.full((count, len(runs)), np.nan)
    values = np.zeros((count, len(runs)))
    ranks = np.zeros((count, len(runs)), np.int64)
    docnos = np.full(count, -1, np.int64)
    # Reversed, so the first run that knows a document's number has the last word.
    for r in reversed(range(len(runs))):
        ids, scores, numbers = runs[r]
        if not ids:
            continue
        if len(set(ids)) != len(ids):
            raise ValueError(f"run {r} lists the same document twice for one query")
        rows = np.fromiter(map(position.__getitem__, ids), np.int64, len(ids))
        normalized = normalize_scores(scores, normalization)
        if missing == "min":
            values[:, r] = normalized.min()
        values[rows, r] = normalized
        raw[rows, r] = scores
        ranks[rows, r] = np.arange(1, len(ids) + 1)
        known = numbers >= 0
        docnos[rows[known]] = numbers[known]
    key = np.where(docnos >= 0, _tie_key(docnos, tie_keys), _NO_DOCNO)
    if np.all(docnos >= 0):
        tiebreak = key
    else:
        by_key = np.lexsort((np.array(doc_ids, dtype=str), key))
        tiebreak = np.empty(count, np.int64)
        tiebreak[by_key] = np.arange(count)
    return _Aligned(doc_ids, docnos, raw, values, ranks, tiebreak)


def _tie_key(docnos: np.ndarray, tie_keys: np.ndarray | None) -> np.ndarray:
    """Each document number's tie key (the number itself without ``tie_keys``; -1 stays)."""
    if tie_keys is None:
        return docnos
    keys = np.asarray(tie_keys)
    if keys.ndim != 1 or keys.dtype.kind not in "iu":
        raise ValueError(f"tie_keys must be a 1-d integer array, got {keys.dtype} {keys.shape}")
    if len(docnos) and int(docnos.max()) >= len(keys):
        raise ValueError(
            f"document number {int(docnos.max())} has no tie key (tie_keys holds {len(keys)}); "
            "give one key per document number of the first run's index"
        )
    known = docnos >= 0  # only known numbers are looked up (tie_keys may be empty)
    out = np.full(len(docnos), -1, np.int64)
    out[known] = keys[docnos[known]]
    return out


# -- fusion methods -------------------------------------------------------------------------------
# Each score function takes one query's aligned runs, one weight per run and RRF's constant k,
# and returns the fused score of every aligned document.


def _convex_scores(aligned: _Aligned, weights: np.ndarray, rrf_k: int) -> np.ndarray:
    """Σ_i w_i · norm_i(s_i(d)) (the normalization and missing policy already applied)."""
    return aligned.values @ weights


def _rrf_scores(aligned: _Aligned, weights: np.ndarray, rrf_k: int) -> np.ndarray:
    """Σ_i w_i / (rrf_k + rank_i(d)) over the runs that returned d."""
    present = aligned.ranks > 0
    reciprocal = np.where(present, 1.0 / (rrf_k + np.maximum(aligned.ranks, 1)), 0.0)
    return reciprocal @ weights


class FusionRule(NamedTuple):
    """One fusion method of :data:`FUSION_METHODS`.

    Attributes:
        scores: ``(aligned runs, weights, rrf_k) -> fused scores`` of one query.
        convex: whether the weights must sum to 1 (default weights 1/n; otherwise 1 each).
        options: the :class:`Fusion` fields the method reads besides weights and depth
            (validated only for methods that read them).
        label: :meth:`Fusion.describe`'s line, formatted with the Fusion's fields (``weights``
            pre-formatted).
    """

    scores: Callable[[_Aligned, np.ndarray, int], np.ndarray]
    convex: bool
    options: tuple[str, ...]
    label: str


#: Every fusion method by name (the names of :data:`FusionMethod`).
FUSION_METHODS: dict[str, FusionRule] = {
    "convex": FusionRule(
        _convex_scores,
        convex=True,
        options=("normalization", "missing"),
        label="convex {weights}, {normalization}, missing={missing}, depth {depth}",
    ),
    "rrf": FusionRule(
        _rrf_scores, convex=False, options=("rrf_k",), label="RRF k={rrf_k}, depth {depth}"
    ),
}


# -- fusion ---------------------------------------------------------------------------------------


def fuse_hits(
    hit_lists: Sequence[Sequence[Hit]],
    *,
    method: FusionMethod = "convex",
    weights: Sequence[float] | None = None,
    normalization: Normalization = "min-max",
    missing: MissingPolicy = "min",
    depth: int | None = 1000,
    rrf_k: int = 60,
    k: int | None = 1000,
    tie_keys: np.ndarray | None = None,
) -> list[FusedHit]:
    """Fuse one query's hit lists (one list per run, best first) into ``k`` fused hits.

    Args:
        hit_lists: each run's hits for the query (Hit or anything with doc_id, score, docno).
        method: a name of :data:`FUSION_METHODS`: ``"convex"`` (normalize, then weighted sum)
            or ``"rrf"``.
        weights: convex: one per run, >= 0, summing to 1 (default equal); RRF: multipliers
            of each run's 1/(k + rank) (default 1).
        normalization: convex only: ``"min-max"``, ``"z-score"``, ``"midpoint"``, ``"none"``.
        missing: convex only: ``"min"`` or ``"zero"`` for a document a run did not return.
        depth: hits of each run considered (None: all).
        rrf_k: RRF's constant k (60 in Cormack et al.).
        k: fused hits returned (None: all).
        tie_keys: None, or the tie key of every document number (an integer array; a live
            index's ordinals): equal fused scores are then ordered by ``tie_keys[docno]``
            ascending instead of by document number.
    """
    _check_choice("method", method, FUSION_METHODS)
    _check_choice("normalization", normalization, NORMALIZATIONS)
    _check_choice("missing", missing, get_args(MissingPolicy))
    _check_positive_int("depth", depth, allow_none=True)
    _check_positive_int("k", k, allow_none=True)
    rule = FUSION_METHODS[method]
    if "rrf_k" in rule.options:
        _check_positive_int("rrf_k", rrf_k)
    if not hit_lists:
        raise ValueError("nothing to fuse: give at least one run")
    w = _check_weights(weights, len(hit_lists), convex=rule.convex)
    aligned = _align(hit_lists, normalization, missing, depth, tie_keys)
    return aligned.hits(rule.scores(aligned, w, rrf_k), k)


def _fuse_runs(runs: Sequence[RunLike], name: str, k: int | None, **options) -> Run:
    if not runs:
        raise ValueError("nothing to fuse: give at least one run")
    converted = [_as_run(run, i) for i, run in enumerate(runs)]
    query_ids = list(dict.fromkeys(q for run in converted for q in run.results))
    fused = Run(name=name)
    for qid in query_ids:
        fused.results[qid] = fuse_hits(
            [run.results.get(qid, []) for run in converted], k=k, **options
        )
    return fused


def convex_combination(
    runs: Sequence[RunLike],
    weights: Sequence[float] | None = None,
    *,
    normalization: Normalization = "min-max",
    missing: MissingPolicy = "min",
    depth: int | None = 1000,
    k: int | None = 1000,
    name: str = "convex",
) -> Run:
    """Normalize each run's scores per query and combine them with weights summing to 1.

    With two runs, ``weights=(alpha, 1 - alpha)``. See the module docstring for the formulas.
    Queries present in any run are fused (a run without a query contributes nothing to it).

    Example:
        >>> sparse = {"q1": {"a": 12.0, "b": 8.0, "c": 4.0}}
        >>> dense = {"q1": {"b": 0.9, "c": 0.7, "d": 0.5}}
        >>> fused = convex_combination([sparse, dense], weights=(0.5, 0.5))
        >>> [(hit.doc_id, round(hit.score, 3)) for hit in fused.results["q1"]]
        [('b', 0.75), ('a', 0.5), ('c', 0.25), ('d', 0.0)]
    """
    return _fuse_runs(
        runs,
        name,
        k,
        method="convex",
        weights=weights,
        normalization=normalization,
        missing=missing,
        depth=depth,
    )


def reciprocal_rank_fusion(
    runs: Sequence[RunLike],
    *,
    rrf_k: int = 60,
    weights: Sequence[float] | None = None,
    depth: int | None = 1000,
    k: int | None = 1000,
    name: str = "rrf",
) -> Run:
    """Reciprocal Rank Fusion (Cormack et al. 2009): Σ_i w_i / (rrf_k + rank_i), ranks 1-based.

    Example:
        >>> sparse = {"q1": {"a": 12.0, "b": 8.0}}
        >>> dense = {"q1": {"b": 0.9, "c": 0.7}}
        >>> fused = reciprocal_rank_fusion([sparse, dense], rrf_k=60)
        >>> [(hit.doc_id, round(hit.score, 4)) for hit in fused.results["q1"]]
        [('b', 0.0325), ('a', 0.0164), ('c', 0.0161)]
    """
    return _fuse_runs(runs, name, k, method="rrf", weights=weights, rrf_k=rrf_k, depth=depth)


@dataclass(frozen=True)
class Fusion:
    """A fusion rule, as one value (what :class:`~sparse_ir.hybrid.HybridSearcher` takes).

    Attributes:
        method: a name of :data:`FUSION_METHODS` (``"convex"`` or ``"rrf"``).
        weights: one per run (see :func:`fuse_hits`); None for equal weights.
        normalization: convex only.
        missing: convex only.
        depth: hits of each run considered.
        rrf_k: RRF's k.

    Example:
        >>> sparse = {"q1": {"a": 12.0, "b": 8.0, "c": 4.0}}
        >>> dense = {"q1": {"b": 0.9, "c": 0.7, "d": 0.5}}
        >>> fusion = Fusion.convex(alpha=0.5)
        >>> fusion.describe()
        'convex (0.50, 0.50), min-max, missing=min, depth 1000'
        >>> [hit.doc_id for hit in fusion.fuse([sparse, dense]).results["q1"]]
        ['b', 'a', 'c', 'd']
        >>> Fusion.rrf().fuse([sparse, dense], k=2).results["q1"][0].doc_id
        'b'
    """

    method: FusionMethod = "convex"
    weights: tuple[float, ...] | None = None
    normalization: Normalization = "min-max"
    missing: MissingPolicy = "min"
    depth: int = 1000
    rrf_k: int = 60

    def __post_init__(self):
        _check_choice("method", self.method, FUSION_METHODS)
        _check_choice("normalization", self.normalization, NORMALIZATIONS)
        _check_choice("missing", self.missing, get_args(MissingPolicy))
        _check_positive_int("depth", self.depth)
        _check_positive_int("rrf_k", self.rrf_k)
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
            _check_weights(
                self.weights, len(self.weights), convex=FUSION_METHODS[self.method].convex
            )

    @classmethod
    def convex(cls, alpha: float = 0.5, **options) -> Fusion:
        """Two runs (sparse first, dense second): ``alpha · sparse + (1 − alpha) · dense``."""
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be within [0, 1], got {alpha!r}")
        return cls(method="convex", weights=(float(alpha), 1.0 - float(alpha)), **options)

    @classmethod
    def rrf(cls, rrf_k: int = 60, **options) -> Fusion:
        """Reciprocal Rank Fusion with constant ``rrf_k``."""
        return cls(method="rrf", rrf_k=rrf_k, **options)

    def fuse_hits(
        self,
        hit_lists: Sequence[Sequence[Hit]],
        k: int | None = 1000,
        *,
        tie_keys: np.ndarray | None = None,
    ) -> list[FusedHit]:
        """Fuse one query's hit lists (see :func:`fuse_hits`, also for ``tie_keys``)."""
        return fuse_hits(
            hit_lists,
            method=self.method,
            weights=self.weights,
            normalization=self.normalization,
            missing=self.missing,
            depth=self.depth,
            rrf_k=self.rrf_k,
            k=k,
            tie_keys=tie_keys,
        )

    def fuse(
        self,
        runs: Sequence[RunLike],
        k: int | None = 1000,
        name: str | None = None,
        *,
        tie_keys: np.ndarray | None = None,
    ) -> Run:
        """Fuse whole runs (``tie_keys``: see :func:`fuse_hits`)."""
        return _fuse_runs(
            runs,
            name or self.method,
            k,
            method=self.method,
            weights=self.weights,
            normalization=self.normalization,
            missing=self.missing,
            depth=self.depth,
            rrf_k=self.rrf_k,
            tie_keys=tie_keys,
        )

    def describe(self) -> str:
        """One line for tables and logs (the method's :attr:`FusionRule.label`)."""
        weights = (
            "equal"
            if self.weights is None
            else "(" + ", ".join(f"{w:.2f}" for w in self.weights) + ")"
        )
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return FUSION_METHODS[self.method].label.format(**{**fields, "weights": weights})


# -- tuning ---------------------------------------------------------------------------------------


class TuneResult(NamedTuple):
    """The outcome of :func:`tune_weights`.

    Attributes:
        weights: the best weights found (one per run).
        score: the metric they reach on the tuning queries.
        table: every ``(weights, score)`` tried, in grid order.
    """

    weights: tuple[float, ...]
    score: float
    table: list[tuple[tuple[float, ...], float]]


def _simplex_grid(runs: int, step: float) -> list[tuple[float, ...]]:
    parts = round(1.0 / step)
    if parts <= 0 or abs(parts * step - 1.0) > 1e-9:
        raise ValueError(f"step must divide 1 (0.1, 0.05, 0.01...), got {step!r}")
    grid = []
    for cuts in itertools.combinations_with_replacement(range(parts + 1), runs - 1):
        bounds = (0, *cuts, parts)
        grid.append(tuple((bounds[i + 1] - bounds[i]) / parts for i in range(runs)))
    return sorted(set(grid), reverse=True)


def tune_weights(
    runs: Sequence[RunLike],
    qrels: Mapping[str, Mapping[str, int]],
    metric: str = "nDCG@10",
    *,
    step: float = 0.05,
    normalization: Normalization = "min-max",
    missing: MissingPolicy = "min",
    depth: int | None = 1000,
    k: int = 1000,
) -> TuneResult:
    """Pick convex weights by grid search on labelled queries (a train split, never the test).

    Every weight vector on a grid of the simplex with spacing ``step`` is tried (for two runs:
    alpha = 0, 0.05, ..., 1); the metric is computed with :func:`sparse_ir.eval.evaluate`
    (ir_measures) over the judged queries. Ties go to the weights closest to equal weights.

    Args:
        runs: the component runs over the tuning queries.
        qrels: relevance judgments of those queries.
        metric: any measure name ``evaluate`` accepts (``"nDCG@10"``, ``"R@100"``...).
        step: grid spacing; must divide 1.
        normalization, missing, depth: as in :func:`convex_combination`.
        k: fused hits kept per query when scoring.
    """
    from sparse_ir.eval import evaluate

    _check_choice("normalization", normalization, NORMALIZATIONS)
    _check_choice("missing", missing, get_args(MissingPolicy))
    _check_positive_int("depth", depth, allow_none=True)
    _check_positive_int("k", k)
    if not runs:
        raise ValueError("nothing to tune: give at least one run")
    converted = [_as_run(run, i) for i, run in enumerate(runs)]
    judged = [q for q in qrels if any(converted_run.results.get(q) for converted_run in converted)]
    if not judged:
        raise ValueError(
            "no judged query has hits in the runs; tune on the runs of the "
            "split whose qrels you pass"
        )
    # Align every query once; each grid point is then one matrix-vector product per query.
    aligned = {
        q: _align([run.results.get(q, []) for run in converted], normalization, missing, depth)
        for q in judged
    }
    table = []
    for weights in _simplex_grid(len(converted), step):
        w = np.asarray(weights)
        scores = {}
        for qid, item in aligned.items():
            fused = _convex_scores(item, w, 0)
            order = item.order(fused, k)
            scores[qid] = {item.doc_ids[i]: float(fused[i]) for i in order.tolist()}
        value = evaluate(scores, dict(qrels), [metric])[metric]
        table.append((weights, value))
    equal = np.full(len(converted), 1.0 / len(converted))
    best = max(table, key=lambda row: (row[1], -float(np.abs(np.asarray(row[0]) - equal).sum())))
    return TuneResult(best[0], best[1], table)
