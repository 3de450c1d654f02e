"""The server-side layers of connection hygiene that uvicorn lacks, composed by
``rag_service.http_server.server_config`` (docs/deployment.md says which layer does what)."""
