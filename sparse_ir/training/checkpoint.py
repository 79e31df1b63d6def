"""Training checkpoints: a model directory any SPLADE loader opens, plus what resuming needs.

A checkpoint directory is a sentence-transformers SparseEncoder
(:mod:`sparse_ir.encoders.st_format`):

* siamese models: ``config.json`` + ``model.safetensors`` + tokenizer files at the top
  (``SpladeEncoder.from_pretrained``, ``transformers.AutoModelForMaskedLM`` and
  ``sentence_transformers.SparseEncoder`` all load it), ``modules.json`` and the module configs;
* inference-free models: a Router, queries through a ``SparseStaticEmbedding`` holding the IDF
  table, documents through ``document_0_MLMTransformer`` + SpladePooling, so
  ``SparseEncoder(path)`` never runs the model on queries;
* tokenizer files with no truncation or padding baked in, and ``README.md``: a model card with
  the training command, the settings and the measured figures;
* ``trainer_state/`` (:data:`STATE_DIR`), kept out of the model's own files:
  ``training_config.json`` (the :class:`~sparse_ir.training.trainer.TrainingConfig`),
  ``trainer_state.json`` + ``trainer_state.safetensors`` (step, history, optimizer moments, the
  torch random state: tensors in safetensors, the rest JSON, nothing unpickled). It is only
  needed to resume; delete it before publishing the model.

It is written into a temporary sibling directory and renamed into place, so an interruption
never leaves a half-written checkpoint under a final name.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import torch

__all__ = [
    "STATE_DIR",
    "STATE_FORMAT",
    "latest_checkpoint",
    "model_weights_file",
    "state_directory",
    "load_training_state",
    "optimizer_state_from_tensors",
    "optimizer_state_to_tensors",
    "save_checkpoint",
]

STATE_FORMAT = 1
#: The sub-folder of a checkpoint holding what resuming needs (not part of the model).
STATE_DIR = "trainer_state"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def optimizer_state_to_tensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's ``state_dict`` into flat tensors and a JSON-able remainder."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for param, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{param}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{param}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_state_from_tensors(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """The inverse of :func:`optimizer_state_to_tensors`: a dict ``load_state_dict`` takes."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if not name.startswith("optimizer."):
            continue
        _, param, key = name.split(".", 2)
        state.setdefault(int(param), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        param, key = name.split(".", 1)
        state.setdefault(int(param), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    directory: str | os.PathLike,
    *,
    model,
    tokenizer,
    config: dict,
    state: dict,
    optimizer: torch.optim.Optimizer | None = None,
    query_encoder=None,
) -> Path:
    """Write a complete checkpoint at ``directory`` atomically (replacing an older one).

    ``config`` is the run's TrainingConfig as a dict: its ``eval_document_max_length`` becomes
    the model's ``max_seq_length`` and, for inference-free models, its ``query_max_length`` the
    query side's.
    """
    from sparse_ir.encoders import st_format

    final = Path(directory)
    temporary = final.with_name(final.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    max_seq_length = int(config.get("eval_document_max_length") or 256)
    if query_encoder is None:
        st_format.save_splade(temporary, model, tokenizer, max_seq_length=max_seq_length)
    else:
        st_format.save_router(
            temporary,
            model,
            tokenizer,
            query_encoder.idf,
            max_seq_length=max_seq_length,
            query_max_length=int(config.get("query_max_length") or 64),
        )
    (temporary / "README.md").write_text(model_card(config, state), encoding="utf-8")
    state_dir = temporary / STATE_DIR
    state_dir.mkdir()
    (state_dir / "training_config.json").write_text(json.dumps(config, indent=2) + "\n")
    from safetensors.torch import save_file

    tensors = {"torch_rng_state": torch.get_rng_state()}
    meta = {}
    if optimizer is not None:
        optimizer_tensors, meta = optimizer_state_to_tensors(optimizer)
        tensors.update(optimizer_tensors)
    save_file(tensors, state_dir / "trainer_state.safetensors")
    # Written last: its presence marks the checkpoint complete.
    (state_dir / "trainer_state.json").write_text(
        json.dumps({"format": STATE_FORMAT, **state, "optimizer": meta}, indent=2) + "\n"
    )
    _fsync_tree(temporary)
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(temporary, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def model_card(config: dict, state: dict, command: str | None = None) -> str:
    """The README.md of a checkpoint: how it was trained and what it measured."""
    command = command or _command_line()
    mode = config.get("mode", "siamese")
    lines = [
        "---",
        "library_name: sentence-transformers",
        "tags:",
        "- sparse-encoder",
        "- splade",
        "- sparse-ir",
        "pipeline_tag: feature-extraction",
        "---",
        "",
        "# SPLADE model trained with sparse-ir",
        "",
    ]
    if mode == "inference-free":
        lines += [
            "Inference-free: documents are encoded by the MLM (`document_0_MLMTransformer` "
            "+ SpladePooling); a query is its tokens weighted by IDF "
            "(`query_0_SparseStaticEmbedding`), no model runs at query time.",
            "",
        ]
    lines += [
        "Load it with `sparse_ir.SpladeEncoder.from_pretrained(path)` or "
        "`sentence_transformers.SparseEncoder(path)` (same vectors).",
        "",
        "## Training command",
        "",
        "```",
        command or "(run from Python; settings below)",
        "```",
        "",
        f"Step {state.get('step', '?')} of this run.",
    ]
    evaluations = [r for r in state.get("history", []) if r.get("kind") == "eval"]
    best = state.get("best")
    if best or evaluations:
        lines += [
            "",
            "## Measured (validation set)",
            "",
            "| | step | nDCG@10 | terms/doc | terms/query |",
            "|---|---|---|---|---|",
        ]
        for label, record in (("best", best), ("last", evaluations[-1] if evaluations else None)):
            if record:
                lines.append(
                    f"| {label} | {record.get('step')} | "
                    f"{_figure(record.get('ndcg_at_10'))} | "
                    f"{_figure(record.get('document_terms'), 1)} | "
                    f"{_figure(record.get('query_terms'), 1)} |"
                )
    lines += [
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(config, indent=2),
        "```",
        "",
        f"`{STATE_DIR}/` holds what `sparse-ir train --resume` needs (optimizer state); "
        "it is not part of the model and can be deleted before publishing it.",
        "",
    ]
    return "\n".join(lines)


def _figure(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _command_line() -> str | None:
    """``sparse-ir train ...`` when this process is the command line, else None."""
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    if program in ("sparse-ir", "__main__.py") and "train" in sys.argv[1:]:
        return shlex.join(["sparse-ir", *sys.argv[1:]])
    return None


def state_directory(checkpoint: str | os.PathLike) -> Path:
    """Where a checkpoint keeps its training state (``trainer_state/``, or the top folder of
    checkpoints written before it existed)."""
    checkpoint = Path(checkpoint)
    inner = checkpoint / STATE_DIR
    return inner if (inner / "trainer_state.json").is_file() else checkpoint


def model_weights_file(checkpoint: str | os.PathLike) -> Path:
    """The MLM weights of a checkpoint (top folder, or a Router's document module)."""
    checkpoint = Path(checkpoint)
    for candidate in (
        checkpoint / "model.safetensors",
        checkpoint / "document_0_MLMTransformer" / "model.safetensors",
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{checkpoint}: no model.safetensors (top folder or document_0_MLMTransformer/)"
    )


def _fsync_tree(directory: Path) -> None:
    for path in directory.iterdir():
        if path.is_dir():
            _fsync_tree(path)
        elif path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_training_state(directory: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(state, tensors)`` of a checkpoint: the JSON state and its safetensors tensors."""
    from safetensors.torch import load_file

    directory = state_directory(directory)
    state = json.loads((directory / "trainer_state.json").read_text())
    if state.get("format") != STATE_FORMAT:
        raise ValueError(
            f"{directory}/trainer_state.json has format {state.get('format')!r}; "
            f"this version of sparse_ir reads format {STATE_FORMAT}"
        )
    return state, load_file(directory / "trainer_state.safetensors")


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete ``checkpoint-N`` directory with the largest N, or None."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and (state_directory(path) / "trainer_state.json").is_file():
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None
