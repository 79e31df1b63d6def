"""Search modes of an :class:`~sparse_ir.index.impact_index.ImpactIndex`, as values.

A mode is named by a string (``"exhaustive"``, ``"pruned"``, ``"approximate"``) or given as a
typed value that carries its settings:

* :class:`Exhaustive`: every posting of every query term is scored.
* :class:`Pruned`: the same hits as exhaustive search, scoring a fraction of the postings
  (:mod:`.pruned`; needs the index's search layout). Its settings change speed, never hits.
* :class:`Approximate`: the pruned kernel with its proof relaxed (:mod:`.approximate`):
  ``cut_ratio`` (ρ), ``bound_weight`` (β), ``term_share`` (σ) and ``max_verified`` (V) trade
  recall for speed; or, with ``layer_postings`` (P), the layer ranking: the query's best P
  postings rank the documents and the best V of them are scored exactly.

Example:
    >>> from sparse_ir.index.modes import Approximate, resolve_mode
    >>> resolve_mode("approximate", has_search_layout=True) == Approximate()
    True
    >>> resolve_mode(None, has_search_layout=False).name
    'exhaustive'
    >>> Approximate(cut_ratio=1.5).exact
    False
    >>> Approximate(cut_ratio=0)
    Traceback (most recent call last):
    ...
    ValueError: cut_ratio must be > 0 (ρ, the share of θ₀ left below the cuts), got 0
    >>> Approximate(term_share=0.8, max_verified=400).exact
    False
    >>> Approximate(layer_postings=700_000, max_verified=300).kernel_params().layer
    True

This module needs numpy only (the kernel settings class is imported when first asked for).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple, get_args

if TYPE_CHECKING:
    from sparse_ir.index.pruned import PrunedParams

__all__ = [
    "DEFAULT_BOUND_WEIGHT",
    "DEFAULT_CUT_RATIO",
    "DEFAULT_MAX_VERIFIED",
    "DEFAULT_TERM_SHARE",
    "LAYER_POSTINGS_LIMIT",
    "MAX_VERIFIED_LIMIT",
    "Approximate",
    "DenseModeName",
    "Exhaustive",
    "Pruned",
    "SearchMode",
    "SearchModeName",
    "SearchStats",
    "resolve_mode",
]

SearchModeName = Literal["exhaustive", "pruned", "approximate"]
#: Modes of a :class:`~sparse_ir.index.dense.DenseIndex`: every document scored, or the graph.
DenseModeName = Literal["exact", "hnsw"]

# Defaults of approximate mode, chosen on the 1M synthetic SPLADE benchmark (docs/performance.md):
# Recall@10 0.994 at 0.75× the exact mode's latency (β = 0.85 kept recall 1.0 but was no faster
# than exact search; β = 0.6 gave 0.979).
DEFAULT_CUT_RATIO = 0.75
DEFAULT_BOUND_WEIGHT = 0.7
# Query-term pruning and the verification budget are off by default (σ = 1, no budget): the
# settings of the approximate curve that use them are in docs/performance.md.
DEFAULT_TERM_SHARE = 1.0
DEFAULT_MAX_VERIFIED = None
#: The largest verification budget (a quarter of the kernel's candidate buffer).
MAX_VERIFIED_LIMIT = 16_384
#: The largest ``layer_postings`` (far above any query's postings at 1M documents).
LAYER_POSTINGS_LIMIT = 1 << 40
# The exact pruned kernel's settings (those of ``PrunedParams()``).
_ESTIMATE_POSTINGS = 100_000
_ESTIMATE_CANDIDATES = 128
_EXACT_CUT_RATIO = 0.5


@functools.lru_cache(maxsize=64)
def _pruned_params(
    estimate_postings: int,
    estimate_candidates: int,
    cut_ratio: float,
    bound_weight: float,
    term_share: float = 1.0,
    max_verified: int = 0,
    layer: bool = False,
) -> PrunedParams:
    """The kernel's settings object (made once per distinct setting: searches are hot)."""
    from sparse_ir.index.pruned import PrunedParams

    return PrunedParams(
        estimate_postings,
        estimate_candidates,
        cut_ratio,
        bound_weight,
        term_share,
        max_verified,
        layer=layer,
    )


def _check_estimates(mode) -> None:
    for label in ("estimate_postings", "estimate_candidates"):
        value = getattr(mode, label)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class Exhaustive:
    """Score every posting of every query term (works on every index)."""

    name: SearchModeName = field(default="exhaustive", init=False, repr=False)
    exact = True

    def kernel_params(self) -> None:
        """The pruned kernel's settings: None (the exhaustive kernels run)."""
        return None


@dataclass(frozen=True)
class Pruned:
    """The exact top-k while scoring a fraction of the postings (needs the search layout).

    Attributes:
        estimate_postings: postings scored by the estimate step (highest q_t × impact first).
        estimate_candidates: documents scored exactly by the estimate step.
        cut_ratio: ρ < 1, the bound on documents below every cut as a share of θ₀.

    None of them changes the hits, only the work done to find them (see :mod:`.pruned`).
    """

    estimate_postings: int = _ESTIMATE_POSTINGS
    estimate_candidates: int = _ESTIMATE_CANDIDATES
    cut_ratio: float = _EXACT_CUT_RATIO
    name: SearchModeName = field(default="pruned", init=False, repr=False)
    exact = True

    def __post_init__(self):
        _check_estimates(self)
        if not 0 < self.cut_ratio < 1:
            raise ValueError(
                f"cut_ratio of exact pruned search must be in (0, 1), got "
                f"{self.cut_ratio!r}; use Approximate for larger values"
            )

    def kernel_params(self) -> PrunedParams:
        """The pruned kernel's settings."""
        return _pruned_params(
            self.estimate_postings, self.estimate_candidates, float(self.cut_ratio), 1.0
        )


@dataclass(frozen=True)
class Approximate:
    """The pruned kernel with its proof relaxed: faster, at a measured recall.

    Attributes:
        cut_ratio: ρ > 0: the per-term cuts leave documents scoring up to ρ·θ₀ below them
            (ρ ≥ 1 gives up exactness; the main knob).
        bound_weight: β in [0, 1]: the share of the below-the-cuts bound credited to a
            document (1 = the proven bound; smaller verifies fewer documents).
        term_share: σ in (0, 1]: query-term pruning; only the heaviest query terms, covering
            this share of the query's reach (Σ q_t × the term's largest impact), have their
            postings walked; every term still counts in the scores (1 = every term walked).
        max_verified: V, a verification budget: at most the V candidates of the highest
            bounds are scored exactly (None = no budget; 1 to ``MAX_VERIFIED_LIMIT``).
        layer_postings: P, the layer ranking (:func:`.approximate.layer_search_one`; None =
            off): only the query's P best postings (highest q_t × impact over all its terms)
            are scored, the documents are ranked by that partial score and the best
            ``max_verified`` of them (required) are scored exactly with the whole query.
            ``cut_ratio``, ``bound_weight`` and the estimates are then not used, and
            ``term_share`` must stay 1.
        estimate_postings, estimate_candidates: as in :class:`Pruned`.

    With ρ < 1, β = 1, σ = 1, no budget and no layer ranking the search is exact
    (:attr:`exact`).
    """

    cut_ratio: float = DEFAULT_CUT_RATIO
    bound_weight: float = DEFAULT_BOUND_WEIGHT
    term_share: float = field(default=DEFAULT_TERM_SHARE, kw_only=True)
    max_verified: int | None = field(default=DEFAULT_MAX_VERIFIED, kw_only=True)
    layer_postings: int | None = field(default=None, kw_only=True)
    estimate_postings: int = field(default=_ESTIMATE_POSTINGS, kw_only=True)
    estimate_candidates: int = field(default=_ESTIMATE_CANDIDATES, kw_only=True)
    name: SearchModeName = field(default="approximate", init=False, repr=False)

    def __post_init__(self):
        for label in ("cut_ratio", "bound_weight", "term_share"):
            value = getattr(self, label)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{label} must be a number, got {value!r}")
        if not self.cut_ratio > 0:
            raise ValueError(
                f"cut_ratio must be > 0 (ρ, the share of θ₀ left below the cuts), "
                f"got {self.cut_ratio!r}"
            )
        if not 0 <= self.bound_weight <= 1:
            raise ValueError(
                f"bound_weight must be in [0, 1] (β, 1 = the proven bound), got "
                f"{self.bound_weight!r}"
            )
        if not 0 < self.term_share <= 1:
            raise ValueError(
                f"term_share must be in (0, 1] (σ, the share of the query's reach walked; "
                f"1 = every term), got {self.term_share!r}"
            )
        budget = self.max_verified
        if budget is not None and (
            isinstance(budget, bool)
            or not isinstance(budget, int)
            or not 1 <= budget <= MAX_VERIFIED_LIMIT
        ):
            raise ValueError(
                f"max_verified must be None (no budget) or an integer in "
                f"[1, {MAX_VERIFIED_LIMIT}], got {budget!r}"
            )
        _check_estimates(self)
        layer = self.layer_postings
        if layer is not None:
            if (
                isinstance(layer, bool)
                or not isinstance(layer, int)
                or not 1 <= layer <= LAYER_POSTINGS_LIMIT
            ):
                raise ValueError(
                    f"layer_postings must be None (off) or an integer in "
                    f"[1, {LAYER_POSTINGS_LIMIT}] (P, the postings scored), got {layer!r}"
                )
            if budget is None:
                raise ValueError(
                    "layer_postings needs max_verified (V, the best-ranked documents scored "
                    "exactly), e.g. Approximate(layer_postings=700_000, max_verified=300)"
                )
            if self.term_share < 1:
                raise ValueError(
                    f"term_share does not apply to the layer ranking (layer_postings), which "
                    f"takes the best postings of every query term; got {self.term_share!r}"
                )

    @property
    def exact(self) -> bool:
        """True when these settings keep the proof (ρ < 1, β = 1, σ = 1, no budget, no layer
        ranking)."""
        return (
            self.cut_ratio < 1
            and self.bound_weight >= 1
            and self.term_share >= 1
            and self.max_verified is None
            and self.layer_postings is None
        )

    def kernel_params(self) -> PrunedParams:
        """The pruned kernel's settings (the layer ranking's: P as ``estimate_postings``)."""
        if self.layer_postings is not None:
            return _pruned_params(
                int(self.layer_postings),
                self.estimate_candidates,
                float(self.cut_ratio),
                float(self.bound_weight),
                1.0,
                int(self.max_verified),
                True,
            )
        return _pruned_params(
            self.estimate_postings,
            self.estimate_candidates,
            float(self.cut_ratio),
            float(self.bound_weight),
            float(self.term_share),
            0 if self.max_verified is None else int(self.max_verified),
        )


SearchMode = Exhaustive | Pruned | Approximate
# Each name's default value (frozen, so shared).
_BY_NAME = {"exhaustive": Exhaustive(), "pruned": Pruned(), "approximate": Approximate()}
assert tuple(_BY_NAME) == get_args(SearchModeName)


def resolve_mode(mode: str | SearchMode | None, *, has_search_layout: bool) -> SearchMode:
    """The mode value of a name, a value, or None (the index's default).

    The default is :class:`Pruned` when the index has the search layout, else
    :class:`Exhaustive`.

    Raises:
        ValueError: an unknown name, or a pruned or approximate mode on an index without the
            search layout.
    """
    if mode is None:
        return _BY_NAME["pruned" if has_search_layout else "exhaustive"]
    if isinstance(mode, str):
        value = _BY_NAME.get(mode)
        if value is None:
            raise ValueError(
                f"mode must be one of {', '.join(_BY_NAME)} (or a mode value such "
                f"as Approximate(cut_ratio=...)); got {mode!r}"
            )
        mode = value
    elif not isinstance(mode, (Exhaustive, Pruned, Approximate)):
        raise ValueError(
            f"mode must be one of {', '.join(_BY_NAME)} or a mode value "
            f"(Exhaustive, Pruned, Approximate); got {mode!r}"
        )
    if mode.name != "exhaustive" and not has_search_layout:
        raise ValueError(
            f"this index has no search layout, so only mode='exhaustive' works "
            f"(asked for {mode.name!r}); rebuild it with search_layout=True (the "
            "default) for pruned and approximate search"
        )
    return mode


class SearchStats(NamedTuple):
    """What one search did (:meth:`ImpactIndex.search_with_stats`).

    The first fields are the pruned kernel's figures (``sparse_ir.index.pruned.STATS_FIELDS``);
    they are 0 where a kernel does not report them (the exhaustive kernels report
    ``postings`` only).

    Attributes:
        postings: postings scored.
        verified: documents scored exactly from the forward index.
        theta0: θ₀, the k-th exact score found by the estimate step (0: the pruned steps
            after the estimate did not run).
        cut_bound: R, what a document below every cut can score.
        candidates: candidates collected by the bound step.
        kth_score: the final k-th score (pruned kernel).
        early_verifications: verification passes run because the candidate buffer was full.
        mode: the mode that ran (``"exhaustive"``, ``"pruned"`` or ``"approximate"``).
        int64_accumulator: scores were summed in 64 bits (the query could overflow 32).
    """

    postings: int = 0
    verified: int = 0
    theta0: int = 0
    cut_bound: int = 0
    candidates: int = 0
    kth_score: int = 0
    early_verifications: int = 0
    mode: SearchModeName = "exhaustive"
    int64_accumulator: bool = False
