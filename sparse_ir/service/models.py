"""Request and response bodies of the service (pydantic; unknown fields are refused).

Limits that depend on the settings (``k`` <= ``max_k``, query length, ...) are checked by the
app (:mod:`.app`) with the same error format; the types and fixed rules are checked here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sparse_ir.fusion import FusionMethod, MissingPolicy, Normalization
from sparse_ir.index.modes import DenseModeName, SearchModeName

__all__ = [
    "CommitResponse",
    "Contribution",
    "DeleteResponse",
    "DocumentIn",
    "DocumentsRequest",
    "DocumentsResponse",
    "DocumentResponse",
    "EncodeRequest",
    "EncodeResponse",
    "ErrorResponse",
    "FusionRequest",
    "HybridHit",
    "HybridRequest",
    "HybridResponse",
    "QueryTerm",
    "SearchHit",
    "SearchRequest",
    "SearchResponse",
]

PositiveInt = Annotated[int, Field(ge=1)]
Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Strict(BaseModel):
    # strict: "10" is not an int, 1 is not a bool; extra="forbid": a misspelt field is an error.
    model_config = ConfigDict(extra="forbid", strict=True)


class SearchRequest(_Strict):
    """``POST /search``: a text, or a query vector already encoded."""

    text: str | None = Field(None, description="the query text (encoded by the index's model)")
    query: dict[str, Weight] | None = Field(
        None,
        description="a pre-encoded query, {token: weight}; float weights are quantized "
        "by the index's quantizer (as the encoder's output would be); with "
        "impacts=true they are integer impacts used as they are. Tokens "
        "outside the vocabulary are dropped.",
    )
    impacts: bool = Field(False, description="query weights are integer impacts")
    k: PositiveInt = Field(10, description="number of hits (at most the server's max_k)")
    mode: SearchModeName | None = Field(
        None,
        description="exhaustive | pruned | approximate (default: pruned when the index "
        "has the search layout, else exhaustive)",
    )
    explain: bool = Field(
        False,
        description="add each hit's per-term contributions, matched "
        "and expansion terms, and the query vector",
    )
    filter: str | None = Field(  # noqa: A003 (the library's name)
        None,
        description="return only documents whose metadata matches this predicate, e.g. "
        '"year>=2020 AND tenant=a" (sparse_ir.index.filters.parse_filter)',
    )

    @model_validator(mode="after")
    def _one_query(self):
        if (self.text is None) == (self.query is None):
            raise ValueError(
                "give exactly one of 'text' (a query text) or 'query' (a "
                "pre-encoded {token: weight} vector)"
            )
        if (
            self.impacts
            and self.query is not None
            and any(w != int(w) for w in self.query.values())
        ):
            raise ValueError("with impacts=true every query weight must be a whole number")
        return self


class FusionRequest(_Strict):
    """How ``POST /hybrid`` fuses the sparse and the dense ranking."""

    method: FusionMethod = Field(
        "convex",
        description="convex (normalized scores, weighted sum) or rrf (reciprocal rank fusion)",
    )
    weights: Annotated[list[Weight], Field(min_length=2, max_length=2)] | None = Field(
        None,
        description="[sparse, dense]; convex: summing to 1 (default 0.5, 0.5); rrf: "
        "multipliers of 1/(rrf_k + rank) (default 1, 1)",
    )
    normalization: Normalization = Field("min-max", description="convex only")
    missing: MissingPolicy = Field(
        "min", description="convex only: the score of a document a ranking did not return"
    )
    depth: PositiveInt = Field(1000, description="hits of each ranking fused")
    rrf_k: PositiveInt = Field(60, description="RRF's constant")


class HybridRequest(_Strict):
    """``POST /hybrid``: one text searched in the sparse and the dense index, fused."""

    text: str
    k: PositiveInt = 10
    fusion: FusionRequest = Field(default_factory=FusionRequest)
    sparse_mode: SearchModeName | None = None
    dense_mode: DenseModeName | None = None
    filter: str | None = Field(  # noqa: A003 (the library's name)
        None,
        description="return only documents whose metadata matches this predicate, e.g. "
        '"year>=2020 AND tenant=a" (sparse_ir.index.filters.parse_filter)',
    )


class EncodeRequest(_Strict):
    """``POST /encode``: the sparse vector of a text (or of several)."""

    text: str | None = None
    texts: list[str] | None = Field(None, description="several texts (at most max_batch)")
    top_k: PositiveInt | None = Field(None, description="keep the heaviest top_k tokens")

    @model_validator(mode="after")
    def _one_input(self):
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' or 'texts'")
        return self


class DocumentIn(_Strict):
    """One document of ``POST /documents``."""

    id: str = Field(description="the document's id (unique in the index)")
    title: str = Field(
        "", description="encoded with the text; stored when the index stores contents"
    )
    text: str = Field(
        "",
        description="encoded by the index's document model; stored when the index stores contents",
    )
    vector: dict[str, Weight] | None = Field(
        None,
        description="a pre-encoded {token: weight} document vector (then the text is not "
        "encoded); float weights are quantized by the index's quantizer, with impacts=true "
        "they are integer impacts. Every token must be in the index's vocabulary.",
    )
    metadata: dict | None = Field(
        None,
        description='the document\'s metadata, e.g. {"year": 2021, "tenant": "a"}: strings, '
        "numbers and booleans (at most 32 fields, 4096 bytes of JSON); stored with the "
        "document and filterable by the 'filter' of a search",
    )


class DocumentsRequest(_Strict):
    """``POST /documents``: add or upsert documents; searches see them after ``POST /commit``."""

    documents: Annotated[list[DocumentIn], Field(min_length=1)]
    mode: Literal["add", "upsert"] = Field(
        "add",
        description="add: every id must be new (409 otherwise); upsert: replace the "
        "documents of ids already in the index, add the others",
    )
    impacts: bool = Field(False, description="vector weights are integer impacts")

    @model_validator(mode="after")
    def _consistent(self):
        with_vector = [d.vector is not None for d in self.documents]
        if any(with_vector) and not all(with_vector):
            raise ValueError("either every document has a 'vector' or none has")
        for i, document in enumerate(self.documents):
            if document.metadata is not None:
                from sparse_ir.errors import InputError
                from sparse_ir.index.metadata import check_metadata

                try:
                    check_metadata(document.metadata, document.id)
                except InputError as error:
                    raise ValueError(f"documents[{i}].{error}") from None
            if document.vector is None and not (document.title.strip() or document.text.strip()):
                raise ValueError(
                    f"documents[{i}] ({document.id!r}) has no title and no text to encode"
                )
            if (
                self.impacts
                and document.vector is not None
                and any(w != int(w) for w in document.vector.values())
            ):
                raise ValueError(
                    f"documents[{i}].vector: with impacts=true every weight must be a whole number"
                )
        ids = [d.id for d in self.documents]
        if len(set(ids)) != len(ids):
            duplicate = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"document id {duplicate!r} appears twice in the request")
        return self


# -- responses (documented in the OpenAPI schema) --------------------------------------------------


class Contribution(BaseModel):
    """One query term's share of a hit's score: query impact × document impact."""

    token: str
    query_weight: int
    document_impact: int
    score: int
    in_text: bool = Field(
        description="the token occurs in the document's title or text, as "
        "one of its word pieces (else it matched through the "
        "document's expansion)"
    )


class QueryTerm(BaseModel):
    """One term of the query vector."""

    token: str
    weight: float = Field(description="the encoder's weight (for a pre-encoded query: as sent)")
    impact: int = Field(description="the quantized weight the index scored with")
    in_text: bool | None = Field(
        description="the token occurs in the query text (None for a pre-encoded query)"
    )


class SearchHit(BaseModel):
    """One document of a ranking."""

    rank: int
    id: str
    docno: int
    score: int
    title: str | None = None
    snippet: str | None = None
    contributions: list[Contribution] | None = None
    matched_terms: list[str] | None = Field(None, description="contributing terms in the text")
    expansion_terms: list[str] | None = Field(
        None, description="contributing terms absent from the text (matched by expansion)"
    )
    highlight: list[str] | None = Field(
        None, description="the lower-cased words of the text holding a matched term"
    )


class SearchResponse(BaseModel):
    hits: list[SearchHit]
    mode: str
    took_ms: float
    generation: str
    query_terms: list[QueryTerm] | None = None


class HybridHit(BaseModel):
    rank: int
    id: str
    docno: int
    score: float
    sparse_score: float | None
    dense_score: float | None
    sparse_rank: int | None
    dense_rank: int | None
    title: str | None = None
    snippet: str | None = None


class HybridResponse(BaseModel):
    hits: list[HybridHit]
    fusion: str
    took_ms: float
    generation: str


class EncodedText(BaseModel):
    vector: dict[str, float] = Field(description="token -> weight, heaviest first")
    impacts: dict[str, int] = Field(
        description="the same terms quantized by the index's "
        "quantizer (terms rounding to 0 left out)"
    )


class EncodeResponse(BaseModel):
    results: list[EncodedText]


class DocumentResponse(BaseModel):
    id: str
    docno: int
    title: str | None
    text: str | None


class ErrorResponse(BaseModel):
    error: str = Field(
        description="a short code: invalid_request, malformed_json, "
        "unauthorized, forbidden, not_found, too_large, timeout, "
        "internal_error, ..."
    )
    message: str
    request_id: str
    problems: list[dict] | None = None


class DocumentsResponse(BaseModel):
    added: int | None = None
    upserted: int | None = None
    ids: list[str]
    committed: bool = Field(description="always false: POST /commit makes them visible")
    pending: dict[str, int] = Field(description="changes staged since the last commit")


class DeleteResponse(BaseModel):
    deleted: str
    committed: bool
    pending: dict[str, int]


class CommitResponse(BaseModel):
    committed: bool = Field(description="false when there was nothing to commit")
    generation: str = Field(description="the generation searches use from now on")
    reloaded: bool
    documents: int | None = Field(None, description="live documents in the sparse index")
    segments: int | None = None
    deleted_documents: int | None = None
    merged: int | None = None
