"""What every route shares: authentication, the mapping of errors to HTTP, the OpenAPI helpers
and the request-body helpers. The routes themselves live with their features
(``rag_service.streaming.router``, ``rag_service.openai``, ``rag_service.health``,
``rag_service.admin``); they import these names from here.
"""

from rag_service.api.auth import (
    PrincipalDependency,
    admin_principal,
    client_principal,
    principal_of,
)
from rag_service.api.errors import install_error_handlers, invalid_input
from rag_service.api.openapi import (
    ADMIN_AUTH,
    CLIENT_AUTH,
    INGEST_STARTED_DOC,
    LIVENESS_DOC,
    NATIVE_SSE_EVENT,
    OPENAI_SSE_EVENT,
    READINESS_DOC,
    TextPattern,
    admin_ingest_openapi,
    error_responses,
    install_openapi,
    metrics_doc,
    sse_content,
)
from rag_service.api.schemas import (
    CONTEXT_ID_PATTERN,
    MAX_FILTERS,
    QUERY_PATTERN,
    Filters,
    JsonInt,
    PositiveInt,
    Text,
    TopK,
    body_limited_route,
    choose_context_id,
    json_object,
    read_limited_body,
    validate_body,
)

__all__ = [
    "ADMIN_AUTH",
    "CLIENT_AUTH",
    "CONTEXT_ID_PATTERN",
    "INGEST_STARTED_DOC",
    "LIVENESS_DOC",
    "MAX_FILTERS",
    "NATIVE_SSE_EVENT",
    "OPENAI_SSE_EVENT",
    "QUERY_PATTERN",
    "READINESS_DOC",
    "Filters",
    "JsonInt",
    "PositiveInt",
    "PrincipalDependency",
    "Text",
    "TextPattern",
    "TopK",
    "admin_ingest_openapi",
    "admin_principal",
    "body_limited_route",
    "choose_context_id",
    "client_principal",
    "error_responses",
    "install_error_handlers",
    "install_openapi",
    "invalid_input",
    "json_object",
    "metrics_doc",
    "principal_of",
    "read_limited_body",
    "sse_content",
    "validate_body",
]
