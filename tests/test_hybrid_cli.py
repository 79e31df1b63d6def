"""``sparse-ir hybrid-search`` over N indexes of any kinds (SPLADE, BM25, dense)."""

from __future__ import annotations

import json
import re

import pytest

CORPUS = [
    ("d1", "Tumor growth", "tumor cells grow quickly in mice"),
    ("d2", "Gene expression", "gene expression changes in blood cells"),
    ("d3", "Protein", "the protein binds to the cell membrane"),
    ("d4", "Risk", "disease risk of patients after treatment"),
    ("d5", "Python", "read a data file in python and write the results"),
    ("d6", "Mice", "mice fed a fat diet developed tumor lesions"),
    ("d7", "Blood", "blood pressure of patients in a clinical trial"),
    ("d8", "Cells", "stem cells repair the damaged tissue"),
]
QUERIES = ["tumor cells in mice", "gene expression in blood", "python data file"]


@pytest.fixture(scope="module")
def indexes(tmp_path_factory, tiny_bert_dir):
    from sparse_ir.cli import main

    root = tmp_path_factory.mktemp("hybrid-cli")
    corpus = root / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in CORPUS)
    )
    assert (
        main(
            [
                "-q",
                "index",
                "--input",
                str(corpus),
                "--output",
                str(root / "splade"),
                "--model",
                str(tiny_bert_dir),
            ]
        )
        == 0
    )
    assert (
        main(["-q", "index", "--bm25", "--input", str(corpus), "--output", str(root / "bm25")]) == 0
    )
    assert (
        main(
            [
                "-q",
                "dense-index",
                "--input",
                str(corpus),
                "--output",
                str(root / "dense"),
                "--model",
                str(tiny_bert_dir),
            ]
        )
        == 0
    )
    return root


def rows(out: str) -> list[list[str]]:
    """The hit lines of hybrid-search's output, split in cells."""
    return [line.split() for line in out.splitlines() if re.match(r"\s+\d+\s+d\d", line)]


def component_hits(indexes, names, text, depth):
    from sparse_ir.hybrid import open_searcher

    return [open_searcher(indexes / name).search(text, depth) for name in names]


@pytest.mark.parametrize(
    "fusion",
    [
        ["--fusion", "convex", "--weights", "0.2,0.5,0.3"],
        ["--fusion", "convex", "--weights", "0.2,0.5,0.3", "--normalization", "z-score"],
        ["--fusion", "rrf", "--rrf-k", "10"],
    ],
)
def test_three_way_equals_fusing_the_three_component_runs(indexes, capsys, fusion):
    from sparse_ir.cli import main
    from sparse_ir.fusion import fuse_hits

    names = ("bm25", "splade", "dense")
    text = QUERIES[0]
    assert (
        main(
            [
                "hybrid-search",
                *[a for n in names for a in ("--index", str(indexes / n))],
                "-k",
                "5",
                "--depth",
                "6",
                *fusion,
                text,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "over bm25, splade, dense" in out
    options = {"method": fusion[1], "depth": 6, "k": 5}
    if fusion[1] == "convex":
        options["weights"] = (0.2, 0.5, 0.3)
        options["normalization"] = fusion[5] if len(fusion) > 4 else "min-max"
    else:
        options["rrf_k"] = 10
    expected = fuse_hits(component_hits(indexes, names, text, 6), **options)
    printed = rows(out)
    assert [row[1] for row in printed] == [hit.doc_id for hit in expected]
    assert [float(row[2]) for row in printed] == pytest.approx(
        [hit.score for hit in expected], abs=1e-4
    )
    # Every component's score and rank, "-" where that index did not return the document.
    for row, hit in zip(printed, expected):
        cells = " ".join(row[3:])
        for score, rank in zip(hit.components, hit.ranks):
            if score is not None:
                assert f"({rank})" in cells


def test_batch_three_way_equals_fusion_of_component_runs(indexes):
    from sparse_ir.fusion import Fusion
    from sparse_ir.hybrid import HybridSearcher, open_searcher

    paths = [indexes / n for n in ("splade", "dense", "bm25")]
    fusion = Fusion(weights=(0.4, 0.3, 0.3), depth=5)
    hybrid = HybridSearcher.from_paths(paths, fusion)
    ids = [f"q{i}" for i in range(len(QUERIES))]
    fused, components = hybrid.search_batch_components(QUERIES, 5, query_ids=ids)
    runs = [open_searcher(p).search_batch(QUERIES, 5, query_ids=ids) for p in paths]
    assert [run.results for run in components] == [run.results for run in runs]
    assert fused.results == fusion.fuse(runs, k=5).results
    assert [h.doc_id for h in hybrid.search(QUERIES[1], 5)] == [h.doc_id for h in fused["q1"]]


def test_old_options_and_index_mix(indexes, capsys):
    from sparse_ir.cli import main
    from sparse_ir.fusion import fuse_hits

    text = QUERIES[1]
    # --sparse-index and --dense-index come first, then --index: weights follow that order.
    assert (
        main(
            [
                "hybrid-search",
                "--index",
                str(indexes / "bm25"),
                "--dense-index",
                str(indexes / "dense"),
                "--sparse-index",
                str(indexes / "splade"),
                "--weights",
                "0.5,0.25,0.25",
                "--depth",
                "8",
                "-k",
                "4",
                text,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "over splade, dense, bm25" in out
    expected = fuse_hits(
        component_hits(indexes, ("splade", "dense", "bm25"), text, 8),
        weights=(0.5, 0.25, 0.25),
        depth=8,
        k=4,
    )
    assert [row[1] for row in rows(out)] == [hit.doc_id for hit in expected]
    # Two indexes with --alpha, as before; two sparse indexes (BM25 + SPLADE) work too.
    assert (
        main(
            [
                "hybrid-search",
                "--sparse-index",
                str(indexes / "splade"),
                "--dense-index",
                str(indexes / "dense"),
                "--alpha",
                "0.3",
                "-k",
                "3",
                text,
            ]
        )
        == 0
    )
    assert "convex (0.30, 0.70)" in capsys.readouterr().out
    assert (
        main(
            [
                "hybrid-search",
                "--index",
                str(indexes / "bm25"),
                "--index",
                str(indexes / "splade"),
                "--fusion",
                "rrf",
                "-k",
                "3",
                text,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "RRF k=60" in out and "over bm25, splade" in out and len(rows(out)) == 3


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--index", "bm25"], "at least 2 indexes"),
        (["--index", "bm25", "--index", "dense", "--weights", "0.5,0.2,0.3"], "3 values for 2"),
        (
            ["--index", "bm25", "--index", "dense", "--index", "splade", "--alpha", "0.5"],
            "--alpha is for two",
        ),
        (["--index", "bm25", "--index", "dense", "--weights", "0.5,0.6"], "sum"),
        (["--sparse-index", "dense", "--index", "bm25"], "is not an impact index"),
        (["--dense-index", "bm25", "--index", "splade"], "is not a dense index"),
    ],
)
def test_bad_combinations_are_refused(indexes, capsys, arguments, message):
    from sparse_ir.cli import main

    arguments = [str(indexes / a) if a in ("bm25", "dense", "splade") else a for a in arguments]
    assert main(["hybrid-search", *arguments, "query"]) == 1
    assert message in capsys.readouterr().err


def test_weights_must_be_numbers(indexes, capsys):
    from sparse_ir.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "hybrid-search",
                "--index",
                str(indexes / "bm25"),
                "--index",
                str(indexes / "dense"),
                "--weights",
                "a,b",
                "query",
            ]
        )
    assert exit_info.value.code == 2
    assert "comma-separated numbers" in capsys.readouterr().err
