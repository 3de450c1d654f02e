"""The body of ``POST /rag/stream``, and what is checked beyond its types.

``StreamRequestBody`` is the one model of the route's body: FastAPI parses and validates the body
with it and documents it in ``/openapi.json``; its validation errors become our JSON error shape
(400, with the fields) in ``api/errors.py``. Types are strict: ``"yes"`` is not a bool and ``"5"``
is not an int. Unknown fields are allowed (the contract lets clients send extra fields). What
depends on settings or on two places at once (the query's configured length, the context id from
the query string or the body) is checked by ``answer_request``. The field types and patterns it
is made of are shared with the other routes' bodies (``rag_service/api/schemas.py``).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag_service.api import (
    CONTEXT_ID_PATTERN,
    MAX_FILTERS,
    QUERY_PATTERN,
    Filters,
    Text,
    TextPattern,
    TopK,
    choose_context_id,
)
from rag_service.domain import ChatMessage, MetadataValue
from rag_service.errors import InvalidInput
from rag_service.safe_text import SafeStr
from rag_service.streaming.answer import AnswerRequest

MAX_MESSAGES = 50
MAX_MESSAGE_CHARS = 16_000

_QUERY = re.compile(QUERY_PATTERN)


class TurnBody(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["user", "assistant", "system"]
    content: Text = Field(max_length=MAX_MESSAGE_CHARS)


class StreamRequestBody(BaseModel):
    """``POST /rag/stream`` body. ``query`` is checked against the configured length later."""

    model_config = ConfigDict(extra="allow", strict=True)

    query: Annotated[SafeStr, TextPattern(QUERY_PATTERN)] = Field(
        min_length=1,
        description="The question: at most `max_query_chars` characters, at least one of them "
        "not whitespace; surrounding whitespace is stripped.",
    )
    messages: list[TurnBody] = Field(
        default_factory=list,
        max_length=MAX_MESSAGES,
        description="Earlier turns of the conversation; system turns are ignored.",
    )
    filters: Filters | None = Field(
        None, max_length=MAX_FILTERS, description="Metadata equality filters."
    )
    refresh: bool = Field(False, description="Skip the freshness cache.")
    top_k: TopK | None = Field(None, description="Passages to retrieve.")
    context_id: str | None = Field(
        None,
        pattern=CONTEXT_ID_PATTERN,
        description="The context id when the query parameter `context` is absent (one of the "
        "two is required).",
    )


def answer_request(
    body: StreamRequestBody, *, context_param: str | None, max_query_chars: int
) -> AnswerRequest:
    """The answer a validated ``POST /rag/stream`` body and its ``context`` parameter ask for."""
    # The length as sent (what the schema's maxLength means), the emptiness after stripping.
    if len(body.query) > max_query_chars:
        raise InvalidInput(
            f"query is longer than {max_query_chars} characters", details={"field": "query"}
        )
    if _QUERY.search(body.query) is None:
        raise InvalidInput("query must not be empty", details={"field": "query"})
    query = body.query.strip()
    filters: dict[str, MetadataValue] | None = dict(body.filters) if body.filters else None
    return AnswerRequest(
        context_id=choose_context_id(context_param, body.context_id),
        query=query,
        history=tuple(ChatMessage(role=m.role, content=m.content) for m in body.messages),
        filters=filters,
        top_k=body.top_k,
        refresh=body.refresh,
    )
