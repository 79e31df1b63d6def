"""The training loop: SPLADE (or inference-free SPLADE) with a ranking loss and FLOPS.

One optimizer step = ``gradient_accumulation`` micro-batches of ``batch_size`` queries, each
with one positive and ``negatives`` hard negatives; the loss is :class:`SpladeLoss`; AdamW with
linear warm-up and linear decay to 0 at ``max_steps``. Every ``eval_every`` steps the model is
measured on the validation queries (:func:`~sparse_ir.training.validation.measure`: nDCG@10,
average terms per document and per query, FLOPS) and the best checkpoint so far kept in
``OUTPUT/best``. Checkpoints (:mod:`~sparse_ir.training.checkpoint`) load with
``SpladeEncoder.from_pretrained``; ``resume=True`` continues from the latest one and, with the
same configuration, reaches the same weights as an uninterrupted run. Ctrl-C finishes the
current step, writes a checkpoint and returns (a second Ctrl-C aborts at once).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, get_args

import torch

from sparse_ir.encoders.options import Precision
from sparse_ir.training.checkpoint import (
    latest_checkpoint,
    load_training_state,
    model_weights_file,
    optimizer_state_from_tensors,
    save_checkpoint,
    state_directory,
)
from sparse_ir.training.data import BatchSampler, TrainingExample, ValidationSet
from sparse_ir.training.losses import (
    RANKING_LOSSES,
    REGULARIZERS,
    RankingLoss,
    Regularizer,
    SpladeLoss,
    idf_penalty,
)
from sparse_ir.training.options import Implementation, Mode, TrainingPrecision
from sparse_ir.training.representation import splade_weights
from sparse_ir.training.schedules import linear_warmup_decay

__all__ = ["CONFIG_FORMAT", "Mode", "Trainer", "TrainingConfig", "TrainingResult"]

logger = logging.getLogger(__name__)

CONFIG_FORMAT = 1
#: Settings that may differ between a checkpoint and the run resuming from it.
RESUMABLE_CHANGES = frozenset(
    {
        "max_minutes",
        "eval_every",
        "save_every",
        "keep_checkpoints",
        "log_every",
        "output_dir",
        "eval_at_start",
    }
)


@dataclass
class TrainingConfig:
    """Every setting of a training run; saved with each checkpoint as ``training_config.json``.

    Model and mode:
        model: starting point (bundled name, directory, hub id or a previous checkpoint).
        mode: ``"siamese"`` (queries and documents through the model) or ``"inference-free"``
            (documents only; queries are IDF-weighted tokens, :mod:`.inference_free`).
    Loss (see :class:`~sparse_ir.training.losses.SpladeLoss`):
        ranking_loss (a name of :data:`~sparse_ir.training.losses.RANKING_LOSSES`),
        temperature; lambda_q (λ_q), lambda_d (λ_d), lambda_warmup_steps (T);
        query_regularizer, document_regularizer (names of
        :data:`~sparse_ir.training.losses.REGULARIZERS`: ``flops``, ``l1``, ``idf-flops``...).
    Optimisation:
        learning_rate, weight_decay, warmup_steps (linear LR warm-up), max_steps (optimizer
        steps; the LR reaches 0 there), batch_size (queries per micro-batch),
        gradient_accumulation, max_grad_norm (0 = no clipping), negatives (hard negatives per
        query), negative_depth (drawn among the first this many), seed.
    Encoding during training:
        query_max_length, document_max_length (tokens), implementation (``chunked`` or
        ``reference``), precision (``float32``; ``mixed``: bfloat16 tiles screen out the certain
        zeros, the rest is recomputed in float32 — same values and gradients, faster; ``auto``:
        mixed where bfloat16 is fast), vocab_chunk.
    Evaluation and checkpoints:
        eval_every (steps; 0 = only at the end), eval_at_start, eval_document_max_length,
        eval_precision, save_every (0 = only at the end and on interrupt), keep_checkpoints,
        log_every, max_minutes (wall-time budget including evaluations; None = none).
    """

    model: str = "splade-tiny"
    output_dir: str = "runs/train"
    mode: Mode = "siamese"
    ranking_loss: RankingLoss = "contrastive"
    temperature: float = 1.0
    lambda_q: float = 5e-4
    lambda_d: float = 3e-4
    lambda_warmup_steps: int = 0
    query_regularizer: Regularizer = "flops"
    document_regularizer: Regularizer = "flops"
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    warmup_steps: int = 0
    max_steps: int = 1000
    batch_size: int = 16
    gradient_accumulation: int = 1
    max_grad_norm: float = 1.0
    negatives: int = 1
    negative_depth: int | None = None
    seed: int = 0
    query_max_length: int = 64
    document_max_length: int = 128
    implementation: Implementation = "chunked"
    precision: TrainingPrecision = "auto"
    vocab_chunk: int = 2048
    eval_every: int = 0
    eval_at_start: bool = True
    eval_document_max_length: int = 256
    eval_precision: Precision = "auto"
    save_every: int = 0
    keep_checkpoints: int = 2
    log_every: int = 10
    max_minutes: float | None = None
    data: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        choices = {
            "mode": get_args(Mode),
            "ranking_loss": tuple(RANKING_LOSSES),
            "query_regularizer": tuple(REGULARIZERS),
            "document_regularizer": tuple(REGULARIZERS),
            "implementation": get_args(Implementation),
            "precision": get_args(TrainingPrecision),
            "eval_precision": get_args(Precision),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in (
            "max_steps",
            "batch_size",
            "gradient_accumulation",
            "query_max_length",
            "document_max_length",
            "vocab_chunk",
            "eval_document_max_length",
            "keep_checkpoints",
            "log_every",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in (
            "warmup_steps",
            "lambda_warmup_steps",
            "negatives",
            "eval_every",
            "save_every",
            "seed",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.warmup_steps > self.max_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) exceeds max_steps ({self.max_steps})"
            )
        for name in ("learning_rate", "temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("lambda_q", "lambda_d", "weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes!r}")
        if self.negative_depth is not None and self.negative_depth < 1:
            raise ValueError(f"negative_depth must be >= 1, got {self.negative_depth!r}")

    def to_dict(self) -> dict:
        """JSON-able settings, with the format version."""
        return {"format": CONFIG_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> TrainingConfig:
        """Read :meth:`to_dict`'s output (unknown keys are an error, naming them)."""
        data = dict(data)
        version = data.pop("format", CONFIG_FORMAT)
        if version != CONFIG_FORMAT:
            raise ValueError(
                f"training config format {version!r}; this version reads {CONFIG_FORMAT}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}")
        return cls(**data)


class TrainingResult(NamedTuple):
    """What :meth:`Trainer.train` returns.

    Attributes:
        steps: optimizer steps done (in total, including before a resume).
        stopped: ``"max_steps"``, ``"time"`` (``max_minutes`` reached) or ``"interrupt"``.
        last_checkpoint: the checkpoint written at the end.
        best_checkpoint: ``OUTPUT/best`` (best validation nDCG@10), or None without validation.
        history: evaluation records (dicts with ``step`` and the measurements).
        seconds: wall time of this call.
        steps_this_run: optimizer steps taken by this call.
        step_seconds: time spent in those steps (the step rate is their ratio).
        eval_seconds: time spent evaluating.
    """

    steps: int
    stopped: str
    last_checkpoint: Path
    best_checkpoint: Path | None
    history: list[dict]
    seconds: float
    steps_this_run: int = 0
    step_seconds: float = 0.0
    eval_seconds: float = 0.0


class Trainer:
    """Train a SPLADE model (see the module docstring).

    Args:
        config: the settings.
        examples: training examples (with mined hard negatives when ``config.negatives`` > 0).
        validation: held-out queries to evaluate on, or None.
        model, tokenizer: a loaded masked-LM model and its tokenizer (default: load
            ``config.model``).
        query_encoder: the inference-free query side (required in ``inference-free`` mode and
            with the ``idf-flops`` regularizer, whose per-term penalty comes from its IDF).
        show_progress: progress bar; None shows it on a terminal.
    """

    def __init__(
        self,
        config: TrainingConfig,
        examples: Sequence[TrainingExample],
        validation: ValidationSet | None = None,
        *,
        model=None,
        tokenizer=None,
        query_encoder=None,
        show_progress: bool | None = None,
    ):
        self.config = config
        self.examples = list(examples)
        self.validation = validation
        self.show_progress = show_progress
        if model is None or tokenizer is None:
            model, tokenizer = load_model(config.model)
        self.model = model
        self.tokenizer = tokenizer
        self.query_encoder = query_encoder
        inference_free = config.mode == "inference-free"
        uses_idf = any(
            REGULARIZERS[name].needs_idf_penalty
            for name in (config.query_regularizer, config.document_regularizer)
        )
        if (inference_free or uses_idf) and query_encoder is None:
            raise ValueError(
                "inference-free mode and the idf-flops regularizer need a "
                "query_encoder (an IdfQueryEncoder) for the IDF table"
            )
        rows = model.get_output_embeddings().weight.shape[0]
        if query_encoder is not None and len(query_encoder.idf) != rows:
            raise ValueError(
                f"the query encoder's IDF table has {len(query_encoder.idf)} "
                f"entries, the model's vocabulary {rows} rows; build it with "
                f"vocab_size={rows}"
            )
        penalty = idf_penalty(torch.from_numpy(query_encoder.idf)) if uses_idf else None
        self.loss = SpladeLoss(
            ranking=config.ranking_loss,
            lambda_q=config.lambda_q,
            lambda_d=config.lambda_d,
            warmup_steps=config.lambda_warmup_steps,
            query_regularizer=config.query_regularizer,
            document_regularizer=config.document_regularizer,
            temperature=config.temperature,
            idf_penalty=penalty,
        )
        if self.loss.needs_teacher:
            short = [
                e.query_id
                for e in self.examples
                if e.teacher_scores is None or len(e.negatives) < config.negatives
            ]
            if short:
                raise ValueError(
                    f"the {config.ranking_loss!r} loss needs teacher scores and "
                    f"at least {config.negatives} negatives in every example; "
                    f"{len(short)} lack them (e.g. query {short[0]})"
                )
        self.sampler = BatchSampler(
            self.examples,
            batch_size=config.batch_size,
            negatives=config.negatives,
            seed=config.seed,
            negative_depth=config.negative_depth,
        )
        self.output_dir = Path(config.output_dir)
        self.step = 0
        self.history: list[dict] = []
        self.best: dict | None = None
        self._interrupted = False
        from sparse_ir.encoders.screen import int8_supported
        from sparse_ir.encoders.splade import bf16_supported

        device = next(self.model.parameters()).device
        int8 = int8_supported(device)
        mixed = config.precision == "mixed" or (
            config.precision == "auto" and (int8 or bf16_supported(device))
        )
        self._compute_dtype = (torch.int8 if int8 else torch.bfloat16) if mixed else torch.float32
        torch.manual_seed(config.seed)
        self.optimizer = torch.optim.AdamW(self._parameter_groups(), lr=config.learning_rate)

    # -- setup ----------------------------------------------------------------------------------

    def _parameter_groups(self) -> list[dict]:
        """AdamW groups: no weight decay on biases and LayerNorm weights (BERT's recipe)."""
        decay, no_decay = [], []
        for parameter in self.model.parameters():
            if not parameter.requires_grad:
                continue
            (no_decay if parameter.ndim < 2 else decay).append(parameter)
        return [
            {"params": decay, "weight_decay": self.config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def _resume(self) -> bool:
        checkpoint = latest_checkpoint(self.output_dir)
        if checkpoint is None:
            return False
        saved = json.loads((state_directory(checkpoint) / "training_config.json").read_text())
        saved.pop("format", None)
        current = dataclasses.asdict(self.config)
        changed = sorted(
            k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k]
        )
        if changed:
            raise ValueError(
                f"cannot resume from {checkpoint}: its settings differ in "
                f"{changed} (e.g. {changed[0]}: {saved.get(changed[0])!r} there, "
                f"{current[changed[0]]!r} now); use a new output directory"
            )
        from safetensors.torch import load_file

        weights = load_file(model_weights_file(checkpoint))
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        # Tied weights (the vocabulary projection is the input embedding) are stored once:
        # a missing name is fine when its parameter was loaded under another name.
        parameters = dict(self.model.named_parameters(remove_duplicate=False))
        loaded = {id(parameters[name]) for name in weights if name in parameters}
        missing = [m for m in missing if id(parameters.get(m)) not in loaded]
        if missing or unexpected:
            raise ValueError(
                f"{checkpoint}: weights do not match the model (missing "
                f"{missing[:3]}, unexpected {unexpected[:3]})"
            )
        state, tensors = load_training_state(checkpoint)
        self.optimizer.load_state_dict(optimizer_state_from_tensors(tensors, state["optimizer"]))
        torch.set_rng_state(tensors["torch_rng_state"])
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        self.best = state.get("best")
        # OUTPUT/best may be newer than the checkpoint (an evaluation after it, then a crash):
        # keep the better of the two records so a worse model never replaces it.
        best_state = state_directory(self.output_dir / "best") / "trainer_state.json"
        if best_state.is_file():
            recorded = json.loads(best_state.read_text()).get("best")
            if recorded and (self.best is None or recorded["ndcg_at_10"] > self.best["ndcg_at_10"]):
                self.best = recorded
        logger.info("resumed from %s at step %d", checkpoint, self.step)
        return True

    # -- the loop -------------------------------------------------------------------------------

    def batch_loss(self, step: int, micro_step: int):
        """The :class:`~sparse_ir.training.losses.LossTerms` of one micro-batch."""
        config = self.config
        batch = self.sampler.batch(micro_step)
        documents = self._weights(batch.positives + batch.negatives, config.document_max_length)
        size = len(batch.queries)
        if config.mode == "inference-free":
            queries = self.query_encoder.query_tensor(batch.queries)
        else:
            queries = self._weights(batch.queries, config.query_max_length)
        teacher = None
        if self.loss.needs_teacher:
            teacher = torch.tensor(batch.teacher_scores, dtype=torch.float32)
        return self.loss(
            queries,
            documents[:size],
            documents[size:],
            step,
            teacher_scores=teacher,
            queries_trainable=config.mode != "inference-free",
        )

    def _weights(self, texts: list[str], max_length: int) -> torch.Tensor:
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        return splade_weights(
            self.model,
            encoded["input_ids"],
            encoded["attention_mask"],
            implementation=self.config.implementation,
            vocab_chunk=self.config.vocab_chunk,
            compute_dtype=self._compute_dtype,
        )

    def train(self, *, resume: bool = False) -> TrainingResult:
        """Run until ``max_steps``, the time budget, or Ctrl-C; returns a :class:`TrainingResult`.

        Args:
            resume: continue from the latest checkpoint in the output directory (if any).
        """
        from tqdm.auto import tqdm

        config = self.config
        started = time.perf_counter()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume()
        budget = None if config.max_minutes is None else 60 * config.max_minutes
        eval_seconds = total_eval = total_steps = 0.0
        first_step = self.step
        if self.validation is not None and config.eval_at_start and not self.history:
            eval_seconds = self._evaluate_and_keep()
            total_eval += eval_seconds
        stopped = "max_steps"
        step_seconds = 0.0
        progress = tqdm(
            total=config.max_steps,
            initial=self.step,
            desc="training",
            unit="step",
            disable=_disable(self.show_progress),
        )
        previous_handler = self._install_interrupt_handler()
        try:
            while self.step < config.max_steps:
                if self._interrupted:
                    stopped = "interrupt"
                    break
                elapsed = time.perf_counter() - started
                if budget is not None and elapsed + step_seconds + eval_seconds > budget:
                    stopped = "time"
                    break
                step_started = time.perf_counter()
                terms = self._optimizer_step()
                step_seconds = time.perf_counter() - step_started
                total_steps += step_seconds
                self.step += 1
                progress.update(1)
                progress.set_postfix_str(_postfix(terms))
                if self.step % config.log_every == 0 or self.step == 1:
                    self._log(
                        {
                            "kind": "train",
                            "step": self.step,
                            "seconds_per_step": round(step_seconds, 4),
                            **terms,
                        }
                    )
                if (
                    self.validation is not None
                    and config.eval_every
                    and self.step % config.eval_every == 0
                    and self.step < config.max_steps
                ):
                    eval_seconds = self._evaluate_and_keep()
                    total_eval += eval_seconds
                if config.save_every and self.step % config.save_every == 0:
                    self._save_numbered()
        finally:
            progress.close()
            self._restore_interrupt_handler(previous_handler)
        if (
            self.validation is not None
            and stopped != "interrupt"
            and (not self.history or self.history[-1]["step"] != self.step)
        ):
            total_eval += self._evaluate_and_keep()
        last = self._save_numbered()
        best = self.output_dir / "best" if self.best is not None else None
        if stopped == "interrupt":
            logger.warning("interrupted at step %d; checkpoint saved to %s", self.step, last)
        return TrainingResult(
            self.step,
            stopped,
            last,
            best,
            list(self.history),
            time.perf_counter() - started,
            self.step - first_step,
            total_steps,
            total_eval,
        )

    def _optimizer_step(self) -> dict[str, float]:
        config = self.config
        factor = linear_warmup_decay(self.step, config.warmup_steps, config.max_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = config.learning_rate * factor
        self.model.train()
        sums: dict[str, float] = {}
        for micro in range(config.gradient_accumulation):
            result = self.batch_loss(self.step, self.step * config.gradient_accumulation + micro)
            (result.total / config.gradient_accumulation).backward()
            for key, value in result.terms.items():
                sums[key] = sums.get(key, 0.0) + value / config.gradient_accumulation
        if not math.isfinite(sums["total"]):
            raise FloatingPointError(
                f"the loss became {sums['total']} at step {self.step}; lower the learning rate or λ"
            )
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        sums["lr"] = config.learning_rate * factor
        return sums

    # -- evaluation and checkpoints ---------------------------------------------------------------

    def evaluate(self):
        """Measure the current model on the validation set (a :class:`Measurement`)."""
        from sparse_ir.encoders.splade import SpladeEncoder
        from sparse_ir.training.validation import measure

        if self.validation is None:
            raise ValueError("no validation set was given to the trainer")
        config = self.config
        encoder = SpladeEncoder(
            self.model,
            self.tokenizer,
            precision=config.eval_precision,
            document_max_length=config.eval_document_max_length,
            query_max_length=config.query_max_length,
            name=str(self.output_dir),
        )
        try:
            query_encoder = self.query_encoder if config.mode == "inference-free" else encoder
            return measure(
                encoder,
                query_encoder,
                self.validation.corpus,
                self.validation.queries,
                self.validation.qrels,
                work_dir=self.output_dir,
                latency_repeats=1,
                show_progress=False,
            )
        finally:
            self.model.train()

    def _evaluate_and_keep(self) -> float:
        """Evaluate, record, keep ``best``; returns the seconds it took."""
        started = time.perf_counter()
        measurement = self.evaluate()
        record = {"kind": "eval", "step": self.step, **measurement.to_dict()}
        self.history.append(record)
        self._log(record)
        logger.info(
            "step %d: validation nDCG@10 %.4f, %.1f terms/doc, %.1f terms/query",
            self.step,
            measurement.ndcg_at_10,
            measurement.document_terms,
            measurement.query_terms,
        )
        if self.best is None or measurement.ndcg_at_10 > self.best["ndcg_at_10"]:
            self.best = record
            self._save(self.output_dir / "best")
        return time.perf_counter() - started

    def _state(self) -> dict:
        return {"step": self.step, "history": self.history, "best": self.best}

    def _save(self, directory: Path) -> Path:
        query_encoder = self.query_encoder if self.config.mode == "inference-free" else None
        return save_checkpoint(
            directory,
            model=self.model,
            tokenizer=self.tokenizer,
            config=self.config.to_dict(),
            state=self._state(),
            optimizer=self.optimizer,
            query_encoder=query_encoder,
        )

    def _save_numbered(self) -> Path:
        path = self._save(self.output_dir / f"checkpoint-{self.step}")
        numbered = sorted(
            (int(p.name.split("-")[1]), p)
            for p in self.output_dir.iterdir()
            if p.name.startswith("checkpoint-") and p.name[11:].isdigit()
        )
        for _, old in numbered[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return path

    def _log(self, record: dict) -> None:
        with open(self.output_dir / "history.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    # -- Ctrl-C ---------------------------------------------------------------------------------

    def _install_interrupt_handler(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._interrupted:
                raise KeyboardInterrupt
            self._interrupted = True
            logger.warning(
                "interrupt: finishing this step and saving a checkpoint "
                "(Ctrl-C again to abort without saving)"
            )

        return signal.signal(signal.SIGINT, handler)

    @staticmethod
    def _restore_interrupt_handler(previous) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def load_model(name_or_path: str | os.PathLike):
    """``(model, tokenizer)``: a masked-LM model in float32 and its fast tokenizer."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from sparse_ir.encoders.registry import quiet_transformers, resolve_model
    from sparse_ir.encoders.st_format import read_layout

    path = resolve_model(name_or_path)
    layout = read_layout(path)
    if layout is not None:  # a sentence-transformers model: its document-side transformer
        path = layout.document.directory
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
        model = AutoModelForMaskedLM.from_pretrained(path, use_safetensors=True)
    return model.float(), tokenizer


def _postfix(terms: dict[str, float]) -> str:
    return (
        f"loss {terms['total']:.3f} rank {terms['ranking']:.3f} "
        f"reg_q {terms['reg_q']:.2f} reg_d {terms['reg_d']:.2f} "
        f"λq {terms['lambda_q']:.1e} λd {terms['lambda_d']:.1e} lr {terms['lr']:.1e}"
    )


def _disable(show_progress: bool | None) -> bool | None:
    return None if show_progress is None else not show_progress
