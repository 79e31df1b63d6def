"""Extension points in one place each: every registry matches its Literal, the command line's
choices are the library's Literals, and every option's help states its default."""

import argparse
import subprocess
import sys
from typing import get_args

import pytest

from sparse_ir.cli import build_parser
from sparse_ir.encoders.options import DensePooling, DensePrecision, Pooling, Precision, Runtime
from sparse_ir.fusion import (
    FUSION_METHODS,
    NORMALIZATIONS,
    Fusion,
    FusionMethod,
    MissingPolicy,
    Normalization,
    fuse_hits,
    normalize_scores,
)
from sparse_ir.index.modes import DenseModeName, SearchModeName
from sparse_ir.quantize import ImpactBits
from sparse_ir.training.losses import RANKING_LOSSES, REGULARIZERS, RankingLoss, Regularizer
from sparse_ir.training.options import Implementation, Mode, TrainingPrecision
from sparse_ir.training.prepare import NegativeSource

# -- registries and their Literals ----------------------------------------------------------------


@pytest.mark.parametrize(
    "registry, literal",
    [
        (FUSION_METHODS, FusionMethod),
        (NORMALIZATIONS, Normalization),
        (RANKING_LOSSES, RankingLoss),
        (REGULARIZERS, Regularizer),
    ],
    ids=["fusion-methods", "normalizations", "ranking-losses", "regularizers"],
)
def test_every_registered_name_is_in_its_literal_and_back(registry, literal):
    assert tuple(registry) == get_args(literal)


@pytest.mark.parametrize("method", get_args(FusionMethod))
def test_every_fusion_method_fuses_and_describes_itself(method):
    hits = [[("a", 3.0, 0), ("b", 1.0, 1)], [("b", 0.9, 1), ("c", 0.1, 2)]]
    from sparse_ir.results import Hit

    lists = [[Hit(*h) for h in run] for run in hits]
    fused = fuse_hits(lists, method=method)
    assert {h.doc_id for h in fused} == {"a", "b", "c"}
    fusion = Fusion(method=method)
    assert [h.doc_id for h in fusion.fuse_hits(lists)] == [h.doc_id for h in fused]
    assert fusion.describe()


@pytest.mark.parametrize("name", get_args(Normalization))
def test_every_normalization_is_callable_by_name(name):
    assert normalize_scores([2.0, 1.0], name).shape == (2,)
    assert normalize_scores([], name).shape == (0,)


def test_unknown_names_are_refused_with_the_registry_names():
    with pytest.raises(ValueError, match=r"method must be one of \('convex', 'rrf'\)"):
        Fusion(method="borda")
    with pytest.raises(ValueError, match="normalization must be one of"):
        normalize_scores([1.0], ["min-max"])


def test_every_loss_and_regularizer_is_reachable():
    torch = pytest.importorskip("torch")
    from sparse_ir.training.losses import SpladeLoss, idf_penalty

    queries = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])
    positives = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    negatives = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    teacher = torch.tensor([[3.0, 1.0], [2.0, 0.5]])
    penalty = idf_penalty(torch.tensor([1.0, 2.0, 3.0]))
    for ranking in get_args(RankingLoss):
        loss = SpladeLoss(ranking=ranking, idf_penalty=penalty)
        assert loss.needs_teacher == RANKING_LOSSES[ranking].needs_teacher
        result = loss(
            queries,
            positives,
            negatives,
            step=0,
            teacher_scores=teacher if loss.needs_teacher else None,
        )
        assert torch.isfinite(result.total)
    for name in get_args(Regularizer):
        loss = SpladeLoss(query_regularizer=name, document_regularizer=name, idf_penalty=penalty)
        assert loss.regularize(name, queries).shape == ()


def test_losses_and_parser_load_without_torch():
    code = (
        "import sys; import sparse_ir.training.losses, sparse_ir.training.options; "
        "from sparse_ir.cli import build_parser; build_parser(); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the command line -----------------------------------------------------------------------------

#: (subcommand, option) -> the Literal its choices come from.
CLI_CHOICES = {
    ("encode", "--precision"): Precision,
    ("encode", "--pooling"): Pooling,
    ("encode", "--runtime"): Runtime,
    ("index", "--runtime"): Runtime,
    ("inspect", "--runtime"): Runtime,
    ("inspect", "--precision"): Precision,
    ("inspect", "--pooling"): Pooling,
    ("index", "--precision"): Precision,
    ("index", "--pooling"): Pooling,
    ("index", "--bits"): ImpactBits,
    ("demo", "--precision"): Precision,
    ("dense-index", "--precision"): DensePrecision,
    ("dense-index", "--pooling"): DensePooling,
    ("dense-search", "--mode"): DenseModeName,
    ("dense-search", "--method"): DenseModeName,
    ("hybrid-search", "--fusion"): FusionMethod,
    ("hybrid-search", "--normalization"): Normalization,
    ("hybrid-search", "--missing"): MissingPolicy,
    ("hybrid-search", "--dense-mode"): DenseModeName,
    ("hybrid-search", "--method"): DenseModeName,
    ("hybrid-search", "--sparse-mode"): SearchModeName,
    ("search", "--mode"): SearchModeName,
    ("train", "--negatives-from"): NegativeSource,
    ("train", "--mode"): Mode,
    ("train", "--loss"): RankingLoss,
    ("train", "--query-regularizer"): Regularizer,
    ("train", "--document-regularizer"): Regularizer,
    ("train", "--precision"): TrainingPrecision,
    ("train", "--implementation"): Implementation,
    ("train", "--eval-precision"): Precision,
}


def _subcommands(
    parser: argparse.ArgumentParser | None = None, prefix: str = ""
) -> dict[str, argparse.ArgumentParser]:
    """Every (sub)subcommand's parser by its full name (``"lucene export"``)."""
    parser = parser or build_parser()
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[prefix + name] = sub
                found.update(_subcommands(sub, prefix + name + " "))
    return found


def _options(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            yield max(action.option_strings, key=len), action


def test_cli_choices_are_the_library_literals():
    seen = {}
    for command, parser in _subcommands().items():
        for option, action in _options(parser):
            if action.choices is not None:
                seen[command, option] = tuple(action.choices)
    # Every option with choices is listed above: one copied by hand, or a new one, fails here.
    assert seen == {key: get_args(literal) for key, literal in CLI_CHOICES.items()}


#: Actions whose help needs no default: flags and counters.
_FLAG_ACTIONS = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._CountAction,
    argparse._VersionAction,
    argparse._StoreConstAction,
)


def test_every_cli_option_states_its_default():
    undocumented = []
    for command, parser in _subcommands().items():
        # One of a required group (--data or --train-jsonl) is as good as required.
        required = {
            a
            for group in parser._mutually_exclusive_groups
            if group.required
            for a in group._group_actions
        }
        for option, action in _options(parser):
            if (
                isinstance(action, _FLAG_ACTIONS)
                or action.required
                or action in required
                or action.help == argparse.SUPPRESS
            ):  # hidden old spellings
                continue
            if "default" not in (action.help or "").lower():
                undocumented.append(f"{command} {option}")
    assert not undocumented, f"options whose help does not state the default: {undocumented}"


def test_help_renders_for_every_subcommand():
    for command, parser in _subcommands().items():
        assert parser.format_help(), command


# -- sparse-ir encode: a leftover shard -----------------------------------------------------------


def test_encode_re_encodes_an_unreadable_leftover_shard_and_says_so(
    tmp_path, tiny_bert_dir, caplog
):
    import json
    import logging

    from sparse_ir.cli import main
    from sparse_ir.sparse_batch import SparseBatch

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n"
            for i, text in enumerate(["tumor cells", "brain study"])
        )
    )
    output = tmp_path / "vectors"
    output.mkdir()
    (output / "shard-00000.npz").write_bytes(b"not a zip archive")
    with caplog.at_level(logging.INFO, logger="sparse_ir.cli.encode"):
        assert (
            main(
                [
                    "encode",
                    "--model",
                    str(tiny_bert_dir),
                    "--input",
                    str(corpus),
                    "--output",
                    str(output),
                ]
            )
            == 0
        )
    assert any(
        "re-encoding" in r.getMessage()
        and "shard-00000.npz" in r.getMessage()
        and r.levelno == logging.WARNING
        for r in caplog.records
    )
    assert list(SparseBatch.load(output / "shard-00000.npz").ids) == ["d0", "d1"]
