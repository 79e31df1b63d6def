"""The sentence-transformers SparseEncoder format, read and written.

A sentence-transformers model directory lists its modules in ``modules.json``; each module
keeps its settings in its own folder. The SPLADE models this library runs are:

* ``[MLMTransformer | Transformer(fill-mask), SpladePooling]``: a SPLADE model. Read:
  ``sentence_bert_config.json`` (``max_seq_length``, ``do_lower_case``; sentence-transformers 6
  keeps the length as the tokenizer's ``model_max_length``), ``SpladePooling``'s
  ``config.json`` (``pooling_strategy`` max/sum, ``activation_function`` relu/log1p_relu,
  ``word_embedding_dimension`` / ``embedding_dimension``, ``chunk_size`` (memory only)).
* ``[Router]`` whose ``router_config.json`` routes queries through a ``SparseStaticEmbedding``
  (one weight per token, e.g. IDF: an inference-free model such as OpenSearch's doc-v3 models)
  and documents through the two modules above; or queries through their own SPLADE modules.

``config_sentence_transformers.json`` adds the prompts (put before each query / document) and
``max_active_dims``. Any other module type is refused, naming it and the file that lists it:
running a model with a module left out would give other vectors without a word.

:func:`save_splade` and :func:`save_router` write the same format, so a checkpoint of
``sparse-ir train`` loads with ``sentence_transformers.SparseEncoder(path)`` and gives our
vectors. :func:`model_provenance` names a model and fingerprints its files for an index.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "MODULES_FILE",
    "SpladeModule",
    "StaticModule",
    "StLayout",
    "UnsupportedModuleError",
    "check_model",
    "load_encoder",
    "load_static_query_encoder",
    "model_fingerprint",
    "model_provenance",
    "read_layout",
    "save_router",
    "save_splade",
    "vectors_provenance",
]

logger = logging.getLogger(__name__)

MODULES_FILE = "modules.json"
_ROUTER_FILE = "router_config.json"
_MODEL_FILE = "config_sentence_transformers.json"
_TRANSFORMER_FILE = "sentence_bert_config.json"

# Module type names as written by sentence-transformers 5 (still loaded by 6); read: any module
# path ending in one of the class names below.
_TYPE_MLM = "sentence_transformers.sparse_encoder.models.MLMTransformer"
_TYPE_POOLING = "sentence_transformers.sparse_encoder.models.SpladePooling"
_TYPE_STATIC = "sentence_transformers.sparse_encoder.models.SparseStaticEmbedding"
_TYPE_ROUTER = "sentence_transformers.models.Router"
_TRANSFORMERS = ("MLMTransformer", "Transformer")


class UnsupportedModuleError(ValueError):
    """A sentence-transformers model holds a module this library does not run."""


@dataclass(frozen=True)
class SpladeModule:
    """An MLM transformer followed by SPLADE pooling, as read from their configs.

    Attributes:
        directory: the folder of the transformer's weights and tokenizer.
        pooling: ``"max"`` or ``"sum"``.
        activation: ``"relu"`` or ``"log1p_relu"``.
        max_seq_length: tokens read per text (None: the tokenizer's, capped by the model's).
        do_lower_case: lowercase the input before tokenizing.
        embedding_dimension: the recorded output size (checked against the vocabulary).
    """

    directory: Path
    pooling: str = "max"
    activation: str = "relu"
    max_seq_length: int | None = None
    do_lower_case: bool = False
    embedding_dimension: int | None = None


@dataclass(frozen=True)
class StaticModule:
    """A ``SparseStaticEmbedding``: one weight per token (weights file or token -> weight JSON).

    Attributes:
        directory: the folder of its tokenizer and ``model.safetensors`` (tensor ``weight``).
        json_path: a token -> weight JSON used instead of the safetensors file, if recorded.
    """

    directory: Path
    json_path: Path | None = None


@dataclass(frozen=True)
class StLayout:
    """A sentence-transformers SPLADE model: its document side, query side and settings.

    Attributes:
        root: the model directory.
        document: the SPLADE modules encoding documents.
        query: the query side when it differs (a :class:`StaticModule` for inference-free
            models, or its own :class:`SpladeModule`); None when queries go the same way.
        query_prompt, document_prompt: text put before queries / documents.
        max_active_dims: keep only this many heaviest terms per vector (None: all).
    """

    root: Path
    document: SpladeModule
    query: SpladeModule | StaticModule | None = None
    query_prompt: str = ""
    document_prompt: str = ""
    max_active_dims: int | None = None
    settings: dict = field(default_factory=dict)


# -- reading ------------------------------------------------------------------------------------

#: Files of a sentence-transformers repository needed to run it (no pickles, no ONNX).
_SNAPSHOT_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.model",
    "**/*.json",
    "**/*.safetensors",
]


def hub_snapshot(name: str) -> str:
    """A local directory for a hub id whose repository is a sentence-transformers model
    (it has ``modules.json``), so its module configs are read like a local directory's;
    ``name`` unchanged otherwise (a local path, a plain Hugging Face model, or a hub that
    cannot be reached and has no cached copy: transformers then says what is missing).

    The Hugging Face cache is tried first (``local_files_only``), then the hub, unless
    ``HF_HUB_OFFLINE`` is set.
    """
    if os.path.exists(name) or name.count("/") != 1 or name.startswith((".", "/")):
        return name
    try:
        import huggingface_hub
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - transformers depends on it
        return name
    for local_only in (True, False):
        if not local_only and constants.HF_HUB_OFFLINE:
            break
        try:
            huggingface_hub.hf_hub_download(name, MODULES_FILE, local_files_only=local_only)
            return huggingface_hub.snapshot_download(
                name, allow_patterns=_SNAPSHOT_PATTERNS, local_files_only=local_only
            )
        except Exception as error:  # noqa: BLE001 - not found, offline, no network: not ST
            logger.debug("%s: no sentence-transformers snapshot (%s)", name, error)
    return name


def read_layout(path: str | os.PathLike) -> StLayout | None:
    """The model at ``path`` as a :class:`StLayout`, or None if it has no ``modules.json``.

    Raises:
        UnsupportedModuleError: a module we do not run (named, with the file listing it).
    """
    root = Path(path)
    modules_file = root / MODULES_FILE
    if not modules_file.is_file():
        return None
    entries = _read_json(modules_file)
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{modules_file}: expected a non-empty list of modules")
    modules = [(str(e.get("type", "")), root / str(e.get("path", ""))) for e in entries]
    model_config = _read_json(root / _MODEL_FILE) if (root / _MODEL_FILE).is_file() else {}
    if _class(modules[0][0]) in ("Router", "Asym"):
        if len(modules) > 1:
            _refuse(modules[1][0], modules_file, "after a Router")
        document, query = _read_router(modules[0][1])
    else:
        document = _read_chain(modules, modules_file)
        if not isinstance(document, SpladeModule):
            raise UnsupportedModuleError(
                f"{modules_file}: a SparseStaticEmbedding alone encodes no documents; this "
                "library reads it only as the query side of a Router"
            )
        query = None
    prompts = model_config.get("prompts") or {}
    default_prompt = prompts.get(model_config.get("default_prompt_name") or "", "") or ""
    query_prompt = prompts.get("query") or default_prompt
    document_prompt = next(
        (prompts[name] for name in ("document", "passage", "corpus") if prompts.get(name)),
        default_prompt,
    )
    max_active_dims = model_config.get("max_active_dims")
    return StLayout(
        root=root,
        document=document,
        query=query,
        query_prompt=query_prompt or "",
        document_prompt=document_prompt or "",
        max_active_dims=max_active_dims,
        settings=model_config,
    )


def _read_router(directory: Path) -> tuple[SpladeModule, SpladeModule | StaticModule | None]:
    config_file = directory / _ROUTER_FILE
    if not config_file.is_file():
        raise ValueError(f"{config_file} not found: a Router module needs it")
    config = _read_json(config_file)
    types, structure = config.get("types", {}), config.get("structure", {})
    unknown = sorted(set(structure) - {"query", "document"})
    if unknown:
        raise UnsupportedModuleError(
            f"{config_file}: route {unknown[0]!r}; this library reads the routes 'query' and "
            "'document' only"
        )
    if "document" not in structure:
        raise UnsupportedModuleError(f"{config_file}: no 'document' route")

    def chain(route: str):
        names = structure[route]
        for name in names:
            if name not in types:
                raise ValueError(f"{config_file}: module {name!r} has no type")
        return _read_chain([(types[name], directory / name) for name in names], config_file)

    document = chain("document")
    if not isinstance(document, SpladeModule):
        raise UnsupportedModuleError(
            f"{config_file}: the document route must be SPLADE (MLMTransformer + SpladePooling)"
        )
    query = chain("query") if "query" in structure else None
    return document, query


def _read_chain(modules: list[tuple[str, Path]], listed_in: Path) -> SpladeModule | StaticModule:
    names = [_class(kind) for kind, _ in modules]
    for kind, _ in modules:
        if _class(kind) not in (
            *_TRANSFORMERS,
            "SpladePooling",
            "SparseStaticEmbedding",
        ) or not kind.startswith("sentence_transformers."):
            _refuse(kind, listed_in)
    if names == ["SparseStaticEmbedding"]:
        directory = modules[0][1]
        config = (
            _read_json(directory / "config.json") if (directory / "config.json").is_file() else {}
        )
        path = config.get("path")
        json_path = None
        if path:
            json_path = Path(path) if os.path.isabs(path) else directory / path
        return StaticModule(directory, json_path)
    if len(names) != 2 or names[0] not in _TRANSFORMERS or names[1] != "SpladePooling":
        raise UnsupportedModuleError(
            f"{listed_in}: modules {names}; this library runs [MLMTransformer, SpladePooling] "
            "(or [SparseStaticEmbedding] as a Router's query side)"
        )
    (kind, transformer_dir), (_, pooling_dir) = modules
    transformer = _read_transformer_config(transformer_dir)
    task = transformer.get(
        "transformer_task", "fill-mask" if names[0] == "MLMTransformer" else "feature-extraction"
    )
    if task != "fill-mask":
        raise UnsupportedModuleError(
            f"{transformer_dir / _TRANSFORMER_FILE}: transformer_task {task!r}; SPLADE needs "
            "the masked-language-model head ('fill-mask')"
        )
    pooling = (
        _read_json(pooling_dir / "config.json") if (pooling_dir / "config.json").is_file() else {}
    )
    strategy = pooling.get("pooling_strategy", "max")
    activation = pooling.get("activation_function", "relu")
    if strategy not in ("max", "sum"):
        raise UnsupportedModuleError(
            f"{pooling_dir / 'config.json'}: pooling_strategy {strategy!r}; expected 'max' or 'sum'"
        )
    if activation not in ("relu", "log1p_relu"):
        raise UnsupportedModuleError(
            f"{pooling_dir / 'config.json'}: activation_function "
            f"{activation!r}; expected 'relu' or 'log1p_relu'"
        )
    dimension = pooling.get("embedding_dimension", pooling.get("word_embedding_dimension"))
    return SpladeModule(
        directory=transformer_dir,
        pooling=strategy,
        activation=activation,
        max_seq_length=transformer.get("max_seq_length"),
        do_lower_case=bool(transformer.get("do_lower_case", False)),
        embedding_dimension=dimension,
    )


def _read_transformer_config(directory: Path) -> dict:
    for name in (
        _TRANSFORMER_FILE,
        "sentence_roberta_config.json",
        "sentence_distilbert_config.json",
        "sentence_xlm-roberta_config.json",
    ):
        if (directory / name).is_file():
            return _read_json(directory / name)
    return {}


def _class(kind: str) -> str:
    return kind.rsplit(".", 1)[-1]


def _refuse(kind: str, listed_in: Path, where: str = "") -> None:
    raise UnsupportedModuleError(
        f"{listed_in}: module type {kind!r}{' ' + where if where else ''} is not implemented "
        "by sparse_ir (it runs MLMTransformer/Transformer(fill-mask) + SpladePooling, and "
        "SparseStaticEmbedding as a Router's query side); load this model with "
        "sentence-transformers instead"
    )


def _read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


# -- loading ------------------------------------------------------------------------------------


def load_encoder(layout: StLayout, *, device: str = "cpu", name: str | None = None, **options):
    """A :class:`~sparse_ir.encoders.splade.SpladeEncoder` for a sentence-transformers model.

    The model's settings are the defaults; ``options`` override them (a differing value is
    logged as a warning). The query side of a Router becomes the encoder's ``query_encoder``.
    """
    from sparse_ir.encoders.splade import SpladeEncoder

    model, tokenizer, length = _load_transformer(layout.document)
    defaults = {
        "pooling": layout.document.pooling,
        "activation": layout.document.activation,
        "document_max_length": length,
        "query_max_length": length,
        "query_prompt": layout.query_prompt,
        "document_prompt": layout.document_prompt,
        "max_active_dims": layout.max_active_dims,
    }
    for key, value in defaults.items():
        if key in options and options[key] != value:
            logger.warning(
                "%s: %s=%r overrides the model's own %r", layout.root, key, options[key], value
            )
    settings = {**defaults, **options}
    query_encoder = None
    if isinstance(layout.query, StaticModule):
        query_encoder = load_static_query_encoder(layout, vocab_size=_rows(model), name=name)
        settings["query_max_length"] = query_encoder.query_max_length
    elif isinstance(layout.query, SpladeModule):
        query_model, query_tokenizer, query_length = _load_transformer(layout.query)
        query_options = {
            k: v
            for k, v in options.items()
            if k not in ("pooling", "activation", "query_max_length", "document_max_length")
        }
        query_encoder = SpladeEncoder(
            query_model,
            query_tokenizer,
            device=device,
            name=name,
            pooling=layout.query.pooling,
            activation=layout.query.activation,
            query_max_length=query_length,
            document_max_length=query_length,
            query_prompt=layout.query_prompt,
            **{
                k: v
                for k, v in query_options.items()
                if k not in ("query_prompt", "document_prompt")
            },
        )
        settings["query_max_length"] = query_length
    encoder = SpladeEncoder(
        model, tokenizer, device=device, name=name, query_encoder=query_encoder, **settings
    )
    if layout.document.embedding_dimension not in (None, len(encoder.vocab)):
        raise ValueError(
            f"{layout.root}: SpladePooling records embedding dimension "
            f"{layout.document.embedding_dimension}, the model has "
            f"{len(encoder.vocab)} vocabulary rows"
        )
    return encoder


def _load_transformer(module: SpladeModule):
    """``(model, tokenizer, max_length)`` of a SPLADE module, as sentence-transformers sets it."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from sparse_ir.encoders.registry import quiet_transformers

    with quiet_transformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(module.directory, use_fast=True)
            model = AutoModelForMaskedLM.from_pretrained(module.directory, use_safetensors=True)
        except OSError as exc:
            raise OSError(f"cannot load the transformer of {module.directory}: {exc}") from exc
    if module.do_lower_case:
        _lowercase(tokenizer)
    length = module.max_seq_length
    if length is None:
        length = int(min(tokenizer.model_max_length, 1 << 20))
        positions = getattr(model.config, "max_position_embeddings", -1)
        if positions and positions > 0:
            length = min(length, positions)
    return model, tokenizer, int(length)


def _lowercase(tokenizer) -> None:
    """Put a Lowercase step first in a fast tokenizer's normalizer (as sentence-transformers)."""
    from tokenizers.normalizers import Lowercase, Sequence

    backend = tokenizer.backend_tokenizer
    current = backend.normalizer
    backend.normalizer = Sequence([Lowercase()] + ([current] if current is not None else []))


def _rows(model) -> int:
    return model.get_output_embeddings().weight.shape[0]


def load_static_query_encoder(layout: StLayout, *, vocab_size: int, name: str | None = None):
    """The query side of an inference-free Router as an
    :class:`~sparse_ir.training.inference_free.IdfQueryEncoder` (same vectors as
    ``SparseStaticEmbedding``: each distinct token of the query, no special tokens added,
    weighted by its static weight)."""
    from transformers import AutoTokenizer

    from sparse_ir.encoders.registry import quiet_transformers
    from sparse_ir.training.inference_free import IdfQueryEncoder

    module = layout.query
    if not isinstance(module, StaticModule):
        raise ValueError(f"{layout.root} has no SparseStaticEmbedding query side")
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(module.directory, use_fast=True)
    if module.json_path is not None:
        table = _read_json(module.json_path)
        weights = np.zeros(vocab_size, np.float32)
        ids = tokenizer.convert_tokens_to_ids(list(table))
        for token_id, value in zip(ids, table.values()):
            if token_id is not None and 0 <= token_id < vocab_size:
                weights[token_id] = value
    else:
        from safetensors.numpy import load_file

        weights_file = module.directory / "model.safetensors"
        if not weights_file.is_file():
            raise FileNotFoundError(
                f"{weights_file} not found (the SparseStaticEmbedding "
                "weights; this library reads safetensors only)"
            )
        weights = load_file(weights_file)["weight"].astype(np.float32)
    if len(weights) > vocab_size:
        raise ValueError(
            f"{module.directory}: {len(weights)} static weights for a {vocab_size}-row vocabulary"
        )
    if len(weights) < vocab_size:
        weights = np.concatenate([weights, np.zeros(vocab_size - len(weights), np.float32)])
    if weights.min() < 0:
        raise ValueError(
            f"{module.directory}: negative static weights "
            f"(min {weights.min():g}); a query weight must be >= 0 here"
        )
    length = int(min(tokenizer.model_max_length, 1 << 20))
    return IdfQueryEncoder(
        tokenizer,
        weights,
        query_max_length=length,
        name=name,
        drop_special_tokens=False,
        query_prompt=layout.query_prompt,
    )


# -- writing ------------------------------------------------------------------------------------


def _clean_tokenizer(tokenizer, max_seq_length: int):
    """A copy of the tokenizer with no truncation or padding baked in, and its model length."""
    clean = copy.deepcopy(tokenizer)
    backend = getattr(clean, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    clean.model_max_length = max_seq_length
    clean.init_kwargs["model_max_length"] = max_seq_length
    return clean


def _save_transformer(directory: Path, model, tokenizer, max_seq_length: int) -> None:
    from sparse_ir.encoders.registry import quiet_transformers

    directory.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(directory, safe_serialization=True)
        _clean_tokenizer(tokenizer, max_seq_length).save_pretrained(directory)
    _write_json(
        directory / _TRANSFORMER_FILE, {"max_seq_length": max_seq_length, "do_lower_case": False}
    )


def _pooling_config(pooling: str, activation: str, dimension: int) -> dict:
    return {
        "pooling_strategy": pooling,
        "activation_function": activation,
        "word_embedding_dimension": dimension,
    }


def _model_config(prompts: dict[str, str] | None = None) -> dict:
    return {
        "model_type": "SparseEncoder",
        "prompts": prompts or {"query": "", "document": ""},
        "default_prompt_name": None,
        "similarity_fn_name": "dot",
    }


def save_splade(
    directory: str | os.PathLike,
    model,
    tokenizer,
    *,
    max_seq_length: int,
    pooling: str = "max",
    activation: str = "relu",
) -> None:
    """Write a SPLADE model as a sentence-transformers SparseEncoder (MLMTransformer +
    SpladePooling): the Hugging Face files at the top (any MLM loader reads them) plus
    ``modules.json`` and the module configs."""
    root = Path(directory)
    _save_transformer(root, model, tokenizer, max_seq_length)
    _write_json(
        root / MODULES_FILE,
        [
            {"idx": 0, "name": "0", "path": "", "type": _TYPE_MLM},
            {"idx": 1, "name": "1", "path": "1_SpladePooling", "type": _TYPE_POOLING},
        ],
    )
    (root / "1_SpladePooling").mkdir(exist_ok=True)
    _write_json(
        root / "1_SpladePooling" / "config.json", _pooling_config(pooling, activation, _rows(model))
    )
    _write_json(root / _MODEL_FILE, _model_config())


def save_router(
    directory: str | os.PathLike,
    model,
    tokenizer,
    query_weights: np.ndarray,
    *,
    max_seq_length: int,
    query_max_length: int,
    pooling: str = "max",
    activation: str = "relu",
) -> None:
    """Write an inference-free model as a sentence-transformers Router: queries through a
    ``SparseStaticEmbedding`` holding ``query_weights`` (special tokens zeroed), documents
    through MLMTransformer + SpladePooling."""
    from safetensors.numpy import save_file

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    query_dir, mlm_dir, pool_dir = (
        root / "query_0_SparseStaticEmbedding",
        root / "document_0_MLMTransformer",
        root / "document_1_SpladePooling",
    )
    _save_transformer(mlm_dir, model, tokenizer, max_seq_length)
    pool_dir.mkdir(exist_ok=True)
    _write_json(pool_dir / "config.json", _pooling_config(pooling, activation, _rows(model)))
    query_dir.mkdir(exist_ok=True)
    weights = np.array(query_weights, np.float32)
    weights[[i for i in tokenizer.all_special_ids if i < len(weights)]] = 0.0
    save_file({"weight": weights}, query_dir / "model.safetensors")
    _write_json(query_dir / "config.json", {"frozen": True})
    from sparse_ir.encoders.registry import quiet_transformers

    with quiet_transformers():
        _clean_tokenizer(tokenizer, query_max_length).save_pretrained(query_dir)
    _write_json(
        root / _ROUTER_FILE,
        {
            "types": {
                query_dir.name: _TYPE_STATIC,
                mlm_dir.name: _TYPE_MLM,
                pool_dir.name: _TYPE_POOLING,
            },
            "structure": {"query": [query_dir.name], "document": [mlm_dir.name, pool_dir.name]},
            "parameters": {"default_route": "document", "allow_empty_key": True},
        },
    )
    _write_json(root / MODULES_FILE, [{"idx": 0, "name": "0", "path": "", "type": _TYPE_ROUTER}])
    _write_json(root / _MODEL_FILE, _model_config())


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


# -- provenance ---------------------------------------------------------------------------------


def model_fingerprint(path: str | os.PathLike) -> str | None:
    """sha256 over a model directory's ``config.json`` files and safetensors headers.

    A safetensors header lists every tensor's name, dtype, shape and byte range; with the
    configs it changes when the architecture or any saved module changes, and costs a few
    kilobytes to read. Every such file under ``path`` counts (a Router keeps its modules in
    sub-folders), visited in sorted order. None when ``path`` is not a local directory.
    """
    root = Path(path)
    if not root.is_dir():
        return None
    digest = hashlib.sha256()
    found = False
    for file in sorted(root.rglob("*")):
        relative = file.relative_to(root).as_posix()
        if not file.is_file() or relative.startswith("trainer_state"):
            continue
        if file.name in ("config.json", _TRANSFORMER_FILE, _ROUTER_FILE, MODULES_FILE):
            digest.update(f"{relative}\0".encode())
            digest.update(file.read_bytes())
            found = True
        elif file.suffix == ".safetensors":
            with open(file, "rb") as handle:
                size_bytes = handle.read(8)
                if len(size_bytes) < 8:
                    continue
                (size,) = struct.unpack("<Q", size_bytes)
                header = handle.read(min(size, 100 << 20))
            digest.update(f"{relative}\0".encode())
            digest.update(size_bytes + header)
            found = True
    return f"sha256:{digest.hexdigest()}" if found else None


def model_provenance(encoder) -> dict:
    """``{"model": ..., "model_fingerprint": ...}`` for an index's settings.

    ``model`` is the encoder's name made absolute when it is a local directory (a bundled name
    or a hub id stays as is); the fingerprint is :func:`model_fingerprint` of the resolved
    directory (None for a hub id not on disk).
    """
    from sparse_ir.encoders.registry import BUNDLED_MODELS, resolve_model

    name = getattr(encoder, "name", None)
    if name is None:
        return {"model": None, "model_fingerprint": None}
    name = os.fspath(name)
    if name not in BUNDLED_MODELS and os.path.isdir(name):
        name = os.path.abspath(name)
    try:
        path = resolve_model(name)
    except Exception:  # a missing bundled package: no fingerprint, the name still recorded
        path = name
    return {"model": name, "model_fingerprint": model_fingerprint(path)}


def check_model(settings: dict, encoder, *, index: str | os.PathLike, force: bool = False) -> None:
    """Refuse to search an index with another model than the one that made its vectors.

    Compares the fingerprint recorded in the index's build ``settings`` with the encoder's
    (:func:`model_provenance`); a mismatch raises ``ValueError`` naming both, unless ``force``
    (then a warning). Indexes that record no fingerprint are not checked.
    """
    recorded = settings.get("model_fingerprint")
    if not recorded:
        return
    current = model_provenance(encoder)
    if current["model_fingerprint"] in (None, recorded):
        return
    message = (
        f"the index {os.fspath(index)} was built with the model "
        f"{settings.get('model')!r} ({recorded[:19]}...), but the query encoder is "
        f"{current['model']!r} ({current['model_fingerprint'][:19]}...): its query "
        "vectors would not match the documents'. Use the index's model, or force it "
        "(force=True; --force-model on the command line)"
    )
    if not force:
        raise ValueError(message)
    logger.warning("%s", message.replace("force it", "forced"))


def vectors_provenance(
    directory: str | os.PathLike, model: str | None = None, default_model: str | None = None
) -> dict:
    """What an index built from pre-encoded vectors records about their model.

    The vectors' ``encode.json`` (written by ``sparse-ir encode``) names the model that made
    them; it wins over ``model`` when ``model`` is None or the command line's default
    (``default_model``); an explicit other ``model`` is refused. Without ``encode.json``,
    ``model`` is recorded (made absolute, fingerprinted).
    """
    info_file = Path(directory) / "encode.json"
    info = _read_json(info_file) if info_file.is_file() else {}
    recorded = info.get("model")
    out: dict = {"vectors": os.path.abspath(os.fspath(directory))}
    if recorded:
        if model not in (None, default_model, recorded) and os.path.abspath(
            model
        ) != os.path.abspath(recorded):
            raise ValueError(
                f"{info_file} says the vectors were made with {recorded!r}, "
                f"but --model is {model!r}; drop --model (the vectors' model is "
                "recorded) or encode again with that model"
            )
        out["model"] = recorded
        out["model_fingerprint"] = info.get("model_fingerprint")
        for key in ("pooling", "query_max_length", "document_max_length", "query_encoder"):
            if key in info:
                out[key] = info[key]
        return out
    if model is None:
        return {**out, "model": None, "model_fingerprint": None}
    logger.warning(
        "%s has no encode.json: recording %r as the model of these vectors", directory, model
    )

    class _Named:
        name = model

    return {**out, **model_provenance(_Named())}
