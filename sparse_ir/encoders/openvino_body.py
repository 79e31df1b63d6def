"""The transformer body on OpenVINO: ``SpladeEncoder(..., runtime="openvino")``.

The body is the masked-LM model up to its head's transform (for BERT: the 12 layers, then
dense, GELU, LayerNorm); it returns the hidden states that the vocabulary projection reads, and
the projection stays :class:`~sparse_ir.encoders.splade.SpladeEncoder`'s own (tiled or screened,
float32). OpenVINO runs the body with its CPU kernels: in float32, or with matrix products in
bfloat16 (``INFERENCE_PRECISION_HINT`` ``bf16``) on CPUs with AVX512-BF16 or AMX, where it is
the fastest body measured here for BERT-base (docs/encoding.md). On a CPU without bfloat16
hardware OpenVINO runs the "bfloat16" body in float32.

Converting a PyTorch model takes a while (~25 s for BERT-base here), so the converted model is
kept in a cache directory, one entry per model *content*: the key is a SHA-256 over the model's
class, configuration and every weight, and the OpenVINO, PyTorch and transformers versions, so a
fine-tuned copy of the same architecture never reads another's entry. An entry is written in a
temporary directory and renamed into place (a crash leaves no half-written entry), and its
manifest records the SHA-256 of its files: an entry whose files do not match is converted again
(with a warning), never read.

The cache lives in ``$SPARSE_IR_CACHE_DIR``, else ``$XDG_CACHE_HOME/sparse_ir``, else
``~/.cache/sparse_ir``, under ``openvino/``. ``openvino`` is an optional dependency
(``pip install 'sparse-ir[openvino]'``), imported only when a body is built.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sparse_ir.errors import MissingDependencyError

__all__ = ["OpenVinoBody", "cache_root", "model_key"]

logger = logging.getLogger(__name__)

# Bumped when what is converted changes (the body's inputs/outputs, the conversion options).
_FORMAT = 1
_MANIFEST = "manifest.json"
#: A cache manifest names two files and a key: far below this.
_MAX_MANIFEST_BYTES = 1 << 20
_FILES = ("body.xml", "body.bin")
#: OpenVINO's precision hint for each encoder precision it runs.
HINTS = {"float32": "f32", "mixed": "f32", "bfloat16": "bf16"}


def import_openvino():
    """The ``openvino`` module, or a MissingDependencyError naming the extra that installs it."""
    try:
        import openvino
    except ImportError:
        raise MissingDependencyError(
            "SpladeEncoder(runtime='openvino')", "openvino", "openvino"
        ) from None
    return openvino


def cache_root() -> Path:
    """Where converted bodies are kept: ``$SPARSE_IR_CACHE_DIR``, ``$XDG_CACHE_HOME/sparse_ir``
    or ``~/.cache/sparse_ir``, then ``openvino/``.

    Example:
        >>> import os
        >>> os.environ["SPARSE_IR_CACHE_DIR"] = "/tmp/sparse-ir-cache"
        >>> str(cache_root())
        '/tmp/sparse-ir-cache/openvino'
        >>> del os.environ["SPARSE_IR_CACHE_DIR"]
    """
    base = os.environ.get("SPARSE_IR_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "sparse_ir")
    return Path(base) / "openvino"


def model_key(model: torch.nn.Module, openvino_version: str) -> str:
    """SHA-256 (hex) of a model's content and of the software that converts it.

    Covers the class, the configuration (when the model has one), every parameter and buffer
    (name, dtype, shape, bytes), and the OpenVINO, PyTorch and transformers versions.
    """
    import transformers

    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    header = {
        "format": _FORMAT,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": config.to_dict() if config is not None else None,
        "openvino": openvino_version,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict(keep_vars=False).items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"\n{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """A converted body on disk: ``directory`` holds body.xml, body.bin and the manifest."""

    directory: Path
    converted: bool  # True when this call converted the model (no valid entry was found)

    @property
    def xml(self) -> Path:
        return self.directory / "body.xml"


class OpenVinoBody:
    """A masked-LM model's body compiled by OpenVINO: ``body(input_ids, mask)`` gives the
    [batch, length, hidden] float32 output of the MLM head's transform.

    Args:
        model: a ``transformers`` masked-LM model (float32, on the CPU).
        precision: ``"float32"``, ``"mixed"`` (both: a float32 body) or ``"bfloat16"``.
        cache_dir: where converted bodies are kept (default: :func:`cache_root`).

    Example:
        >>> from transformers import BertConfig, BertForMaskedLM
        >>> import tempfile
        >>> model = BertForMaskedLM(BertConfig(vocab_size=64, hidden_size=16,
        ...     num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).eval()
        >>> body = OpenVinoBody(model, "float32", cache_dir=tempfile.mkdtemp())  # doctest: +SKIP
        >>> ids = torch.tensor([[2, 5, 7, 3]]); mask = torch.ones_like(ids)
        >>> body(ids, mask).shape  # doctest: +SKIP
        torch.Size([1, 4, 16])
    """

    def __init__(
        self, model: torch.nn.Module, precision: str, *, cache_dir: str | os.PathLike | None = None
    ):
        if precision not in HINTS:
            raise ValueError(
                f"runtime 'openvino' runs precision float32, mixed or bfloat16, not {precision!r} "
                "(precision 'int8' is PyTorch's: runtime 'torch')"
            )
        self._ov = import_openvino()
        self.precision = precision
        self.hint = HINTS[precision]
        root = Path(cache_dir) if cache_dir is not None else cache_root()
        self.entry = _cached_body(model, root, self._ov)
        self._core = self._ov.Core()
        self._model = self._core.read_model(str(self.entry.xml))
        self._compiled: dict[int, object] = {}

    def __call__(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hidden states [batch, length, hidden] (float32) on ``torch.get_num_threads()``
        threads (one thread inside :func:`~sparse_ir.encoders.threads.one_thread`)."""
        request = self._request(torch.get_num_threads())
        outputs = request.infer(
            {
                "input_ids": np.ascontiguousarray(input_ids.cpu().numpy(), dtype=np.int64),
                "attention_mask": np.ascontiguousarray(mask.cpu().numpy(), dtype=np.int64),
            }
        )
        # The request reuses its output buffer on the next call: copy it out.
        return torch.from_numpy(np.array(outputs[0], dtype=np.float32, copy=True))

    def _request(self, threads: int):
        """An infer request of the body compiled for ``threads`` threads (compiled once)."""
        request = self._compiled.get(threads)
        if request is None:
            compiled = self._core.compile_model(
                self._model,
                "CPU",
                {
                    "INFERENCE_PRECISION_HINT": self.hint,
                    "INFERENCE_NUM_THREADS": threads,
                    "NUM_STREAMS": 1,
                    "PERFORMANCE_HINT": "LATENCY",
                },
            )
            request = self._compiled[threads] = compiled.create_infer_request()
        return request


class _Body(torch.nn.Module):
    """The masked-LM model with its vocabulary projection skipped: (ids, mask) -> transform."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def _cached_body(model: torch.nn.Module, root: Path, ov) -> CacheEntry:
    """The cache entry of ``model``'s body, converting and storing it if none is valid."""
    key = model_key(model, ov.__version__)
    directory = root / key
    problem = _check_entry(directory, key)
    if problem is None:
        return CacheEntry(directory, converted=False)
    if directory.exists():
        logger.warning(
            "converting again: cached OpenVINO body %s is unusable (%s)", directory, problem
        )
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key[:16]}-", dir=root))
    try:
        _convert(model, staging, ov)
        manifest = {
            "format": _FORMAT,
            "key": key,
            "openvino": ov.__version__,
            "files": {name: _file_digest(staging / name) for name in _FILES},
        }
        (staging / _MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        _install(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return CacheEntry(directory, converted=True)


def _check_entry(directory: Path, key: str) -> str | None:
    """None if ``directory`` is a complete entry for ``key`` whose files match their
    digests, else what is wrong with it."""
    from sparse_ir.errors import IndexCorruptError
    from sparse_ir.index.storage import read_small_file

    try:
        raw = read_small_file(directory / _MANIFEST, root=directory, limit=_MAX_MANIFEST_BYTES)
        manifest = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        return "no manifest"
    except (OSError, ValueError, IndexCorruptError) as exc:
        return f"unreadable manifest: {exc}"
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        return "manifest of another model"
    if manifest.get("format") != _FORMAT:
        return f"format {manifest.get('format')!r}, expected {_FORMAT}"
    recorded = manifest.get("files")
    if not isinstance(recorded, dict):
        return "manifest without files"
    for name in _FILES:
        expected = recorded.get(name)
        if not isinstance(expected, dict):
            return f"{name} is not in the manifest"
        if problem := _cached_file_problem(directory, name, expected.get("bytes")):
            return problem
        try:
            found = _file_digest(directory / name)
        except OSError as exc:
            return f"{name}: {exc}"
        if expected != found:
            return f"{name} does not match its recorded SHA-256"
    return None


def _cached_file_problem(directory: Path, name: str, size: object) -> str | None:
    """What keeps ``directory/name`` from being hashed: not a regular file inside the entry
    (a symbolic link to ``/dev/zero`` would never end), or a size other than the recorded one."""
    from sparse_ir.index.storage import safe_file_problem

    path = directory / name
    if problem := safe_file_problem(path, directory):
        return problem
    try:
        actual = path.stat().st_size
    except OSError as exc:
        return f"{name}: {exc}"
    if isinstance(size, bool) or not isinstance(size, int) or actual != size:
        return f"{name} holds {actual:,} bytes, the manifest records {size!r}"
    return None


def _file_digest(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def _convert(model: torch.nn.Module, directory: Path, ov) -> None:
    """Convert the body of ``model`` (dynamic batch and length) into ``directory``."""
    import copy
    import warnings

    from sparse_ir.encoders.splade import _skip_vocab_projection

    logger.info("converting the transformer body for OpenVINO (once per model)")
    # A float32 CPU copy: the caller's model keeps its device and dtype.
    body = _Body(copy.deepcopy(model).float().cpu().eval())
    # Any valid token ids will do for tracing (shapes stay dynamic).
    tokens = min(body.model.get_input_embeddings().num_embeddings, 100)
    example = {
        "input_ids": torch.tensor([[1, 2, 3, 4], [1, 2, 3, 0]]) % tokens,
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
    }
    shape = ov.PartialShape([-1, -1])
    with _skip_vocab_projection(body.model), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing warnings about Python control flow
        converted = ov.convert_model(
            body,
            example_input=example,
            input=[("input_ids", shape, ov.Type.i64), ("attention_mask", shape, ov.Type.i64)],
        )
    # compress_to_fp16=False: the weights stay float32 (the precision is chosen at compile).
    ov.save_model(converted, str(directory / "body.xml"), compress_to_fp16=False)


def _install(staging: Path, directory: Path) -> None:
    """Move a finished entry into place; an unusable entry already there is set aside first."""
    if directory.exists():
        aside = Path(tempfile.mkdtemp(prefix=".stale-", dir=directory.parent))
        os.replace(directory, aside / "entry")
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.replace(staging, directory)
    except OSError:
        # Another process installed the same entry meanwhile: same content, keep theirs.
        if _check_entry(directory, directory.name) is not None:
            raise
