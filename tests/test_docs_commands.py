"""Every ``sparse-ir`` command line in the docs names a real subcommand and real options (a
doc that shows an option the CLI does not have, as docs/training.md once did with --corpus,
fails here)."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def doc_command_lines():
    """(file, line) of every ``sparse-ir ...`` line inside a fenced block of the docs."""
    for path in sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")]):
        text = path.read_text(encoding="utf-8")
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip().removeprefix("$ ")
                if line.startswith("sparse-ir "):
                    yield path.name, line


def _subparser(parser: argparse.ArgumentParser, words: list[str]):
    """The deepest parser named by the leading command words, and the words after them."""
    while words:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or words[0] not in actions[0].choices:
            break
        parser, words = actions[0].choices[words[0]], words[1:]
    return parser, words


def test_doc_commands_use_existing_options():
    from sparse_ir.cli import build_parser

    top = build_parser()
    lines = list(doc_command_lines())
    assert len(lines) > 10
    wrong = []
    for name, line in lines:
        words = [w for w in shlex.split(line, comments=True)[1:] if w not in ("-q", "-v", "-vv")]
        parser, rest = _subparser(top, words)
        if parser is top:
            if rest and not rest[0].startswith("-"):
                wrong.append(f"{name}: unknown command in: {line}")
            continue
        known = {s for a in parser._actions for s in a.option_strings}
        for word in rest:
            option = word.split("=", 1)[0]
            if option.startswith("--") and option not in known:
                wrong.append(f"{name}: {option} in: {line}")
    assert not wrong, "\n".join(wrong)
