"""Training losses for sparse retrievers: ranking, distillation and sparsity regularizers.

Every loss is a pure function of score or weight tensors, named after its paper, so it can be
tested on hand-made tensors. :class:`SpladeLoss` composes one ranking loss with a regularizer on
each side (λ_q for queries, λ_d for documents, each with naver/splade's quadratic warm-up) and
returns every term by name so each can be logged.

Notation: q_i are query vectors, d_k document vectors (all [vocab]-dimensional, non-negative),
s(q, d) = q·d the score; w_ij the weight of term j in the i-th vector of a batch of N.

**Adding a loss.** Write the pure function, an adapter from a :class:`ScoredBatch`, one
:class:`RankingLossRule` in :data:`RANKING_LOSSES` and its name in :data:`RankingLoss`
(a regularizer: one :class:`RegularizerRule` in :data:`REGULARIZERS`, its name in
:data:`Regularizer`); :class:`SpladeLoss`, the trainer's validation and ``sparse-ir train``'s
choices follow. Torch is imported inside the functions, so the names and the registries can
be read (by the command line) without loading torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple

from sparse_ir.training.schedules import QuadraticWarmup

if TYPE_CHECKING:
    import torch

__all__ = [
    "RANKING_LOSSES",
    "REGULARIZERS",
    "LossTerms",
    "RankingLoss",
    "RankingLossRule",
    "Regularizer",
    "RegularizerRule",
    "ScoredBatch",
    "SpladeLoss",
    "dot_scores",
    "flops",
    "idf_flops",
    "idf_penalty",
    "in_batch_contrastive_loss",
    "kl_distillation_loss",
    "l1",
    "listwise_loss",
    "margin_mse_loss",
    "pairwise_loss",
]

#: The names of :data:`RANKING_LOSSES`.
RankingLoss = Literal["contrastive", "listwise", "pairwise", "margin-mse", "kl"]
#: The names of :data:`REGULARIZERS`.
Regularizer = Literal["flops", "l1", "idf-flops", "none"]


# -- ranking losses -------------------------------------------------------------------------------


def dot_scores(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """s(q_i, d_k) = q_i · d_k for every pair: [num_queries, num_documents]."""
    return queries @ documents.T


def in_batch_contrastive_loss(
    scores: torch.Tensor, targets: torch.Tensor | None = None, *, temperature: float = 1.0
) -> torch.Tensor:
    """InfoNCE with in-batch negatives (SPLADE v2, Formal et al. 2021; Karpukhin et al. 2020).

    L = -1/B Σ_i log( exp(s(q_i, d_i⁺)/τ) / Σ_k exp(s(q_i, d_k)/τ) )

    where k runs over every document of the batch: each query's positive, the other queries'
    positives and every hard negative.

    Args:
        scores: [B, N] scores of each query against all N documents of the batch.
        targets: [B] column of each query's positive (default: column i for query i, the layout
            "positives first, then negatives").
        temperature: τ; SPLADE uses 1 (its scores are unnormalised dot products).
    """
    import torch
    import torch.nn.functional as F

    _check_temperature(temperature)
    if targets is None:
        targets = torch.arange(scores.shape[0], device=scores.device)
    return F.cross_entropy(scores / temperature, targets)


def listwise_loss(
    positive_scores: torch.Tensor, negative_scores: torch.Tensor, *, temperature: float = 1.0
) -> torch.Tensor:
    """Softmax cross-entropy over each query's own list (q, d⁺, d⁻_1..d⁻_n), no in-batch documents.

    L = -1/B Σ_i log( exp(s_i⁺/τ) / (exp(s_i⁺/τ) + Σ_m exp(s_im⁻/τ)) )

    Args:
        positive_scores: [B] s(q_i, d_i⁺).
        negative_scores: [B, n] s(q_i, d_im⁻).
    """
    import torch
    import torch.nn.functional as F

    _check_temperature(temperature)
    logits = torch.cat([positive_scores[:, None], negative_scores], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def pairwise_loss(positive_scores: torch.Tensor, negative_scores: torch.Tensor) -> torch.Tensor:
    """RankNet's pairwise logistic loss (Burges et al. 2005) over every (d⁺, d⁻) pair.

    L = mean_{i,m} log(1 + exp(s_im⁻ - s_i⁺))

    Args:
        positive_scores: [B] s(q_i, d_i⁺).
        negative_scores: [B, n] s(q_i, d_im⁻).
    """
    import torch.nn.functional as F

    return F.softplus(negative_scores - positive_scores[:, None]).mean()


def margin_mse_loss(
    positive_scores: torch.Tensor,
    negative_scores: torch.Tensor,
    teacher_positive: torch.Tensor,
    teacher_negative: torch.Tensor,
) -> torch.Tensor:
    """MarginMSE distillation (Hofstätter et al. 2020).

    L = mean_{i,m} ((s_i⁺ - s_im⁻) - (t_i⁺ - t_im⁻))²

    where t are the teacher's scores. Shapes: positives [B], negatives [B, n].
    """
    import torch.nn.functional as F

    student = positive_scores[:, None] - negative_scores
    teacher = teacher_positive[:, None] - teacher_negative
    return F.mse_loss(student, teacher.to(student.dtype))


def kl_distillation_loss(
    student_scores: torch.Tensor, teacher_scores: torch.Tensor, *, temperature: float = 1.0
) -> torch.Tensor:
    """KL divergence from the teacher's to the student's distribution over each query's list
    (SPLADE++, Formal et al. 2022).

    L = 1/B Σ_i KL( softmax(t_i/τ) ‖ softmax(s_i/τ) )

    Args:
        student_scores: [B, 1 + n] the student's scores of (d⁺, d⁻_1..d⁻_n).
        teacher_scores: [B, 1 + n] the teacher's scores of the same documents.
    """
    import torch.nn.functional as F

    _check_temperature(temperature)
    log_student = F.log_softmax(student_scores / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_scores.to(student_scores.dtype) / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")


def _check_temperature(temperature: float) -> None:
    if not (
        isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


# -- sparsity regularizers ------------------------------------------------------------------------


def flops(weights: torch.Tensor) -> torch.Tensor:
    """FLOPS regularizer (Paria et al. 2020): ℓ_FLOPS = Σ_j ( 1/N Σ_i |w_ij| )².

    A smooth stand-in for the expected number of multiplications between two vectors: it is
    the squared mean activation of each term, so it pushes down terms active in many vectors
    of the batch much harder than rare ones. ``flops([[1, 0], [3, 0]])`` is (2)² + 0² = 4.

    Args:
        weights: [N, vocab] non-negative weights of a batch of queries or of documents.
    """
    return (weights.abs().mean(dim=0) ** 2).sum()


def l1(weights: torch.Tensor) -> torch.Tensor:
    """ℓ1 regularizer: 1/N Σ_i Σ_j |w_ij| (the mean ℓ1 norm of the vectors)."""
    return weights.abs().sum(dim=1).mean()


def idf_flops(weights: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """IDF-aware FLOPS (Geng et al. 2024, OpenSearch's inference-free sparse models).

    ℓ = Σ_j p_j ( 1/N Σ_i |w_ij| )²

    where p_j = :func:`idf_penalty` (idf_j) decreases with term j's IDF: frequent, uninformative
    terms are pushed down hard, rare informative terms cheaply kept.

    Args:
        weights: [N, vocab] document weights.
        penalty: [vocab] the per-term scale p_j.
    """
    if penalty.shape != weights.shape[1:]:
        raise ValueError(
            f"penalty has shape {tuple(penalty.shape)}, expected "
            f"({weights.shape[1]},): one value per vocabulary term"
        )
    return (penalty.to(weights.dtype) * weights.abs().mean(dim=0) ** 2).sum()


def idf_penalty(idf: torch.Tensor, *, floor: float = 0.1) -> torch.Tensor:
    """The per-term scale p_j of :func:`idf_flops`: p_j = max_k idf_k / max(idf_j, floor·max idf).

    Decreasing in idf_j; 1 for the rarest terms, up to 1/floor for the most common ones (the
    floor keeps terms with an IDF near 0, e.g. stop words, from an unbounded penalty).
    """
    import torch

    if floor <= 0 or floor > 1:
        raise ValueError(f"floor must be in (0, 1], got {floor!r}")
    top = idf.max()
    if not torch.isfinite(top) or top <= 0:
        raise ValueError("idf must contain a finite positive value")
    return top / torch.clamp(idf, min=float(top) * floor)


# -- the registries -------------------------------------------------------------------------------


class ScoredBatch(NamedTuple):
    """What a ranking loss of :data:`RANKING_LOSSES` receives: one batch, scored.

    Attributes:
        queries: [B, vocab] q_i.
        documents: [B + B·n, vocab] the positives, then the hard negatives.
        positive_scores: [B] s(q_i, d_i⁺).
        negative_scores: [B, n] s(q_i, d_im⁻) (n may be 0).
        teacher_scores: [B, 1 + n] the teacher's scores of (d⁺, d⁻_1..d⁻_n), or None.
        temperature: τ of the softmax-based losses.
    """

    queries: torch.Tensor
    documents: torch.Tensor
    positive_scores: torch.Tensor
    negative_scores: torch.Tensor
    teacher_scores: torch.Tensor | None
    temperature: float


class RankingLossRule(NamedTuple):
    """One ranking loss of :data:`RANKING_LOSSES`.

    Attributes:
        loss: ``ScoredBatch -> scalar loss``.
        needs_teacher: it needs teacher scores (distillation).
        needs_negatives: it needs at least one hard negative per query.
    """

    loss: Callable[[ScoredBatch], torch.Tensor]
    needs_teacher: bool = False
    needs_negatives: bool = True


class RegularizerRule(NamedTuple):
    """One sparsity regularizer of :data:`REGULARIZERS`.

    Attributes:
        regularizer: ``(weights [N, vocab], idf penalty [vocab] or None) -> scalar``.
        needs_idf_penalty: it needs the per-term penalty (see :func:`idf_penalty`).
    """

    regularizer: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    needs_idf_penalty: bool = False


def _contrastive(batch: ScoredBatch) -> torch.Tensor:
    return in_batch_contrastive_loss(
        dot_scores(batch.queries, batch.documents), temperature=batch.temperature
    )


def _listwise(batch: ScoredBatch) -> torch.Tensor:
    return listwise_loss(
        batch.positive_scores, batch.negative_scores, temperature=batch.temperature
    )


def _pairwise(batch: ScoredBatch) -> torch.Tensor:
    return pairwise_loss(batch.positive_scores, batch.negative_scores)


def _margin_mse(batch: ScoredBatch) -> torch.Tensor:
    return margin_mse_loss(
        batch.positive_scores,
        batch.negative_scores,
        batch.teacher_scores[:, 0],
        batch.teacher_scores[:, 1:],
    )


def _kl(batch: ScoredBatch) -> torch.Tensor:
    import torch

    student = torch.cat([batch.positive_scores[:, None], batch.negative_scores], dim=1)
    return kl_distillation_loss(student, batch.teacher_scores, temperature=batch.temperature)


#: Every ranking loss by name (the names of :data:`RankingLoss`).
RANKING_LOSSES: dict[str, RankingLossRule] = {
    "contrastive": RankingLossRule(_contrastive, needs_negatives=False),
    "listwise": RankingLossRule(_listwise),
    "pairwise": RankingLossRule(_pairwise),
    "margin-mse": RankingLossRule(_margin_mse, needs_teacher=True),
    "kl": RankingLossRule(_kl, needs_teacher=True),
}

#: Every sparsity regularizer by name (the names of :data:`Regularizer`).
REGULARIZERS: dict[str, RegularizerRule] = {
    "flops": RegularizerRule(lambda weights, penalty: flops(weights)),
    "l1": RegularizerRule(lambda weights, penalty: l1(weights)),
    "idf-flops": RegularizerRule(
        lambda weights, penalty: idf_flops(weights, penalty.to(weights.device)),
        needs_idf_penalty=True,
    ),
    "none": RegularizerRule(lambda weights, penalty: weights.new_zeros(())),
}


# -- the composite loss ---------------------------------------------------------------------------


class LossTerms(NamedTuple):
    """The result of :class:`SpladeLoss`: the total to back-propagate and every named term.

    ``terms`` holds floats (detached) for logging: ``ranking``, ``reg_q``, ``reg_d`` (the
    unweighted regularizers), ``lambda_q``, ``lambda_d`` (their weights at this step) and
    ``total``.
    """

    total: torch.Tensor
    terms: dict[str, float]


@dataclass
class SpladeLoss:
    """A ranking loss plus a sparsity regularizer on each side, the SPLADE objective.

    L = L_rank + λ_q(t) · ℓ(q) + λ_d(t) · ℓ(d),   λ(t) = λ · min(1, t/T)²

    Args:
        ranking: ``"contrastive"`` (in-batch negatives + hard negatives), ``"listwise"``,
            ``"pairwise"``, ``"margin-mse"`` or ``"kl"`` (the last two need teacher scores).
        lambda_q: λ_q, the final weight of the query regularizer (ignored when queries have no
            gradient, as in inference-free mode).
        lambda_d: λ_d, the final weight of the document regularizer.
        warmup_steps: T, steps of the quadratic warm-up of both λ (naver/splade: 50k).
        query_regularizer, document_regularizer: ``"flops"``, ``"l1"``, ``"idf-flops"`` or
            ``"none"``.
        temperature: τ of the softmax-based losses.
        idf_penalty: [vocab] p_j for ``"idf-flops"`` (see :func:`idf_penalty`).
    """

    ranking: RankingLoss = "contrastive"
    lambda_q: float = 5e-4
    lambda_d: float = 3e-4
    warmup_steps: int = 0
    query_regularizer: Regularizer = "flops"
    document_regularizer: Regularizer = "flops"
    temperature: float = 1.0
    idf_penalty: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.ranking, str) or self.ranking not in RANKING_LOSSES:
            raise ValueError(
                f"ranking loss must be one of {tuple(RANKING_LOSSES)}, got {self.ranking!r}"
            )
        for side in ("query_regularizer", "document_regularizer"):
            value = getattr(self, side)
            if not isinstance(value, str) or value not in REGULARIZERS:
                raise ValueError(f"{side} must be one of {tuple(REGULARIZERS)}, got {value!r}")
            if REGULARIZERS[value].needs_idf_penalty and self.idf_penalty is None:
                raise ValueError(f"{side}={value!r} needs idf_penalty (see idf_penalty())")
        for name in ("lambda_q", "lambda_d"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        _check_temperature(self.temperature)
        self.schedule_q = QuadraticWarmup(self.lambda_q, self.warmup_steps)
        self.schedule_d = QuadraticWarmup(self.lambda_d, self.warmup_steps)

    @property
    def needs_teacher(self) -> bool:
        """Whether the ranking loss needs teacher scores."""
        return RANKING_LOSSES[self.ranking].needs_teacher

    def regularize(self, kind: Regularizer, weights: torch.Tensor) -> torch.Tensor:
        """The regularizer ``kind`` of a batch of weights (0 for ``"none"``)."""
        return REGULARIZERS[kind].regularizer(weights, self.idf_penalty)

    def __call__(
        self,
        queries: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor,
        step: int,
        *,
        teacher_scores: torch.Tensor | None = None,
        queries_trainable: bool = True,
    ) -> LossTerms:
        """The loss of one batch.

        Args:
            queries: [B, vocab] query vectors q_i.
            positives: [B, vocab] d_i⁺, the positive of query i in row i.
            negatives: [B·n, vocab] hard negatives, rows i·n .. i·n + n - 1 belong to query i
                (n may be 0 for the contrastive loss).
            step: t, the optimizer step (for the λ warm-up).
            teacher_scores: [B, 1 + n] teacher scores of (d⁺, d⁻_1..d⁻_n), for distillation.
            queries_trainable: False when queries carry no gradient (inference-free mode):
                the query regularizer is then skipped.
        """
        import torch

        rule = RANKING_LOSSES[self.ranking]
        batch = queries.shape[0]
        if positives.shape[0] != batch or negatives.shape[0] % max(batch, 1):
            raise ValueError(
                f"{batch} queries, {positives.shape[0]} positives and "
                f"{negatives.shape[0]} negatives: expected B, B and B·n rows"
            )
        per_query = negatives.shape[0] // batch if batch else 0
        if rule.needs_negatives and per_query == 0:
            raise ValueError(
                f"the {self.ranking!r} loss needs at least one hard negative per query"
            )
        if rule.needs_teacher:
            if teacher_scores is None:
                raise ValueError(f"the {self.ranking!r} loss needs teacher scores")
            if teacher_scores.shape != (batch, 1 + per_query):
                raise ValueError(
                    f"teacher scores of shape {tuple(teacher_scores.shape)}, "
                    f"expected ({batch}, {1 + per_query})"
                )
        positive_scores = (queries * positives).sum(dim=1)
        negative_scores = (
            torch.einsum("bv,bnv->bn", queries, negatives.view(batch, per_query, queries.shape[1]))
            if per_query
            else queries.new_zeros(batch, 0)
        )
        documents = torch.cat([positives, negatives])
        ranking = rule.loss(
            ScoredBatch(
                queries,
                documents,
                positive_scores,
                negative_scores,
                teacher_scores,
                self.temperature,
            )
        )
        lambda_q = self.schedule_q(step) if queries_trainable else 0.0
        lambda_d = self.schedule_d(step)
        reg_q = (
            self.regularize(self.query_regularizer, queries)
            if queries_trainable
            else queries.new_zeros(())
        )
        reg_d = self.regularize(self.document_regularizer, documents)
        total = ranking + lambda_q * reg_q + lambda_d * reg_d
        terms = {
            "total": float(total.detach()),
            "ranking": float(ranking.detach()),
            "reg_q": float(reg_q.detach()),
            "reg_d": float(reg_d.detach()),
            "lambda_q": lambda_q,
            "lambda_d": lambda_d,
        }
        return LossTerms(total, terms)
