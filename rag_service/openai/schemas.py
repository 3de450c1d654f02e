"""Validation of OpenAI Chat Completions requests into the service's own ``AnswerRequest``.

The facade speaks OpenAI's request shape but answers the service's way: the last ``user``
message is the question, earlier ``user``/``assistant`` turns are the history, and the answer is
grounded in retrieved catalog context. Hence:

- ``system``/``developer`` messages are dropped: the grounding instructions are the service's,
  and a client must not be able to replace them (the native endpoint drops them too);
- ``tool``/``function`` messages and assistant turns without text are dropped (no tool calling);
- ``tools``/``functions``, ``n`` other than 1 and a non-text ``response_format`` are refused with
  400, since the answer could not honour them;
- sampling fields are forwarded upstream only where they cannot break exactly-once answers
  (see ``upstream_params``); every other field is accepted and ignored.

Types are strict, like the native endpoint's: ``"1"`` is not an int. Every text is a ``SafeStr``
(no NUL character, no lone surrogate), as on the native endpoint. Failures raise
``InvalidInput``, so they get the JSON error shape, whose ``error.message`` the SDKs display.

``ChatCompletionBody`` is the route's body parameter: FastAPI validates the body with it and
documents it in ``/openapi.json``. The rules checked here in code, for messages that an SDK's
user can act on, are stated in its JSON schema too, except the last user message's length,
which the field's description gives in words.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag_service.api import (
    CONTEXT_ID_PATTERN,
    MAX_FILTERS,
    QUERY_PATTERN,
    Filters,
    JsonInt,
    PositiveInt,
    Text,
    TopK,
)
from rag_service.domain import ChatMessage, MetadataValue
from rag_service.errors import InvalidInput
from rag_service.settings import ContinuationStrategy, UpstreamSettings
from rag_service.streaming import AnswerRequest

_CONTEXT_ID = re.compile(CONTEXT_ID_PATTERN)
_GENERATED_CONTEXT_PREFIX = "oai-"
# Sampling fields that change the text: under the `replay` continuation a broken upstream stream
# is regenerated and must reproduce the delivered prefix exactly, so only a deterministic
# configuration (the operator's) may be used then.
_SAMPLING_FIELDS = ("temperature", "top_p", "seed")

# What the schema says of the rules ``_refuse_unsupported`` and ``split_conversation`` check
# (the checks stay in code, for messages the SDKs' users can act on).
_NON_BLANK_TEXT: dict[str, Any] = {"type": "string", "pattern": QUERY_PATTERN}
_USER_MESSAGE_WITH_TEXT: dict[str, Any] = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"const": "user"},
        "content": {
            "anyOf": [
                _NON_BLANK_TEXT,
                {
                    "type": "array",
                    "contains": {
                        "type": "object",
                        "required": ["text"],
                        "properties": {"text": _NON_BLANK_TEXT},
                    },
                },
            ]
        },
    },
}
_NO_TOOLS = "Not supported: an empty list or null."
_EMPTY_LIST: dict[str, Any] = {"maxItems": 0}


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["text"]
    text: Text


class MessageBody(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Text | list[TextPart] | None = None
    name: Text | None = None


class StreamOptionsBody(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool | None = None


class RagOptionsBody(BaseModel):
    """The optional ``rag`` extension field: the native endpoint's retrieval options."""

    model_config = ConfigDict(extra="allow", strict=True)

    filters: Filters | None = Field(None, max_length=MAX_FILTERS)
    refresh: bool = False
    top_k: TopK | None = None


class ChatCompletionBody(BaseModel):
    """``POST /v1/chat/completions`` body: the fields the facade reads; others are ignored."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: Text | None = None
    messages: list[MessageBody] = Field(
        description="The conversation: the last user message with text is the question (at "
        "most `max_query_chars` characters, checked by the service); system, developer, tool "
        "and function messages are ignored.",
        json_schema_extra={"minItems": 1, "contains": _USER_MESSAGE_WITH_TEXT},
    )
    stream: bool | None = False
    stream_options: StreamOptionsBody | None = None
    n: JsonInt | None = Field(None, description="Only 1.", json_schema_extra={"enum": [1, None]})
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    seed: JsonInt | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    user: Text | None = None
    stop: Text | list[Text] | None = None
    tools: list[Any] | None = Field(None, description=_NO_TOOLS, json_schema_extra=_EMPTY_LIST)
    functions: list[Any] | None = Field(None, description=_NO_TOOLS, json_schema_extra=_EMPTY_LIST)
    response_format: dict[str, Any] | None = Field(
        None,
        description='Answers are plain text: only `{"type": "text"}`.',
        json_schema_extra={"properties": {"type": {"const": "text"}}},
    )
    rag: RagOptionsBody | None = None


@dataclass(frozen=True)
class ChatCompletionRequest:
    """A validated request: the answer to produce and how to present it."""

    answer: AnswerRequest
    model: str  # echoed in the response
    stream: bool
    include_usage: bool
    upstream_params: dict[str, Any] = field(default_factory=dict)


def parse_chat_completion(
    body: ChatCompletionBody,
    *,
    context_header: str | None,
    upstream: UpstreamSettings,
    max_query_chars: int,
) -> ChatCompletionRequest:
    """The answer a typed Chat Completions body asks for; ``context_header`` is ``X-Context-Id``
    (or None)."""
    _refuse_unsupported(body)
    query, history = split_conversation(body.messages)
    if len(query) > max_query_chars:
        raise InvalidInput(
            f"the last user message is longer than {max_query_chars} characters",
            details={"field": "messages"},
        )
    options = body.rag or RagOptionsBody()
    filters: dict[str, MetadataValue] | None = dict(options.filters) if options.filters else None
    answer = AnswerRequest(
        context_id=choose_context_id(context_header, body.user),
        query=query,
        history=history,
        filters=filters,
        top_k=options.top_k,
        refresh=options.refresh,
    )
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return ChatCompletionRequest(
        answer=answer,
        model=body.model or upstream.model,
        stream=bool(body.stream),
        include_usage=include_usage,
        upstream_params=upstream_params(body, upstream),
    )


def split_conversation(messages: list[MessageBody]) -> tuple[str, tuple[ChatMessage, ...]]:
    """The last user message (the query) and the user/assistant turns before it."""
    if not messages:
        raise InvalidInput("messages must not be empty", details={"field": "messages"})
    turns = [turn for turn in map(conversation_turn, messages) if turn is not None]
    last_user = next((i for i in reversed(range(len(turns))) if turns[i].role == "user"), None)
    if last_user is None:
        raise InvalidInput(
            "messages must contain a user message with text (the question)",
            details={"field": "messages"},
        )
    # Turns after the last user message (an assistant prefill) have nothing to answer: dropped.
    return turns[last_user].content.strip(), tuple(turns[:last_user])


def conversation_turn(message: MessageBody) -> ChatMessage | None:
    """A user/assistant message with text as a turn; None for anything the answer ignores."""
    if message.role not in ("user", "assistant"):
        return None
    content = message.content
    text = "\n".join(part.text for part in content) if isinstance(content, list) else content
    if text is None or not text.strip():
        return None
    return ChatMessage(role="user" if message.role == "user" else "assistant", content=text)


def choose_context_id(header: str | None, user: str | None) -> str:
    """``X-Context-Id`` (must be valid), else ``user`` when it is a valid id, else a new one."""
    if header is not None:
        if _CONTEXT_ID.fullmatch(header) is None:
            raise InvalidInput(
                "X-Context-Id must be 1-128 characters of A-Z a-z 0-9 . _ : -",
                details={"field": "X-Context-Id"},
            )
        return header
    if user is not None and _CONTEXT_ID.fullmatch(user) is not None:
        return user
    return _GENERATED_CONTEXT_PREFIX + secrets.token_urlsafe(12)


def upstream_params(body: ChatCompletionBody, upstream: UpstreamSettings) -> dict[str, Any]:
    """Request fields forwarded upstream, on top of the configured ``params``.

    The answer length may be lowered but not raised above the configured ``max_tokens`` (an
    operator's cost limit). Sampling fields are forwarded only when the continuation strategy
    does not rely on regenerating identical text.
    """
    params: dict[str, Any] = {}
    wanted = body.max_completion_tokens or body.max_tokens
    if wanted is not None:
        configured = upstream.params.get("max_tokens")
        limit = configured if isinstance(configured, int) and configured > 0 else None
        params["max_tokens"] = min(wanted, limit) if limit is not None else wanted
    if upstream.continuation is not ContinuationStrategy.replay:
        for name in _SAMPLING_FIELDS:
            value = getattr(body, name)
            if value is not None:
                params[name] = value
    return params


def _refuse_unsupported(body: ChatCompletionBody) -> None:
    if body.n is not None and body.n != 1:
        raise InvalidInput("only n=1 is supported", details={"field": "n"})
    if body.tools or body.functions:
        raise InvalidInput(
            "tools and function calling are not supported: this endpoint answers from the "
            "product catalog only",
            details={"field": "tools" if body.tools else "functions"},
        )
    kind = (body.response_format or {}).get("type", "text")
    if kind != "text":
        raise InvalidInput(
            f"response_format {kind!r} is not supported; answers are plain text",
            details={"field": "response_format"},
        )
