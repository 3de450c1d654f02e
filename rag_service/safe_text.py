"""Text the service can carry end to end, checked where it comes in.

JSON can spell characters that no UTF-8 encoder will take: a lone surrogate (``"\\ud800"``) is
valid JSON and a valid Python ``str``, but encoding it for the embedder, the vector store, the
upstream request or a log line raises. A NUL byte passes JSON too, and then breaks file paths
(``ValueError: embedded null byte``) and C libraries that end strings at it. Neither can mean
anything in a question, a file name or a catalog record, so both are refused at the boundary
(a 400 naming the field, or a catalog problem naming the file and line) instead of failing deep
inside as a 500.

    problem = text_problem(value)     # None, or what is wrong, in words
    query: SafeStr                    # the same check as a pydantic field type
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

__all__ = ["SafeStr", "text_problem"]


def text_problem(value: str) -> str | None:
    """What makes ``value`` unusable as text, or ``None`` when it is fine."""
    if "\x00" in value:
        return "contains a NUL character (U+0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(value[error.start])
        return f"contains a lone surrogate (U+{code:04X}), which is not a character"
    return None


def _checked(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)  # pydantic reports it as a value_error of the field
    return value


SafeStr = Annotated[str, AfterValidator(_checked)]
"""A ``str`` field without NUL characters or lone surrogates."""
