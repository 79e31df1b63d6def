"""SPLADE: a masked-language-model head turned into a sparse vocabulary-weighted vector.

For a text with token representations h_1..h_L, the MLM head gives logits z_l = W·t(h_l) + b
over the vocabulary (t is the head's transform: dense, GELU, LayerNorm for BERT). SPLADE's term
weights are

    w_j = max_l log(1 + ReLU(z_lj))        (pooling "max", SPLADE v2 / SPLADE++)
    w_j = Σ_l log(1 + ReLU(z_lj))          (pooling "sum", the original SPLADE)

over the non-padding tokens l. The straightforward way materialises z for every token: a float32
[batch, length, vocab] tensor (32 × 256 × 30,522 × 4 bytes = 1 GB) that is written and read
again by ReLU, log and max. This module never builds it:

* log(1 + ReLU(·)) is monotonic, so max_l log(1+ReLU(z_lj)) = log(1 + ReLU(max_l z_lj)): the
  max is taken on raw logits and the activation applied once per (text, term);
* the bias does not depend on l, so it is added after the max;
* the vocabulary is projected in tiles of ``vocab_chunk`` columns, each tile reduced to its
  per-text max at once, so only [batch, length, chunk] logits exist at any moment;
* padding positions are filled with a copy of the text's first token, which cannot change a max,
  so no mask is applied to the logits at all;
* texts are sorted by length before batching, so batches carry little padding;
* with precision "mixed" (the default where int8 or bfloat16 is fast) a low-precision screen
  over the whole vocabulary finds, with a proven error bound, the few hundred terms per text
  that can be non-zero, and only those are computed in float32 (:mod:`.screen`).

:func:`sparse_ir.encoders.reference.reference_encode` keeps the straightforward formula; the
tests check that both agree to 1e-4 on real text.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import get_args

import numpy as np
import torch

from sparse_ir.encoders.base import as_texts
from sparse_ir.encoders.options import Activation, Pooling, Precision, Runtime, Screen
from sparse_ir.encoders.registry import quiet_transformers, resolve_model
from sparse_ir.encoders.screen import Bfloat16Screen, Int8Screen, int8_supported, rescore
from sparse_ir.encoders.threads import (
    DEFAULT_SINGLE_THREAD_TOKENS,
    BatchThreads,
    check_adapt_threads,
    check_single_thread_tokens,
)
from sparse_ir.encoders.truncation import cut_for_tokenizer
from sparse_ir.sparse_batch import SparseBatch

__all__ = [
    "SpladeEncoder",
    "EncodeStats",
    "Activation",
    "Pooling",
    "Precision",
    "Runtime",
    "Screen",
]

logger = logging.getLogger(__name__)

# Logits held at once when the input is short: [batch × length × chunk] <= this many values.
_TILE_ELEMENTS = 1 << 20


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    """True when bfloat16 matmuls are fast here (CPU with AVX512-BF16/AMX, or a CUDA GPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass
class EncodeStats:
    """Counts gathered while encoding, so nothing unusual passes unreported.

    Attributes:
        texts: texts encoded.
        empty_texts: texts that were empty or whitespace only (encoded as empty vectors).
        truncated_texts: texts longer than ``max_length`` tokens (their tail was not read).
        tokens: non-padding tokens run through the model.
    """

    texts: int = 0
    empty_texts: int = 0
    truncated_texts: int = 0
    tokens: int = 0

    def add(self, other: EncodeStats) -> None:
        """Add another count's figures to these (e.g. a worker process's)."""
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@contextlib.contextmanager
def _skip_vocab_projection(model: torch.nn.Module) -> Iterator[None]:
    """Make the model's output-embedding layer return its input unchanged for a moment.

    The model's forward then ends with the MLM head's transform and returns hidden states
    [batch, length, hidden] instead of logits; we apply the vocabulary projection ourselves,
    tile by tile. Works for any architecture whose head ends in ``get_output_embeddings()``
    (BERT, DistilBERT, RoBERTa, XLM-R, ModernBERT, ...).
    """
    head = model.get_output_embeddings()
    if head is None:
        raise ValueError(
            f"{type(model).__name__} has no output-embedding (vocabulary) layer; "
            "SPLADE needs a masked-language-model head"
        )
    head.forward = _identity
    try:
        yield
    finally:
        del head.forward


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class SpladeEncoder:
    """Encode texts into SPLADE sparse vectors with a masked-language-model head.

    Build one with :meth:`from_pretrained`. ``encode_documents`` and ``encode_queries`` differ
    only in their default maximum length (256 and 64 tokens).

    Args:
        model: a ``transformers`` masked-LM model (``AutoModelForMaskedLM``).
        tokenizer: its tokenizer (a fast tokenizer).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...; the model is moved there.
        pooling: ``"max"`` (SPLADE v2/++/v3) or ``"sum"`` (SPLADE v1).
        document_max_length: tokens read per document (longer ones are truncated).
        query_max_length: tokens read per query.
        batch_size: texts per forward pass.
        vocab_chunk: vocabulary columns projected at once; bounds the memory of the logits.
        precision: arithmetic of the encoder:
            ``"float32"``: everything in float32, the projection in plain tiles;
            ``"mixed"``: the transformer in float32; a low-precision screen (int8 or bfloat16,
            see ``screen``) finds, with a proven error margin, every term that can be non-zero,
            and only those are recomputed in float32, so the weights equal float32's (to
            float32 rounding) at close to int8 speed;
            ``"bfloat16"``: as "mixed", but the transformer runs in bfloat16 autocast (fastest;
            weights ~1% from float32's, at most ~0.08; SciFact nDCG@10 within 0.001);
            ``"int8"``: the transformer's linear layers in dynamic int8 (weights int8 per
            output channel, activations quantized per batch; PyTorch's fbgemm/oneDNN kernels,
            AVX2 and later, CPU only), the MLM head's transform and the vocabulary projection
            in float32 (screened as in "mixed" where a screen is fast). For BERT-base-size
            models, whose transformer is most of the cost (figures in docs/encoding.md);
            weights a few % from float32's;
            ``"auto"`` (default): "mixed" where a screen is fast (CPUs with VNNI, AVX512-BF16
            or AMX; CUDA), else "float32".
        screen: the screen of "mixed" and "bfloat16" max pooling: ``"int8"`` (CPUs with
            VNNI), ``"bfloat16"``, or ``"auto"`` (default: int8 where VNNI is present, else
            bfloat16). Both give the same weights; only speed differs.
        activation: ``"relu"`` (w = log(1 + ReLU(z)), every SPLADE) or ``"log1p_relu"``
            (w = log(1 + log(1 + ReLU(z))), OpenSearch's models).
        query_prompt, document_prompt: text put before every query / document (a
            sentence-transformers model's saved prompts).
        max_active_dims: keep only the heaviest terms of every vector (default: all).
        query_encoder: a separate query side (an inference-free model's IDF encoder, or the
            query branch of an asymmetric model): :meth:`encode_queries` delegates to it.
        single_thread_tokens: a batch of at most this many tokens (one query, a few short
            texts) runs on one PyTorch thread (default 256; 0: never). Its products are too
            small to gain from a second thread, and on a busy machine the threads of a
            parallel region wait for one another: a one-query encode then takes many times
            longer (figures in docs/encoding.md).
        adapt_threads: run a larger batch on no more PyTorch threads than the cores other
            processes leave free, re-measured as the encode goes (default True; False: always
            ``torch.get_num_threads()``). On a busy machine a thread sharing its core holds up
            the others at every step (see :mod:`sparse_ir.encoders.threads`).
        runtime: what runs the transformer body: ``"torch"`` (default) or ``"openvino"``
            (CPU only; ``pip install 'sparse-ir[openvino]'``): OpenVINO's kernels for the
            body, converted once per model and cached (:mod:`.openvino_body`), with precision
            "float32"/"mixed" (a float32 body) or "bfloat16" (products in bfloat16 on CPUs
            with AVX512-BF16 or AMX; the fastest BERT-base body measured here). The
            vocabulary projection stays this class's own either way. The body is converted
            from the model's weights when the encoder is built: an encoder built before the
            weights change keeps the old body (build a new one).
        cache_dir: where ``runtime="openvino"`` keeps converted bodies (default:
            ``$SPARSE_IR_CACHE_DIR``, else ``~/.cache/sparse_ir``).

    Example:
        >>> encoder = SpladeEncoder.from_pretrained("splade-tiny", precision="float32")
        >>> batch = encoder.encode_queries(["what causes muscle cramps"])
        >>> len(batch), bool(batch.indptr[1] > 0)
        (1, True)
    """

    #: The settings an index records (pipeline.encoder_settings) that the query side reuses.
    recorded_query_settings = ("pooling", "query_max_length")

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        device: str = "cpu",
        pooling: Pooling = "max",
        document_max_length: int = 256,
        query_max_length: int = 64,
        batch_size: int = 32,
        vocab_chunk: int = 512,
        precision: Precision = "auto",
        screen: Screen = "auto",
        name: str | None = None,
        activation: Activation = "relu",
        query_prompt: str = "",
        document_prompt: str = "",
        max_active_dims: int | None = None,
        query_encoder=None,
        single_thread_tokens: int = DEFAULT_SINGLE_THREAD_TOKENS,
        runtime: Runtime = "torch",
        cache_dir: str | os.PathLike | None = None,
        adapt_threads: bool = True,
    ):
        if pooling not in get_args(Pooling):
            raise ValueError(f"pooling must be one of {get_args(Pooling)}, got {pooling!r}")
        if activation not in get_args(Activation):
            raise ValueError(
                f"activation must be one of {get_args(Activation)}, got {activation!r}"
            )
        if max_active_dims is not None and (
            not isinstance(max_active_dims, int) or max_active_dims <= 0
        ):
            raise ValueError(f"max_active_dims must be a positive integer, got {max_active_dims!r}")
        if precision not in get_args(Precision):
            raise ValueError(f"precision must be one of {get_args(Precision)}, got {precision!r}")
        if screen not in get_args(Screen):
            raise ValueError(f"screen must be one of {get_args(Screen)}, got {screen!r}")
        if runtime not in get_args(Runtime):
            raise ValueError(f"runtime must be one of {get_args(Runtime)}, got {runtime!r}")
        if runtime == "openvino" and precision == "int8":
            raise ValueError(
                "runtime 'openvino' runs precision float32, mixed or bfloat16; precision "
                "'int8' is PyTorch's (runtime 'torch')"
            )
        if runtime == "openvino" and torch.device(device).type != "cpu":
            raise ValueError(f"runtime 'openvino' runs on CPUs only, not on {device}")
        for label, value in (
            ("document_max_length", document_max_length),
            ("query_max_length", query_max_length),
            ("batch_size", batch_size),
            ("vocab_chunk", vocab_chunk),
        ):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        check_single_thread_tokens(single_thread_tokens)
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                "SpladeEncoder needs a fast (Rust) tokenizer; "
                "load it with AutoTokenizer.from_pretrained(..., use_fast=True)"
            )
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.document_max_length = document_max_length
        self.query_max_length = query_max_length
        self.batch_size = batch_size
        self.vocab_chunk = vocab_chunk
        int8 = int8_supported(self.device)
        if screen == "auto":
            screen = "int8" if int8 else "bfloat16"
        if screen == "int8" and self.device.type != "cpu":
            raise ValueError(f"the int8 screen runs on CPUs only, not on {self.device}")
        if precision == "auto":
            precision = "mixed" if int8 or bf16_supported(self.device) else "float32"
        if precision == "mixed" and pooling != "max":
            precision = "float32"  # the screening argument holds for max pooling only
        if precision == "int8":
            if self.device.type != "cpu":
                raise ValueError(f"precision 'int8' runs on CPUs only, not on {self.device}")
            self.model = quantized_copy(self.model)
        self.precision = precision
        self.screen = screen
        self.runtime = runtime
        self._body = None
        if runtime == "openvino":
            from sparse_ir.encoders.openvino_body import OpenVinoBody

            self._body = OpenVinoBody(self.model, precision, cache_dir=cache_dir)
        # Where the projection is screened: always in "mixed"/"bfloat16"; in "int8" only when
        # a screen is fast here (without VNNI or bfloat16 hardware plain tiles are faster).
        self._screened = pooling == "max" and (
            precision in ("mixed", "bfloat16")
            or (precision == "int8" and (int8 or bf16_supported(self.device)))
        )
        self._screen_cache: tuple | None = None
        self.name = name
        self.activation = activation
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.max_active_dims = max_active_dims
        self.query_encoder = query_encoder
        self.single_thread_tokens = single_thread_tokens
        self.adapt_threads = check_adapt_threads(adapt_threads)
        head = model.get_output_embeddings()
        if head is None:
            raise ValueError(
                f"{type(model).__name__} has no vocabulary projection; "
                "load the model with AutoModelForMaskedLM"
            )
        self._vocab = _vocabulary(tokenizer, head.weight.shape[0])

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike = "splade-tiny", *, device: str = "cpu", **options
    ) -> SpladeEncoder:
        """Load a SPLADE model by bundled name (``splade-tiny``), local directory or hub id.

        A sentence-transformers directory (with ``modules.json``) is read with its module
        settings (pooling, activation, maximum length, prompts, ``max_active_dims``, an
        inference-free query side): see :mod:`sparse_ir.encoders.st_format`. An option passed
        here overrides the model's own setting (with a warning when they differ).

        Args:
            name_or_path: ``"splade-tiny"`` (bundled), a directory with ``config.json`` and
                safetensors weights, or a Hugging Face id such as ``naver/splade-v3``.
            device: where to run the model (``"cpu"``, ``"cuda"``, ``"mps"``).
            **options: forwarded to the constructor (``pooling``, ``batch_size``, ...).
        """
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        from sparse_ir.encoders import st_format

        path = st_format.hub_snapshot(resolve_model(name_or_path))
        layout = st_format.read_layout(path)
        if layout is not None:
            return st_format.load_encoder(
                layout, device=device, name=os.fspath(name_or_path), **options
            )
        with quiet_transformers():
            try:
                tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
                # use_safetensors: weights never come from pickle files.
                model = AutoModelForMaskedLM.from_pretrained(path, use_safetensors=True)
            except OSError as exc:
                raise OSError(
                    f"cannot load SPLADE model {os.fspath(name_or_path)!r} "
                    f"(resolved to {path!r}): {exc}"
                ) from exc
        return cls(model, tokenizer, device=device, name=os.fspath(name_or_path), **options)

    # -- public API ---------------------------------------------------------------------------

    @property
    def vocab(self) -> tuple[str, ...]:
        """The output vocabulary: term id ``j`` of every vector is the token ``vocab[j]``."""
        return self._vocab

    def encode_documents(
        self,
        texts: str | Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        max_length: int | None = None,
        **options,
    ) -> SparseBatch:
        """Encode documents (default ``max_length`` 256; one ``str`` is one row). See
        :meth:`encode` for options."""
        texts = as_texts(texts)
        if self.document_prompt:
            texts = [self.document_prompt + text for text in texts]
        return self.encode(
            texts, ids=ids, max_length=max_length or self.document_max_length, **options
        )

    def encode_queries(
        self,
        texts: str | Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        max_length: int | None = None,
        **options,
    ) -> SparseBatch:
        """Encode queries (default ``max_length`` 64; one ``str`` is one row). See
        :meth:`encode` for options."""
        texts = as_texts(texts)
        if self.query_encoder is not None:
            return self.query_encoder.encode_queries(
                texts, ids=ids, max_length=max_length, **options
            )
        if self.query_prompt:
            texts = [self.query_prompt + text for text in texts]
        return self.encode(
            texts, ids=ids, max_length=max_length or self.query_max_length, **options
        )

    def encode(
        self,
        texts: Sequence[str],
        *,
        max_length: int,
        ids: Sequence[str] | None = None,
        batch_size: int | None = None,
        max_active_dims: int | None = None,
        threshold: float = 0.0,
        show_progress: bool | None = None,
        stats: EncodeStats | None = None,
        progress=None,
    ) -> SparseBatch:
        """Encode texts into a :class:`SparseBatch` of float32 weights (rows in input order).

        Args:
            texts: the texts; an empty or whitespace-only text gives an empty vector.
            max_length: tokens read per text, special tokens included.
            ids: external ids stored with the vectors.
            batch_size: texts per forward pass (default: the encoder's).
            max_active_dims: keep only the heaviest terms of each vector (top-k; default:
                the encoder's ``max_active_dims``).
            threshold: drop weights ``<= threshold`` (0 drops only zeros).
            show_progress: progress bar; None shows it when stderr is a terminal.
            stats: an :class:`EncodeStats` to add this call's counts to.
            progress: a caller's progress bar (anything with ``update(n)``, e.g. a tqdm),
                advanced after every forward pass instead of a bar of this call's own.
        """
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string; wrap it in a list")
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        if max_active_dims is None:
            max_active_dims = self.max_active_dims
        if max_active_dims is not None and max_active_dims <= 0:
            raise ValueError(f"max_active_dims must be positive, got {max_active_dims}")
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        batch_size = batch_size or self.batch_size
        stats = stats if stats is not None else EncodeStats()
        texts = list(texts)
        n = len(texts)
        stats.texts += n

        non_empty = [i for i, text in enumerate(texts) if text and not text.isspace()]
        stats.empty_texts += n - len(non_empty)
        if n - len(non_empty):
            logger.info("%d empty text(s) encoded as empty vectors", n - len(non_empty))

        token_ids, order = self._tokenize_non_empty(texts, non_empty, max_length, stats)

        row_terms: list[np.ndarray | None] = [None] * n
        row_weights: list[np.ndarray | None] = [None] * n
        from tqdm.auto import tqdm

        own = progress is None
        if own:
            progress = tqdm(total=n, desc="encoding", unit="text", disable=_disable(show_progress))
        progress.update(n - len(non_empty))
        try:
            threads = BatchThreads(self.single_thread_tokens, self.adapt_threads)
            with torch.inference_mode():
                for start in range(0, len(order), batch_size):
                    chosen = order[start : start + batch_size]
                    batch_ids = [token_ids[i] for i in chosen]
                    with threads.batch(batch_ids):
                        weights = self._encode_token_batch(batch_ids)
                    for row, (terms, values) in zip(
                        chosen, _sparsify(weights, max_active_dims, threshold)
                    ):
                        row_terms[non_empty[row]] = terms
                        row_weights[non_empty[row]] = values
                    progress.update(len(chosen))
        finally:
            if own:
                progress.close()

        empty_terms, empty_weights = np.zeros(0, np.int32), np.zeros(0, np.float32)
        for i in range(n):
            if row_terms[i] is None:
                row_terms[i], row_weights[i] = empty_terms, empty_weights
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum([len(t) for t in row_terms], out=indptr[1:])
        return SparseBatch(
            indptr,
            np.concatenate(row_terms) if n else empty_terms,
            np.concatenate(row_weights) if n else empty_weights,
            self.vocab,
            None if ids is None else tuple(str(i) for i in ids),
        )

    def _tokenize_non_empty(
        self, texts: list[str], non_empty: list[int], max_length: int, stats: EncodeStats
    ) -> tuple[list, np.ndarray]:
        """Token ids of the non-empty texts (cut to ``max_length``) and the longest-first order."""
        # One token past the limit tells which texts were truncated, without tokenizing
        # (and warning about) the whole of a very long text.
        # Long texts are cut first (at a whitespace, never changing the tokens read), so memory
        # follows max_length, not the raw size of a text.
        chosen_texts = cut_for_tokenizer(
            self.tokenizer, [texts[i] for i in non_empty], max_length + 1
        )
        token_ids = (
            self.tokenizer(
                chosen_texts,
                add_special_tokens=True,
                truncation=True,
                max_length=max_length + 1,
                return_attention_mask=False,
                return_token_type_ids=False,
            )["input_ids"]
            if non_empty
            else []
        )
        lengths = np.array([len(t) for t in token_ids], dtype=np.int64)
        stats.truncated_texts += int((lengths > max_length).sum())
        token_ids = [_truncate(t, max_length, self.tokenizer) for t in token_ids]
        lengths = np.minimum(lengths, max_length)
        stats.tokens += int(lengths.sum())
        # Longest first: the first batch shows the worst memory use at once.
        order = np.argsort(-lengths, kind="stable")
        return token_ids, order

    # -- internals ------------------------------------------------------------------------------

    def _encode_token_batch(self, token_ids: list[list[int]]) -> torch.Tensor:
        """Dense [batch, vocab] float32 SPLADE weights for already-tokenized texts."""
        input_ids, mask = _pad(token_ids, self.tokenizer.pad_token_id or 0, self.device)
        # bfloat16 autocast runs the matrix products in bfloat16 and keeps LayerNorm, softmax
        # and the sums in float32.
        low = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.precision == "bfloat16"
            else contextlib.nullcontext()
        )
        if self._body is not None:
            return self.pool(self._body(input_ids, mask), mask)
        with _skip_vocab_projection(self.model), low:
            hidden = self.model(input_ids=input_ids, attention_mask=mask).logits
        return self.pool(hidden.float(), mask)

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Project transformed hidden states on the vocabulary tile by tile and pool them.

        Args:
            hidden: [batch, length, hidden] output of the MLM head's transform.
            mask: [batch, length] attention mask (1 for real tokens).

        Returns:
            [batch, vocab] float32 SPLADE weights.
        """
        head = self.model.get_output_embeddings()
        weight = head.weight
        bias = head.bias
        batch, _, _ = hidden.shape
        vocab_size = weight.shape[0]
        mask_bool = mask.bool()
        if self._screened:
            return self._pool_max_screened(hidden, mask_bool)
        out = torch.empty(batch, vocab_size, dtype=torch.float32, device=hidden.device)
        if self.pooling == "max":
            # A copy of token 0 in every padding slot cannot change a max over tokens.
            hidden = torch.where(mask_bool[..., None], hidden, hidden[:, :1, :])
            chunk = self._chunk(hidden)
            for start in range(0, vocab_size, chunk):
                tile = weight[start : start + chunk]
                out[:, start : start + tile.shape[0]] = torch.matmul(hidden, tile.T).amax(dim=1)
            if bias is not None:
                out += bias.float()
            return self._activate(out)
        # Sum pooling needs every token's activation; padding is masked out.
        dtype = torch.bfloat16 if self.precision == "bfloat16" else weight.dtype
        hidden = hidden.to(dtype)
        keep = mask_bool[..., None].float()
        chunk = self._chunk(hidden)
        for start in range(0, vocab_size, chunk):
            tile = weight[start : start + chunk].to(dtype)
            logits = torch.matmul(hidden, tile.T).float()
            if bias is not None:
                logits += bias[start : start + tile.shape[0]].float()
            out[:, start : start + tile.shape[0]] = (self._activate(logits) * keep).sum(1)
        return out

    def _activate(self, logits: torch.Tensor) -> torch.Tensor:
        """log(1 + ReLU(z)), or log(1 + log(1 + ReLU(z))) for "log1p_relu" (in place)."""
        out = torch.log1p_(torch.relu_(logits))
        return torch.log1p_(out) if self.activation == "log1p_relu" else out

    def _chunk(self, hidden: torch.Tensor) -> int:
        # Short inputs (a query) take the vocabulary in few tiles: each tile costs a call, and
        # [batch, length, chunk] stays small anyway. Long batches use vocab_chunk columns.
        tokens = hidden.shape[0] * hidden.shape[1]
        return max(self.vocab_chunk, _TILE_ELEMENTS // max(tokens, 1))

    def _pool_max_screened(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Max pooling: a low-precision screen, then float32 for the candidate terms only.

        A term can be non-zero only if its float32 max logit plus bias is positive. The screen
        (:mod:`sparse_ir.encoders.screen`) bounds every max logit from above with a proven
        error margin; terms whose bound plus bias is not positive are exactly zero in float32
        too. The few hundred remaining terms per text are recomputed in float32.
        """
        head = self.model.get_output_embeddings()
        weight, bias = head.weight, head.bias
        hidden = torch.where(mask[..., None], hidden, hidden[:, :1, :]).float()
        upper = self._screen_for(weight).upper_bound(hidden)
        if bias is not None:
            upper += bias.float()
        logits = rescore(hidden, mask.sum(dim=1).tolist(), upper > 0, weight, bias)
        return self._activate(logits)

    def _screen_for(self, weight: torch.Tensor) -> Int8Screen | Bfloat16Screen:
        """The screen of the projection, built once and rebuilt if the weights change."""
        key = (weight.data_ptr(), weight._version, weight.device, self.screen)
        if self._screen_cache is None or self._screen_cache[0] != key:
            with torch.no_grad():
                screen = Int8Screen(weight) if self.screen == "int8" else Bfloat16Screen(weight)
            self._screen_cache = (key, screen)
        return self._screen_cache[1]


def quantized_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of a masked-LM ``model`` whose transformer runs its linear layers in int8.

    PyTorch's dynamic quantization: each ``nn.Linear`` of the transformer body
    (``model.base_model``) keeps int8 weights with one scale per output channel and quantizes
    its input per call; the MLM head (its transform and the vocabulary projection) stays
    float32, so the projection can be screened and recomputed exactly as in float32.

    Example:
        >>> from transformers import BertConfig, BertForMaskedLM
        >>> config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
        ...                     num_attention_heads=2, intermediate_size=32)
        >>> fast = quantized_copy(BertForMaskedLM(config))
        >>> type(fast.bert.encoder.layer[0].output.dense).__name__
        'Linear'
        >>> fast.bert.encoder.layer[0].output.dense.__module__.endswith("dynamic.modules.linear")
        True
    """
    import copy
    import warnings

    body = getattr(model, "base_model", None)
    if body is None or body is model:
        raise ValueError(
            f"{type(model).__name__} has no separate transformer body (base_model); "
            "precision 'int8' needs a masked-LM model such as BertForMaskedLM"
        )
    copied = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao on every call.
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(
            copied.base_model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
        )
    return copied


def _vocabulary(tokenizer, size: int) -> tuple[str, ...]:
    """The token string of every output row, ``size`` of them (padded rows get placeholders)."""
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    return tuple(by_id.get(i, f"[unused-row-{i}]") for i in range(size))


def _truncate(ids: list[int], max_length: int, tokenizer) -> list[int]:
    """Cut to ``max_length`` tokens, keeping the closing special token (e.g. [SEP])."""
    if len(ids) <= max_length:
        return ids
    last = ids[-1]
    if last in tokenizer.all_special_ids:
        return ids[: max_length - 1] + [last]
    return ids[:max_length]


def _pad(
    token_ids: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(t) for t in token_ids)
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        mask[row, : len(ids)] = 1
    return input_ids.to(device), mask.to(device)


def _sparsify(
    weights: torch.Tensor, max_active_dims: int | None, threshold: float
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(term_ids, weights)`` of each row of a dense [batch, vocab] tensor."""
    weights = weights.float().cpu()
    if max_active_dims is not None and max_active_dims < weights.shape[1]:
        top = torch.topk(weights, max_active_dims, dim=1)
        kept = torch.zeros_like(weights)
        kept.scatter_(1, top.indices, top.values)
        weights = kept
    dense = weights.numpy()
    for row in dense:
        terms = np.flatnonzero(row > threshold).astype(np.int32)
        yield terms, row[terms].astype(np.float32)


def _disable(show_progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None lets tqdm hide the bar when stderr is not a terminal."""
    return None if show_progress is None else not show_progress
