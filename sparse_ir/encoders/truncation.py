"""Cut a long text before tokenizing it, without changing the tokens the encoder reads.

A Hugging Face fast tokenizer asked for ``truncation=True, max_length=n`` still tokenizes the
whole text before cutting it: about 200 bytes of memory per character, so a 10 MB document
took 2.2 GB. The encoders read at most ``n`` tokens, so only a prefix of the text matters.

Why the cut cannot change the result. Every tokenizer we load splits the text into words at
whitespace before anything else (BERT's WordPiece, byte-level BPE, SentencePiece's Metaspace),
and tokenizes each word on its own; so the tokens of a prefix that ends just before an ASCII
whitespace character (space, tab, newline, carriage return) are exactly the first tokens of the
whole text. :func:`cut_for_tokenizer` takes such a prefix of about ``n × 8`` characters,
tokenizes it, and keeps it only when it already gives at least ``n`` tokens; otherwise (a
prefix of mostly whitespace or of very long words) it doubles the prefix and tries again, up
to the whole text. The decision is made on the tokens themselves, not on a guess about
characters per token. A tokenizer with no pre-tokenizer (which could merge across whitespace)
always gets the whole text.
"""

from __future__ import annotations

import re

__all__ = ["cut_for_tokenizer", "CHARS_PER_TOKEN"]

#: Characters of prefix tried per token wanted (English WordPiece averages about 4.5).
CHARS_PER_TOKEN = 8
_ASCII_SPACE = re.compile(r"[ \t\n\r]")


def cut_for_tokenizer(tokenizer, texts: list[str], max_tokens: int) -> list[str]:
    """``texts`` with each long one cut to a prefix that tokenizes (``max_tokens`` tokens at
    most, special tokens excluded) exactly as the whole text does.

    Texts of at most ``max_tokens × CHARS_PER_TOKEN`` characters are returned unchanged, as
    are all texts when the tokenizer does not split at whitespace first.
    """
    budget = (max_tokens + 2) * CHARS_PER_TOKEN
    if all(len(text) <= budget for text in texts) or not _splits_at_whitespace(tokenizer):
        return texts
    return [
        text if len(text) <= budget else _prefix(tokenizer, text, max_tokens, budget)
        for text in texts
    ]


def _splits_at_whitespace(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and backend.pre_tokenizer is not None


def _prefix(tokenizer, text: str, max_tokens: int, size: int) -> str:
    while size < len(text):
        space = _ASCII_SPACE.search(text, size)
        if space is None:
            return text
        prefix = text[: space.start()]
        tokens = tokenizer(
            prefix,
            add_special_tokens=False,
            truncation=True,
            max_length=max_tokens,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        if len(tokens) >= max_tokens:
            return prefix
        size *= 2
    return text
