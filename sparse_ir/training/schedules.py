"""Schedules: the regularization weights' quadratic warm-up and the learning rate's shape.

naver/splade raises λ_q and λ_d from 0 as λ_t = λ · min(1, t/T)²: early steps learn to rank
before sparsity pressure builds up (a full λ from step 0 collapses a fresh model to empty
vectors). The learning rate follows the usual BERT shape: linear warm-up, then linear decay to 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["QuadraticWarmup", "linear_warmup_decay"]


@dataclass(frozen=True)
class QuadraticWarmup:
    """λ_t = λ · min(1, t/T)² (λ from step T on; T = 0 means λ at every step).

    Args:
        value: λ, the final weight.
        warmup_steps: T.
    """

    value: float
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.value) and self.value >= 0):
            raise ValueError(f"λ must be a finite number >= 0, got {self.value!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")

    def __call__(self, step: int) -> float:
        """λ_t at optimizer step ``step`` (t counts from 0)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if self.warmup_steps == 0:
            return self.value
        return self.value * min(1.0, step / self.warmup_steps) ** 2


def linear_warmup_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier: (t + 1)/W for t < W, then (S - t)/(S - W), reaching 0 at S.

    (t + 1 rather than t: the first step already learns something.)

    Args:
        step: t (from 0).
        warmup_steps: W (0: start at the full rate).
        total_steps: S, the planned number of optimizer steps.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}"
        )
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
