"""The OpenAI-compatible Chat Completions API over the service's own answers (see
docs/openai-compat.md): the routes (``router``), the validation of a request into an
``AnswerRequest`` (``schemas``) and the translation of a session's events into OpenAI chunks or
one whole completion (``stream``)."""

from rag_service.openai.router import openai_router

__all__ = ["openai_router"]
