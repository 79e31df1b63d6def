"""Training checkpoints: a model directory any SPLADE loader opens, plus what resuming needs.

A checkpoint directory holds

* ``config.json`` + ``model.safetensors`` + tokenizer files: ``SpladeEncoder.from_pretrained``
  (and ``transformers.AutoModelForMaskedLM``) load it as is;
* ``training_config.json``: the :class:`~sparse_ir.training.trainer.TrainingConfig` of the run;
* ``trainer_state.json`` + ``trainer_state.safetensors``: step, history, optimizer moments and
  the torch random state — all tensors in safetensors, the rest JSON: nothing is unpickled;
* for inference-free models, the query side (:data:`~sparse_ir.training.inference_free.IDF_FILE`).

It is written into a temporary sibling directory and renamed into place, so an interruption
never leaves a half-written checkpoint under a final name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

__all__ = [
    "STATE_FORMAT",
    "latest_checkpoint",
    "load_training_state",
    "optimizer_state_from_tensors",
    "optimizer_state_to_tensors",
    "save_checkpoint",
]

STATE_FORMAT = 1
_NAME = re.compile(r"^checkpoint-(\d+)$")


def optimizer_state_to_tensors(optimizer: torch.optim.Optimizer
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


def save_checkpoint(directory: str | os.PathLike, *, model, tokenizer, config: dict,
                    state: dict, optimizer: torch.optim.Optimizer | None = None,
                    query_encoder=None) -> Path:
    """Write a complete checkpoint at ``directory`` atomically (replacing an older one)."""
    final = Path(directory)
    temporary = final.with_name(final.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    from sparse_ir.encoders.registry import quiet_transformers

    with quiet_transformers():
        model.save_pretrained(temporary, safe_serialization=True)
        tokenizer.save_pretrained(temporary)
    if query_encoder is not None:
        query_encoder.save(temporary)
    (temporary / "training_config.json").write_text(json.dumps(config, indent=2) + "\n")
    from safetensors.torch import save_file

    tensors = {"torch_rng_state": torch.get_rng_state()}
    meta = {}
    if optimizer is not None:
        optimizer_tensors, meta = optimizer_state_to_tensors(optimizer)
        tensors.update(optimizer_tensors)
    save_file(tensors, temporary / "trainer_state.safetensors")
    # Written last: its presence marks the checkpoint complete.
    (temporary / "trainer_state.json").write_text(json.dumps(
        {"format": STATE_FORMAT, **state, "optimizer": meta}, indent=2) + "\n")
    _fsync_tree(temporary)
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(temporary, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_tree(directory: Path) -> None:
    for path in directory.iterdir():
        if path.is_file():
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

    directory = Path(directory)
    state = json.loads((directory / "trainer_state.json").read_text())
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{directory}/trainer_state.json has format {state.get('format')!r}; "
                         f"this version of sparse_ir reads format {STATE_FORMAT}")
    return state, load_file(directory / "trainer_state.safetensors")


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete ``checkpoint-N`` directory with the largest N, or None."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and (path / "trainer_state.json").is_file():
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None
