"""``sparse-ir train``: fine-tune a SPLADE model with a ranking loss and FLOPS regularization."""

from __future__ import annotations

import argparse
import sys
import typing

from sparse_ir.cli.common import positive_int
from sparse_ir.encoders.options import Precision
from sparse_ir.training.losses import REGULARIZERS, RankingLoss, Regularizer
from sparse_ir.training.options import Implementation, Mode, TrainingPrecision
from sparse_ir.training.prepare import NegativeSource


def _holdout(text: str) -> int | float:
    value = float(text)
    if value < 0 or (value >= 1 and not value.is_integer()):
        raise argparse.ArgumentTypeError(f"a count (integer) or a fraction < 1, got {text}")
    return value if value < 1 else int(value)


def register(subparsers) -> None:
    """Add the train subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a SPLADE model (ranking loss + FLOPS)",
        description="Train a SPLADE (or inference-free SPLADE) model on a BEIR split or a JSONL "
        "file of (query, positive, [negatives], [teacher_scores]). Checkpoints in "
        "OUTPUT/checkpoint-N and OUTPUT/best load with SpladeEncoder.from_pretrained "
        "and `sparse-ir index --model`.",
    )
    add_training_arguments(parser)
    parser.set_defaults(handler=run_train)


def add_training_arguments(parser: argparse.ArgumentParser, *, data_required: bool = True) -> None:
    """Every option of ``sparse-ir train`` (shared with scripts/train_splade.py)."""
    _add_data_arguments(parser, data_required=data_required)
    _add_model_arguments(parser)
    _add_loss_arguments(parser)
    _add_optimisation_arguments(parser)
    _add_evaluation_arguments(parser)


def _add_data_arguments(parser: argparse.ArgumentParser, *, data_required: bool) -> None:
    """The ``data`` argument group."""
    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group(required=data_required)
    source.add_argument("--data", help="BEIR dataset directory (corpus, queries, qrels/)")
    source.add_argument("--train-jsonl", help="JSONL of training examples")
    data.add_argument("--split", default="train", help="BEIR training split (default train)")
    data.add_argument(
        "--validation-split",
        default=None,
        help="BEIR split to validate on (default: hold out --holdout queries)",
    )
    data.add_argument(
        "--holdout",
        type=_holdout,
        default=0.1,
        help="training queries held out for validation: a count or a fraction "
        "(default 0.1; 0 = no validation)",
    )
    data.add_argument(
        "--validation-corpus-size",
        type=positive_int,
        default=None,
        help="validate on a sample of this many documents (judged and mined "
        "documents of the validation queries always included) (default: the "
        "whole corpus)",
    )
    data.add_argument(
        "--negatives-from",
        choices=typing.get_args(NegativeSource),
        default="bm25",
        help="hard-negative miner (index = the starting model's own ranking) "
        "(default: %(default)s)",
    )
    data.add_argument(
        "--negative-depth",
        type=positive_int,
        default=30,
        help="negatives mined per query (default: %(default)s)",
    )


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``model`` argument group."""
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model", default="splade-tiny", help="starting model (default: %(default)s)"
    )
    model.add_argument(
        "--mode",
        choices=typing.get_args(Mode),
        default="siamese",
        help="siamese: queries and documents through the model; inference-free: "
        "documents only, queries as IDF-weighted tokens (default: "
        "%(default)s)",
    )
    model.add_argument("--output", required=True, help="output directory")
    model.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in --output"
    )


def _add_loss_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``loss`` argument group."""
    loss = parser.add_argument_group("loss")
    loss.add_argument(
        "--loss",
        dest="ranking_loss",
        default="contrastive",
        choices=typing.get_args(RankingLoss),
        help="ranking loss (see sparse_ir.training.losses) (default: %(default)s)",
    )
    loss.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="τ of the softmax-based ranking losses (default: %(default)s)",
    )
    loss.add_argument(
        "--lambda-q",
        type=float,
        default=5e-4,
        help="λ_q (query regularizer) (default: %(default)s)",
    )
    loss.add_argument(
        "--lambda-d",
        type=float,
        default=3e-4,
        help="λ_d (document regularizer) (default: %(default)s)",
    )
    loss.add_argument(
        "--lambda-warmup",
        dest="lambda_warmup_steps",
        type=int,
        default=0,
        help="T of λ_t = λ·min(1, t/T)² (steps) (default: %(default)s)",
    )
    loss.add_argument(
        "--query-regularizer",
        default="flops",
        choices=typing.get_args(Regularizer),
        help="sparsity regularizer of the query vectors (default: %(default)s)",
    )
    loss.add_argument(
        "--document-regularizer",
        default="flops",
        choices=typing.get_args(Regularizer),
        help="sparsity regularizer of the document vectors (default: %(default)s)",
    )


def _add_optimisation_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``optimisation`` argument group."""
    optim = parser.add_argument_group("optimisation")
    optim.add_argument(
        "--lr",
        dest="learning_rate",
        type=float,
        default=2e-5,
        help="peak learning rate (default: %(default)s)",
    )
    optim.add_argument(
        "--weight-decay",
        type=float,
        default=0.01,
        help="optimizer weight decay (default: %(default)s)",
    )
    optim.add_argument(
        "--warmup-steps", type=int, default=0, help="linear LR warm-up steps (default: %(default)s)"
    )
    optim.add_argument(
        "--max-steps",
        type=positive_int,
        default=1000,
        help="optimizer steps (the learning rate reaches 0 there) (default: %(default)s)",
    )
    optim.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop (with a final evaluation and checkpoint) within this wall time "
        "(default: no limit)",
    )
    optim.add_argument(
        "--batch-size",
        type=positive_int,
        default=16,
        help="queries per batch (default: %(default)s)",
    )
    optim.add_argument(
        "--gradient-accumulation",
        type=positive_int,
        default=1,
        help="micro-batches per optimizer step (default: %(default)s)",
    )
    optim.add_argument(
        "--max-grad-norm",
        type=float,
        default=1.0,
        help="gradient clipping norm (0 = no clipping) (default: %(default)s)",
    )
    optim.add_argument(
        "--negatives", type=int, default=1, help="hard negatives per query (default: %(default)s)"
    )
    optim.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed (batches, negatives, holdout) (default: %(default)s)",
    )
    optim.add_argument(
        "--query-max-length",
        type=positive_int,
        default=64,
        help="query tokens (default: %(default)s)",
    )
    optim.add_argument(
        "--document-max-length",
        type=positive_int,
        default=128,
        help="document tokens during training (evaluation uses "
        "--eval-document-max-length) (default: %(default)s)",
    )
    optim.add_argument(
        "--precision",
        choices=typing.get_args(TrainingPrecision),
        default="auto",
        help="vocabulary projection while training: mixed = bfloat16 screen + "
        "float32 recompute (float32 results, faster); auto = mixed where "
        "bfloat16 is fast (default: %(default)s)",
    )
    optim.add_argument(
        "--implementation",
        choices=typing.get_args(Implementation),
        default="chunked",
        help="chunked = memory-light max-pooled projection; reference = full "
        "logits + autograd (default: %(default)s)",
    )


def _add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``evaluation and checkpoints`` argument group."""
    evaluation = parser.add_argument_group("evaluation and checkpoints")
    evaluation.add_argument(
        "--eval-every", type=int, default=0, help="steps (0 = at the end) (default: %(default)s)"
    )
    evaluation.add_argument("--no-eval-at-start", dest="eval_at_start", action="store_false")
    evaluation.add_argument(
        "--eval-document-max-length",
        type=positive_int,
        default=256,
        help="document tokens while evaluating (default: %(default)s)",
    )
    evaluation.add_argument(
        "--eval-precision",
        default="auto",
        choices=typing.get_args(Precision),
        help="encoder precision while evaluating (see sparse-ir encode) (default: %(default)s)",
    )
    evaluation.add_argument(
        "--save-every", type=int, default=0, help="steps (0 = at the end) (default: %(default)s)"
    )


def run_train(args: argparse.Namespace) -> int:
    result = train_from_args(args)
    print_curve(result.history)
    print(
        f"{result.steps} steps in {result.seconds / 60:.1f} min (stopped by "
        f"{result.stopped}); last checkpoint {result.last_checkpoint}"
        + (f"; best {result.best_checkpoint}" if result.best_checkpoint else "")
    )
    if result.stopped == "interrupt":
        print("sparse-ir train: interrupted; resume with --resume", file=sys.stderr)
        return 130
    return 0


def print_curve(history: list[dict]) -> None:
    """The validation measurements of a run, one line per evaluation."""
    evaluations = [h for h in history if h["kind"] == "eval"]
    if not evaluations:
        return
    print(
        f"{'step':>6} {'nDCG@10':>8} {'R@100':>7} {'terms/doc':>9} {'terms/query':>11} {'FLOPS':>7}"
    )
    for h in evaluations:
        print(
            f"{h['step']:>6} {h['ndcg_at_10']:>8.4f} {h['recall_at_100']:>7.4f} "
            f"{h['document_terms']:>9.1f} {h['query_terms']:>11.1f} {h['flops']:>7.2f}"
        )


def train_from_args(args: argparse.Namespace):
    """Prepare the data, build the trainer from the options and train; the TrainingResult."""
    from sparse_ir.training.trainer import Trainer, TrainingConfig, load_model

    config_fields = (
        "model",
        "mode",
        "ranking_loss",
        "temperature",
        "lambda_q",
        "lambda_d",
        "lambda_warmup_steps",
        "query_regularizer",
        "document_regularizer",
        "learning_rate",
        "weight_decay",
        "warmup_steps",
        "max_steps",
        "batch_size",
        "gradient_accumulation",
        "max_grad_norm",
        "negatives",
        "seed",
        "query_max_length",
        "document_max_length",
        "precision",
        "implementation",
        "eval_every",
        "eval_at_start",
        "eval_document_max_length",
        "eval_precision",
        "save_every",
        "max_minutes",
    )
    options = {name: getattr(args, name) for name in config_fields}
    model, tokenizer = load_model(args.model)
    prepared = _prepare(args, model, tokenizer)
    query_encoder = None
    needs_idf = any(
        REGULARIZERS[name].needs_idf_penalty
        for name in (args.query_regularizer, args.document_regularizer)
    )
    if args.mode == "inference-free" or needs_idf:
        from sparse_ir.training.inference_free import IdfQueryEncoder

        query_encoder = IdfQueryEncoder.from_corpus(
            tokenizer,
            (d.full_text for d in prepared.corpus),
            model.get_output_embeddings().weight.shape[0],
            query_max_length=args.query_max_length,
        )
    config = TrainingConfig(output_dir=args.output, data=prepared.description, **options)
    trainer = Trainer(
        config,
        prepared.examples,
        prepared.validation,
        model=model,
        tokenizer=tokenizer,
        query_encoder=query_encoder,
        show_progress=args.show_progress,
    )
    return trainer.train(resume=args.resume)


def _prepare(args: argparse.Namespace, model, tokenizer):
    from sparse_ir.training.prepare import prepare_beir, prepare_jsonl

    if args.train_jsonl:
        return prepare_jsonl(args.train_jsonl, holdout=args.holdout, seed=args.seed)
    document_encoder = query_encoder = None
    if args.negatives_from == "index":
        from sparse_ir.encoders.splade import SpladeEncoder

        document_encoder = SpladeEncoder(
            model,
            tokenizer,
            precision=args.eval_precision,
            document_max_length=args.eval_document_max_length,
            query_max_length=args.query_max_length,
        )
        query_encoder = document_encoder
        if args.mode == "inference-free":
            from sparse_ir.eval import load_beir
            from sparse_ir.training.inference_free import IdfQueryEncoder

            corpus = load_beir(args.data, args.split).corpus
            query_encoder = IdfQueryEncoder.from_corpus(
                tokenizer,
                (d.full_text for d in corpus),
                model.get_output_embeddings().weight.shape[0],
            )
    return prepare_beir(
        args.data,
        split=args.split,
        holdout=args.holdout,
        validation_split=args.validation_split,
        validation_corpus_size=args.validation_corpus_size,
        negatives_from=args.negatives_from,
        negative_depth=args.negative_depth,
        seed=args.seed,
        document_encoder=document_encoder,
        query_encoder=query_encoder,
        work_dir=args.output,
        show_progress=args.show_progress,
    )
